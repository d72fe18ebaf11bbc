"""grader.adapt_layers gives the same model inputs as grader.adapt (numpy), for every candidate and
input shape, with Keras 3 and with tf_keras, so predicting on the device changes no grade."""

from __future__ import annotations

import numpy as np
import pytest

from grader import adapt
from grader.adapt_layers import with_front
from grader.evaluate import _predict

SHAPES = [(None, 784), (None, 28, 28), (None, 28, 28, 1), (None, 32, 32, 3), (None, 48, 48, 1), (None, 75, 75, 3)]
STATS = adapt.Stats(0.286, 0.353)
IMAGES = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)


def _identity(lib, shape):  # type: ignore[no-untyped-def]
    """A model that returns its input flattened: the front's output is then exactly the adapted input."""
    inputs = lib.Input(shape[1:])
    return lib.Model(inputs, lib.layers.Flatten()(inputs) if len(shape) > 2 else inputs)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_layers_adapt_exactly_as_numpy(shape: tuple, lib_name: str) -> None:
    lib = __import__(lib_name)
    model = _identity(lib, shape)
    for cand in adapt.candidates(shape):
        want = adapt.adapt(IMAGES, shape, cand, STATS).reshape(len(IMAGES), -1)
        got = np.asarray(with_front(model, shape, cand, STATS).predict(IMAGES.astype(np.float32), verbose=0))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=f"{lib_name} {shape} {cand.key}")


def test_predict_on_device_equals_the_host_path() -> None:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    images = np.random.default_rng(1).integers(0, 256, (300, 28, 28), dtype=np.uint8)
    for cand in adapt.candidates((None, 32, 32, 3)):
        host = _predict(model, images, (None, 32, 32, 3), cand, STATS, 64)
        device = _predict(model, images, (None, 32, 32, 3), cand, STATS, 64, on_device=True)
        np.testing.assert_allclose(device, host, atol=1e-5, err_msg=cand.key)
        assert np.array_equal(device.argmax(1), host.argmax(1))

"""grader.worker.adapt_layers gives the same model inputs as grader.worker.adapt (numpy), for every candidate and
input shape, with Keras 3 and with tf_keras, so predicting on the device changes no grade."""

from __future__ import annotations

import numpy as np
import pytest

from grader.worker import adapt
from grader.worker.adapt_layers import with_front
from grader.worker.evaluate import _predict

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


# Any source: RGB at a few sizes (cv4 is 128×128 RGB), a gray source that is not 28×28, and the
# conversions (RGB→gray, the caffe RGB→BGR swap). Few images: the 224×224×3 outputs are large.
_RGB128 = np.random.default_rng(2).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
_RGB_SMALL = np.random.default_rng(3).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
SOURCES = [
    (_RGB128, (None, 224, 224, 3)),  # resize and pad to VGG's 224
    (_RGB128, (None, 128, 128, 3)),  # as-is (caffe: the real BGR swap)
    (_RGB128, (None, 128, 128, 1)),  # RGB -> gray
    (_RGB128, (None, 64, 64, 3)),  # resized down
    (_RGB_SMALL, (None, 20 * 24 * 3)),  # flat RGB
    (_RGB_SMALL, (None, 20 * 24)),  # flat gray
    (_RGB_SMALL, (None, 32, 40)),  # a 2-D gray image input, resized and padded
    (_RGB_SMALL, (None, 36, 30, 1)),
    (_RGB_SMALL[..., 0], (None, 48, 40, 3)),  # a gray source that is not 28×28
]


@pytest.mark.parametrize(("images", "shape"), SOURCES, ids=[f"{i.shape[1:]}->{s[1:]}" for i, s in SOURCES])
@pytest.mark.parametrize("lib_name", ["keras", "tf_keras"])
def test_layers_adapt_any_source_exactly_as_numpy(images: np.ndarray, shape: tuple, lib_name: str) -> None:
    lib = __import__(lib_name)
    model = _identity(lib, shape)
    source = images.shape[1:]
    for cand in adapt.candidates(shape, source=source):
        want = adapt.adapt(images, shape, cand, STATS).reshape(len(images), -1)
        front = with_front(model, shape, cand, STATS, source=source)
        got = np.asarray(front.predict(images.astype(np.float32), verbose=0))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3, err_msg=f"{lib_name} {source} {shape} {cand.key}")


def _evaluate_passes_the_source() -> bool:
    import inspect

    from grader.worker import evaluate

    return "source=" in inspect.getsource(evaluate._predict_on_device)


@pytest.mark.skipif(not _evaluate_passes_the_source(),
                    reason="grader/worker/evaluate.py does not pass source= to with_front/target_shape yet")
def test_predict_rgb_on_device_equals_the_host_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    from grader.worker import evaluate

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((48, 48, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(6, activation="softmax")])
    images = np.random.default_rng(4).integers(0, 256, (70, 40, 36, 3), dtype=np.uint8)
    # the host path in chunks of 16 images (5 chunks), bounded by the larger of source and input
    monkeypatch.setattr(evaluate, "_CHUNK_BYTES", 16 * adapt.adapted_bytes((None, 48, 48, 3), source=(40, 36, 3)))
    for cand in adapt.candidates((None, 48, 48, 3), source=images.shape[1:]):
        host = _predict(model, images, (None, 48, 48, 3), cand, STATS, 16)
        device = _predict(model, images, (None, 48, 48, 3), cand, STATS, 16, on_device=True)
        np.testing.assert_allclose(device, host, atol=1e-4, err_msg=cand.key)  # raw 0-255 inputs: large logits
        assert np.array_equal(device.argmax(1), host.argmax(1))

"""The input adaptation of `grader.adapt`, as Keras layers in front of the student's model, so that
resizing, padding, scaling and the channel repeat run where the model runs (a GPU), on the 28×28
images, instead of in numpy on the host. On an H100 the host path made predicting the hidden set
11x (VGG16 at 32×32) to 21x (224×224) slower than a bare `model.predict` (bench/device_eval.py).

The layers apply the same operations in the same order as `grader.adapt.adapt` (geometry on raw
0-255 values, then the scale, then the channel repeat, then the VGG mean), so the two agree to float
rounding; tests/test_adapt_layers.py checks it for every candidate. Built with the library that
loaded the model (Keras 3, or tf_keras for a Keras 2 file); runs in the worker only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader import adapt


def _library(model: Any) -> Any:
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def with_front(model: Any, input_shape: tuple[int | None, ...], cand: adapt.Candidate, stats: adapt.Stats) -> Any:
    """A model that takes (n, 28, 28) float32 raw pixels (0-255) and returns `model`'s outputs."""
    lib = _library(model)
    L = lib.layers
    shape = adapt.target_shape(input_shape)
    inputs = lib.Input((28, 28), dtype="float32")
    x = inputs
    if shape == (784,):
        x = L.Reshape((784,))(x)
    elif len(shape) == 3:
        x = L.Reshape((28, 28, 1))(x)
        h, w = shape[0], shape[1]
        if cand.geometry == "resize" and (h, w) != (28, 28):
            x = L.Resizing(h, w, interpolation="bilinear")(x)
        elif cand.geometry == "pad" and (h, w) != (28, 28):
            top, left = (h - 28) // 2, (w - 28) // 2
            x = L.ZeroPadding2D(((top, h - 28 - top), (left, w - 28 - left)))(x)
    if cand.scale == "unit":
        x = L.Rescaling(1 / 255.0)(x)
    elif cand.scale == "standard":
        x = L.Rescaling(1 / (255.0 * stats.std), offset=-stats.mean / stats.std)(x)
    elif cand.scale == "symmetric":
        x = L.Rescaling(1 / 127.5, offset=-1.0)(x)
    if len(shape) == 3 and shape[2] == 3:
        x = L.Concatenate(axis=-1)([x, x, x])
        if cand.scale == "caffe":
            mean = np.asarray(adapt._CAFFE_MEAN_BGR, np.float32)
            x = L.Normalization(mean=mean, variance=np.ones(3, np.float32))(x)
    outputs = model(x)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return lib.Model(inputs, outputs)

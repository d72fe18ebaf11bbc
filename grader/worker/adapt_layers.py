"""The input adaptation of `grader.worker.adapt`, as Keras layers in front of the student's model, so that
gray conversion, resizing, padding, scaling, the channel repeat and the BGR swap run where the model
runs (a GPU), on the source images (28×28 gray, 128×128 RGB, ...), instead of in numpy on the host.
On an H100 the host path made predicting the hidden set 11x (VGG16 at 32×32) to 21x (224×224)
slower than a bare `model.predict` (bench/device_eval.py).

The layers apply the same operations in the same order as `grader.worker.adapt.adapt` (RGB→gray on raw
0-255 values, then the geometry, then the scale, then the channel repeat, then the BGR swap and the
VGG mean), with the same float32 arithmetic where it matters (the luma is three products summed in
order, not a matmul, which a GPU may run in TF32), so the two agree to float rounding;
tests/test_adapt_layers.py checks it for every candidate. Only stock layers and tensor slicing are
used (no Lambda of ours). Built with the library that loaded the model (Keras 3, or tf_keras for a Keras 2
file); runs in the worker only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grader.worker import adapt


def _library(model: Any) -> Any:
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras

        return tf_keras
    import keras

    return keras


def _channel(x: Any, i: int) -> Any:
    return x[..., i : i + 1]


def _luma(L: Any, x: Any) -> Any:
    """(h, w, 3) RGB to (h, w, 1) gray as `grader.worker.adapt.rgb_to_gray`: ((R·r + G·g) + B·b)."""
    return L.Add()([L.Rescaling(w)(_channel(x, i)) for i, w in enumerate(adapt.LUMA)])


def with_front(model: Any, input_shape: tuple[int | None, ...], cand: adapt.Candidate, stats: adapt.Stats, *,
               source: tuple[int, ...] = adapt.FASHION_MNIST_SOURCE) -> Any:
    """A model that takes (n, *source) float32 raw pixels (0-255) and returns `model`'s outputs;
    `source` is the per-image shape of the images it will get: (h, w) gray or (h, w, 3) RGB."""
    lib = _library(model)
    L = lib.layers
    h0, w0, c0 = adapt.source_dims(source)
    shape = adapt.target_shape(input_shape, source=source)
    gray = adapt.to_gray(shape, source=source)
    inputs = lib.Input(tuple(source), dtype="float32")
    x = inputs
    if gray:
        x = _luma(L, x)
    if len(shape) == 1:
        x = L.Reshape(shape)(x)
    else:
        h, w = shape[0], shape[1]
        resize = cand.geometry == "resize" and (h, w) != (h0, w0)
        pad = cand.geometry == "pad" and (h, w) != (h0, w0)
        if len(shape) == 3 or resize or pad:
            x = L.Reshape((h0, w0, 1 if gray or c0 == 1 else 3))(x)
        if resize:
            x = L.Resizing(h, w, interpolation="bilinear")(x)
        elif pad:
            top, left = (h - h0) // 2, (w - w0) // 2
            x = L.ZeroPadding2D(((top, h - h0 - top), (left, w - w0 - left)))(x)
        if len(shape) == 2 and (gray or resize or pad):
            x = L.Reshape((h, w))(x)
    if cand.scale == "unit":
        x = L.Rescaling(1 / 255.0)(x)
    elif cand.scale == "standard":
        x = L.Rescaling(1 / (255.0 * stats.std), offset=-stats.mean / stats.std)(x)
    elif cand.scale == "symmetric":
        x = L.Rescaling(1 / 127.5, offset=-1.0)(x)
    if len(shape) == 3:
        if c0 == 1 and shape[2] == 3:  # a gray source repeated ×3
            x = L.Concatenate(axis=-1)([x, x, x])
        if cand.scale == "caffe" and shape[2] == 3:
            if c0 == 3:  # RGB -> BGR; gray replicated needs no swap
                x = L.Concatenate(axis=-1)([_channel(x, 2), _channel(x, 1), _channel(x, 0)])
            mean = np.asarray(adapt._CAFFE_MEAN_BGR, np.float32)
            x = L.Normalization(mean=mean, variance=np.ones(3, np.float32))(x)
    outputs = model(x)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return lib.Model(inputs, outputs)

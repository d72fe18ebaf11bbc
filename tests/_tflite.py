"""Keras models converted to TensorFlow Lite, as students do (tf.lite.TFLiteConverter), for tests and
the example classes: float, or full-integer quantisation with int8/uint8 input and output."""

from __future__ import annotations

from typing import Literal

import numpy as np


def to_tflite(model, quantise: Literal["int8", "uint8"] | None = None, sample: np.ndarray | None = None) -> bytes:  # type: ignore[no-untyped-def]
    """The model as .tflite bytes. `quantise` needs `sample`: float inputs exactly as the model takes them
    (the representative data set that fixes the quantisation ranges)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantise is not None:
        assert sample is not None, "full-integer quantisation needs representative inputs"

        def representative():  # type: ignore[no-untyped-def]
            for image in sample[:64]:
                yield [np.asarray(image[None], dtype=np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8 if quantise == "int8" else tf.uint8
        converter.inference_output_type = converter.inference_input_type
    return converter.convert()

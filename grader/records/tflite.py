"""What a `.tflite` file declares (grader.formats.tflite_file reads it)."""

from __future__ import annotations

from typing import Literal

from grader.records.frozen import Frozen


class TFLiteInfo(Frozen):
    """What a `.tflite` file declares about its main subgraph (subgraph 0). Shapes give None for a
    dimension the model leaves free (-1 in its shape signature, usually the batch). Quantisation is
    (scale, zero_point), for integer tensors with one scale; dequantised value = (q - zero_point) * scale."""

    size_bytes: int
    schema_version: int
    description: str | None = None  # "MLIR Converted." from the converter
    subgraph_count: int
    input_count: int
    output_count: int
    input_name: str | None = None
    input_shape: tuple[int | None, ...]
    input_dtype: str
    input_quant: tuple[float, int] | None = None
    # the float values an integer input can represent, ((min - zp) * scale, (max - zp) * scale): (0, 1) for a
    # uint8 input quantised with (1/255, 0), so the caller feeds [0, 1] images; None for float inputs
    input_range: tuple[float, float] | None = None
    output_name: str | None = None
    output_shape: tuple[int | None, ...]
    output_dtype: str
    output_quant: tuple[float, int] | None = None
    operator_count: int  # over all subgraphs
    ops: tuple[str, ...]  # distinct operator types, sorted ("CONV_2D", "CUSTOM:name", ...)
    last_op: str | None = None  # the operator computing the output, looking through (DE)QUANTIZE/RESHAPE: "SOFTMAX"
    weight_dtypes: tuple[str, ...] = ()  # dtypes of the constant tensors, sorted: "int8" means quantised weights
    metadata_names: tuple[str, ...] = ()
    min_runtime_version: str | None = None
    model_maker: bool = False  # TFLITE_METADATA present (TFLite Support / Model Maker)
    metadata_model_name: str | None = None  # the name inside TFLITE_METADATA, e.g. "ImageClassifier"
    input_normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None  # (mean, std): (pixel - mean) / std
    associated_files: tuple[str, ...] = ()  # members of the zip appended to the model
    labels: tuple[str, ...] | None = None
    labels_source: Literal["metadata", "labels.txt"] | None = None  # "metadata": packed inside the .tflite
    warnings: tuple[str, ...] = ()

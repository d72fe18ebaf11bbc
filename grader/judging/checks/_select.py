"""Choosing which of a student's models a criterion is about (the `select` parameter)."""

from __future__ import annotations

import fnmatch
from typing import Literal

from grader.judging.checks._registry import Params
from grader.records.evidence import Architecture, ModelEvidence

ModelKind = Literal["dense", "cnn", "transfer", "unknown"]

CONV_LAYERS = frozenset(
    {"Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
     "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution2D", "Convolution1D", "Convolution3D"}
)
LAYER_FAMILIES: dict[str, frozenset[str]] = {
    "conv": CONV_LAYERS,
    "pooling": frozenset({"MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "AveragePooling1D", "AveragePooling2D",
                          "AveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
                          "GlobalAveragePooling2D", "MaxPool2D", "AvgPool2D"}),
    "recurrent": frozenset({"LSTM", "GRU", "SimpleRNN", "Bidirectional", "ConvLSTM2D"}),
    "code": frozenset({"Lambda"}),
}


def model_kind(arch: Architecture | None) -> ModelKind:
    """dense: no convolutions; cnn: convolutions but no known base; transfer: a known base inside."""
    if arch is None:
        return "unknown"
    if arch.bases:
        return "transfer"
    if arch.layer_classes & CONV_LAYERS:
        return "cnn"
    return "dense"


def expand_layer_names(names: tuple[str, ...]) -> frozenset[str]:
    """Layer class names, with family aliases (`conv`, `pooling`, ...) expanded."""
    out: set[str] = set()
    for name in names:
        out |= LAYER_FAMILIES.get(name.lower(), frozenset({name}))
    return frozenset(out)


class ModelSelector(Params):
    """Which models a criterion looks at. Every given field must match."""

    kind: Literal["any", "dense", "cnn", "transfer"] = "any"
    base: str | None = None  # models whose base is this application (e.g. vgg16)
    file: str | None = None  # glob on the model's path inside the submission, e.g. "*cnn*"
    # submitted: files handed in; notebook: files a notebook wrote when the grader executed it
    source: Literal["any", "submitted", "notebook"] = "any"

    def matches(self, model: ModelEvidence) -> bool:
        arch = model.architecture
        if self.source != "any" and (model.produced_by is not None) != (self.source == "notebook"):
            return False
        if self.kind != "any" and model_kind(arch) != self.kind:
            return False
        if self.base is not None and not (arch and any(b.name == self.base for b in arch.bases)):
            return False
        if self.file is not None and not fnmatch.fnmatch(model.path.lower(), self.file.lower()):
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.kind != "any":
            parts.append({"dense": "dense-only", "cnn": "convolutional (own)", "transfer": "transfer-learning"}[self.kind])
        if self.base:
            parts.append(f"{self.base}-based")
        words = " ".join(parts) + " models" if parts else "models"
        if self.source != "any":
            words += " handed in" if self.source == "submitted" else " written by your notebook when the grader ran it"
        return words + (f" named like {self.file!r}" if self.file else "")

    def pick(self, models: tuple[ModelEvidence, ...]) -> list[ModelEvidence]:
        return [m for m in models if self.matches(m)]

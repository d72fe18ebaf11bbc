"""Scoring predictions against hidden labels. Runs in the grader's process, never in a worker."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from grader.records.evidence import ClassMetrics, Metrics


class OutputError(ValueError):
    """The model's outputs cannot be scored (wrong number of classes, NaN, wrong length)."""


def check_outputs(outputs: np.ndarray, n: int, num_classes: int) -> str | None:
    """Validate raw model outputs; return a note for the report (e.g. logits) or raise OutputError."""
    if outputs.ndim != 2 or outputs.shape[0] != n:
        raise OutputError(f"the model returned outputs of shape {outputs.shape}; expected ({n}, {num_classes})")
    if outputs.shape[1] != num_classes:
        raise OutputError(
            f"the model has {outputs.shape[1]} output(s) per image, but the data set has {num_classes} classes; "
            f"the last layer should be Dense({num_classes})"
        )
    bad = int(np.count_nonzero(~np.isfinite(outputs).all(axis=1)))
    if bad:
        raise OutputError(f"the model outputs NaN or infinity for {bad} of {n} images (diverged training?)")
    sums = outputs.sum(axis=1)
    if outputs.min() < -1e-6 or not np.allclose(sums, 1.0, atol=1e-3):
        return "outputs are not probabilities (logits?): accuracy uses the largest output, confidences use softmax"
    return None


def softmax(outputs: np.ndarray) -> np.ndarray:
    z = outputs - outputs.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def score(outputs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> Metrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (deterministic)."""
    k = len(class_names)
    predicted = np.argmax(outputs, axis=1)
    classes = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    matrix = confusion_matrix(labels, predicted, labels=classes)
    per_class = tuple(
        ClassMetrics(label=i, name=class_names[i], precision=round(float(precision[i]), 6),
                     recall=round(float(recall[i]), 6), f1=round(float(f1[i]), 6), support=int(support[i]))
        for i in classes
    )
    return Metrics(
        accuracy=float(np.mean(predicted == labels)),
        n=int(len(labels)),
        macro_f1=round(float(np.mean(f1)), 6),
        per_class=per_class,
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
    )

"""The flowers competition score, computed from predictions and hidden labels (the grader's process, never a worker).

The flowers competition (shared/BRIEF.md): every group's model sees the same test photos; a photo scores
the confidence, in percent, that the model gives the TRUE class when its top prediction is right, and 0
when it is wrong; the highest total wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from grader.records.frozen import Frozen
from grader.scoring.metrics import OutputError, softmax

PROBABILITY_ATOL = 0.02  # rows may sum to 1 ± this and still count as probabilities (dequantised uint8 softmax)


class ConfidenceScore(Frozen):
    """The competition score of one model on a set of photos: `score` over all photos and, when groups
    were given, `by_group` (group -> score, with the same aggregate). `note` says when softmax was applied."""

    score: float
    aggregate: Literal["sum", "mean"]
    n: int
    correct: int
    by_group: dict[str, float] = {}
    note: str | None = None


def as_probabilities(outputs: np.ndarray, atol: float = PROBABILITY_ATOL) -> tuple[np.ndarray, str | None]:
    """`outputs` as they are when they look like probabilities (in [0, 1], rows summing to 1 ± atol);
    otherwise their softmax, with a note saying so."""
    x = np.asarray(outputs, dtype=np.float64)
    if x.min() >= -1e-6 and x.max() <= 1 + 1e-6 and np.allclose(x.sum(axis=1), 1.0, atol=atol):
        return np.clip(x, 0.0, 1.0), None
    return softmax(x), "outputs are not probabilities (logits, or quantised outputs that do not sum to 1): softmax applied"


def confidence_score(probabilities: np.ndarray, labels: np.ndarray, groups: Sequence[str] | None = None,
                     aggregate: Literal["sum", "mean"] = "sum") -> ConfidenceScore:
    """Per photo: 100 × the probability of the true class if the top prediction (argmax; the first of
    equal maxima) is the true class, else 0; summed (the competition rule) or averaged. `groups[i]` names
    the group of photo i (its class, or the team when several models' rows are stacked) for `by_group`."""
    p = np.asarray(probabilities)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[0] == 0:
        raise OutputError(f"probabilities must be (photos, classes); got shape {p.shape}")
    if y.shape != (p.shape[0],):
        raise OutputError(f"{y.size} labels for {p.shape[0]} photos")
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= p.shape[1]:
        raise OutputError(f"labels must be class indices in [0, {p.shape[1]}); got {y.dtype} from {y.min()} to {y.max()}")
    if not np.isfinite(p).all():
        raise OutputError("the outputs contain NaN or infinity")
    if aggregate not in ("sum", "mean"):
        raise ValueError(f"aggregate must be 'sum' or 'mean'; got {aggregate!r}")
    if groups is not None and len(groups) != len(y):
        raise OutputError(f"{len(groups)} groups for {len(y)} photos")
    probs, note = as_probabilities(p)
    right = probs.argmax(axis=1) == y
    points = np.where(right, 100.0 * probs[np.arange(len(y)), y], 0.0)

    def total(mask: np.ndarray) -> float:
        value = float(points[mask].sum())
        return round(value / int(mask.sum()) if aggregate == "mean" else value, 6)

    by_group = {}
    if groups is not None:
        keys = np.asarray([str(g) for g in groups])
        by_group = {g: total(keys == g) for g in sorted(set(keys.tolist()))}
    return ConfidenceScore(score=total(np.ones(len(y), bool)), aggregate=aggregate, n=len(y), correct=int(right.sum()),
                           by_group=by_group, note=note)

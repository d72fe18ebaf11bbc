"""Accuracies too good to be true: a teacher-only flag, never a penalty.

A hidden test set that is public (Fashion-MNIST's is the official t10k split) can be learnt by
heart without any code: a Dense layer whose weights are the z-scored test images finds the test
image it is shown, and a second one whose weights are the one-hot labels gives its label, for an
accuracy of 1.0. Two facts the grader already has give such a model away:

- its hidden-set accuracy is above what honest models reach on the data set (the rubric's
  `plausibility.max_accuracy`, else the data set's `accuracy_ceiling`: 0.96 for Fashion-MNIST);
- it scores far higher on the hidden set than on the PUBLIC training sample the grader measured
  while choosing its preprocessing (an honest model scores about the same, or higher on training
  data it has seen): more than `plausibility.margin` higher is flagged.

Judging calls `accuracy_flags`; the flags go to the teacher's pages and results.json, never to the
student's page, and points do not change. Pure: no I/O. The real cure is a test set the students
never saw (an encrypted bundle of the teacher's own images, README "The hidden test set").
"""

from __future__ import annotations

from grader.inputs.datasets import DatasetError, get_dataset
from grader.records.evidence import Evidence, ModelEvidence
from grader.records.results import AccuracyFlag
from grader.inputs.rubric import Rubric


def ceiling_for(rubric: Rubric) -> float | None:
    """The accuracy above which a model is flagged: the rubric's, else the data set's (None: none)."""
    if rubric.plausibility.max_accuracy is not None:
        return rubric.plausibility.max_accuracy
    if rubric.images is not None:  # a teacher's own image folder: nothing known about what is plausible
        return None
    try:
        return get_dataset(rubric.dataset).accuracy_ceiling
    except DatasetError:
        return None


def public_accuracy(model: ModelEvidence) -> float | None:
    """The model's accuracy on the public training sample, with the preprocessing the grader chose."""
    prep = model.preprocessing
    if prep is None:
        return None
    return prep.candidates.get(f"{prep.geometry}/{prep.scale}")


def _flag(model: ModelEvidence, ceiling: float | None, margin: float) -> AccuracyFlag | None:
    if model.metrics is None:
        return None
    accuracy, public = model.metrics.accuracy, public_accuracy(model)
    over = ceiling is not None and accuracy > ceiling
    ahead = public is not None and accuracy - public > margin
    if not (over or ahead):
        return None
    reasons = []
    if over:
        reasons.append(f"{accuracy:.4f} on the hidden set is above {ceiling:.4f}, more than honest models reach on this data set")
    if ahead:
        reasons.append(f"it is {accuracy - public:.4f} higher than its {public:.4f} on the public training sample "
                       f"(a model that learnt the test set by heart scores higher on it than on training data)")
    detail = ("; ".join(reasons) + ". If the hidden set is public (Fashion-MNIST's is the official test split), the "
              "model may have learnt it by heart, holding the test images and labels in its weights: look at its "
              "architecture and parameter count, and grade with a test set the students never saw")
    return AccuracyFlag(model=model.path, accuracy=accuracy, public_accuracy=public, ceiling=ceiling if over else None,
                        margin=margin if ahead else None, detail=detail)


def accuracy_flags(evidence: Evidence, rubric: Rubric) -> tuple[AccuracyFlag, ...]:
    """The evaluated models of `evidence` whose hidden-set accuracy is implausible under `rubric`."""
    ceiling, margin = ceiling_for(rubric), rubric.plausibility.margin
    return tuple(f for f in (_flag(m, ceiling, margin) for m in evidence.models) if f is not None)

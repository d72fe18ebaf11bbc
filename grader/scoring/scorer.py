"""The hidden labels, and turning a submission's raw hidden-set outputs into metrics.

Everything here runs where the labels are (the grader's own process, or the Ray driver): the
sandboxed workers return raw outputs only (grader.facts.gather.gather_unscored), and `score_gathered`
scores them here."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from grader.records.evidence import Evidence, Gathered, encode_labels
from grader.scoring import metrics as _metrics
from grader.scoring.confidence import confidence_score


@dataclass(frozen=True)
class Scorer:
    """The hidden labels. Stays in the grader's process; turns raw outputs into Metrics.

    `labels` are in the data set's own order ("label order": IDX row order, an image folder's sorted
    file names). Workers see the hidden images in a secret shuffled order instead (`order`, made
    afresh for every run by `pipeline._write_inputs` and kept only here): row i of the images a worker
    gets is image `order[i]`. `restore` undoes it, so everything after scoring (metrics, the
    `predicted` fingerprint, cached evidence) is in label order and does not depend on the run."""

    labels: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    # what a prediction file calls each hidden image (grader.scoring.competition): its file name in an image
    # folder, its row number (from 0) in an IDX split; empty: the row numbers
    ids: tuple[str, ...] = ()
    order: np.ndarray | None = field(default=None, repr=False)  # None: the workers' order is label order

    def image_ids(self) -> tuple[str, ...]:
        return self.ids or tuple(str(i) for i in range(len(self.labels)))

    def restore(self, outputs: np.ndarray) -> np.ndarray:
        """A worker's outputs (in the shuffled order it saw) put back in label order."""
        if self.order is None:
            return outputs
        if outputs.ndim < 1 or len(outputs) != len(self.order):
            raise _metrics.OutputError(f"the model returned outputs of shape {outputs.shape}; "
                                       f"expected ({len(self.order)}, {len(self.class_names)})")
        restored = np.empty_like(outputs)
        restored[self.order] = outputs
        return restored

    def score(self, outputs: np.ndarray) -> tuple[_metrics.Metrics, str | None]:
        """Metrics of outputs already in label order (`restore` them first)."""
        note = _metrics.check_outputs(outputs, len(self.labels), len(self.class_names))
        metrics = _metrics.score(outputs, self.labels, self.class_names)
        contest = confidence_score(outputs, self.labels.astype(np.int64), aggregate="sum")
        return metrics.model_copy(update={"confidence_sum": round(contest.score, 4),
                                          "confidence_mean": round(contest.score / max(1, contest.n), 4)}), note


def _predicted(outputs: np.ndarray) -> str | None:
    """The predicted class of every hidden image, in label order: one byte per image (a data set of
    more than 256 classes is not compared by predictions)."""
    if outputs.ndim != 2 or not 0 < outputs.shape[1] <= 256:
        return None
    return encode_labels(np.argmax(outputs, axis=1).astype(np.uint8))


def score_gathered(gathered: Gathered, scorer: Scorer) -> Evidence:
    """Metrics for every evaluated model, from its raw outputs and the hidden labels (the grader's
    process only). A model whose outputs cannot be scored (wrong shape) gets that as its error."""
    models = []
    for model in gathered.evidence.models:
        outputs = gathered.outputs.get(model.path)
        if model.status != "evaluated" or model.metrics is not None:
            models.append(model)
        elif outputs is None:  # evaluated, but its outputs did not come back
            models.append(model.model_copy(update={"status": "error", "error": "its outputs on the hidden set were lost"}))
        else:
            try:
                restored = scorer.restore(outputs)  # label order again: nothing below depends on this run's shuffle
                metrics, note = scorer.score(restored)
            except ValueError as exc:
                models.append(model.model_copy(update={"status": "error", "error": str(exc), "predicted": None}))
                continue
            models.append(model.model_copy(update={"metrics": metrics, "output_note": note,
                                                   "predicted": _predicted(restored)}))
    return gathered.evidence.model_copy(update={"models": tuple(models)})

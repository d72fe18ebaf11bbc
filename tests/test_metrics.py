from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from grader.scoring import metrics

NAMES = tuple(str(i) for i in range(10))


def test_score_matches_sklearn_and_confusion_sums() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 500)
    outputs = rng.random((500, 10)).astype(np.float32)
    m = metrics.score(outputs, labels, NAMES)
    assert m.accuracy == pytest.approx(accuracy_score(labels, outputs.argmax(1)))
    assert sum(map(sum, m.confusion)) == 500 and sum(c.support for c in m.per_class) == 500


def test_check_outputs_detects_logits_wrong_classes_and_nan() -> None:
    probs = metrics.softmax(np.random.default_rng(2).normal(size=(4, 10)))
    assert metrics.check_outputs(probs, 4, 10) is None
    assert "logits" in (metrics.check_outputs(np.log(probs), 4, 10) or "")
    with pytest.raises(metrics.OutputError, match="5 output"):
        metrics.check_outputs(probs[:, :5], 4, 10)
    bad = probs.copy()
    bad[1, 2] = np.nan
    with pytest.raises(metrics.OutputError, match="NaN"):
        metrics.check_outputs(bad, 4, 10)
    with pytest.raises(metrics.OutputError, match="shape"):
        metrics.check_outputs(probs[:3], 4, 10)

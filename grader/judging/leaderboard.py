"""A class leaderboard from measured scores: the rubric's `leaderboard:` section (the flowers
contest: every group's model on the same hidden photos, ranked by the confidence score; or any
class contest by accuracy). Pure: judging computes it from evidence, sinks only show it.

Ranking is competition ranking (1, 2, 2, 4): tied students share a rank and are listed by name.
A student without a measured model is listed last, unranked, so the teacher sees who is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, Field

from grader.records.frozen import Frozen
from grader.judging.checks._select import ModelSelector
from grader.records.evidence import Evidence, ModelEvidence
from grader.records.results import Leaderboard, LeaderboardRow, Metric

METRIC_WORDS: dict[str, str] = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "confidence_sum": "confidence score (sum over photos of the % given to the true class when right)",
    "confidence_mean": "mean confidence score (% given to the true class when right, 0 when wrong)",
}


class LeaderboardSpec(Frozen):
    """The rubric's `leaderboard:` section."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = Field(default="Leaderboard", description="heading of the leaderboard page")
    metric: Metric = Field(default="accuracy", description="what ranks the models, measured on the hidden set")
    select: ModelSelector = Field(default=ModelSelector(), description="which models take part (each student's best counts)")
    higher_is_better: bool = True


def metric_value(model: ModelEvidence, metric: Metric) -> float | None:
    m = model.metrics
    if m is None:
        return None
    value = getattr(m, metric, None)
    return None if value is None else float(value)


def build_leaderboard(spec: LeaderboardSpec, evidences: Sequence[Evidence]) -> Leaderboard:
    sign = 1.0 if spec.higher_is_better else -1.0
    entries: list[tuple[str, float | None, str | None, int]] = []
    for e in evidences:
        scored = [(v, m.path) for m in spec.select.pick(e.models) if (v := metric_value(m, spec.metric)) is not None]
        best = sorted(scored, key=lambda t: (-sign * t[0], t[1]))[0] if scored else None  # a tie: the first file name
        entries.append((e.student, best[0] if best else None, best[1] if best else None, len(scored)))
    ranked = sorted((x for x in entries if x[1] is not None), key=lambda x: (-sign * (x[1] or 0.0), x[0]))
    rows: list[LeaderboardRow] = []
    for position, (student, value, path, n) in enumerate(ranked, start=1):
        rank = rows[-1].rank if rows and rows[-1].value == value else position
        rows.append(LeaderboardRow(rank=rank, student=student, value=value, model=path, models=n))
    rows += [LeaderboardRow(rank=None, student=s, value=None) for s, v, _, _ in sorted(entries) if v is None]
    return Leaderboard(title=spec.title, metric=spec.metric, description=METRIC_WORDS[spec.metric], rows=tuple(rows))

"""Checks about the class competition of prediction files (the rubric's `competition:` section):
what the ledger holds for the student (grader.scoring.competition), never the printed claims."""

from __future__ import annotations

from pydantic import Field

from grader.judging.checks._registry import Criterion, Params, register_check
from grader.records.evidence import Evidence
from grader.records.results import CriterionResult


class EntryParams(Params):
    min_public_score: float | None = Field(default=None, ge=0, le=1, description="public score needed for full points (none: taking part is enough)")
    partial_from: float | None = Field(default=None, ge=0, le=1, description="public score that earns the first points; points grow linearly up to `min_public_score`")


@register_check("competition_entry", params=EntryParams, needs={"competition"})
def competition_entry(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The student has a scored prediction file in the class competition (optionally with a public score above a threshold)."""
    p: EntryParams = criterion.params  # type: ignore[assignment]
    c = evidence.competition
    records = c.records if c else ()
    how = "Hand in a prediction file (e.g. predictions.csv) with one row per test image: id,label."
    if not records:
        return criterion.failed(f"No prediction file found. {how}")
    scored = [r for r in records if r.status == "scored" and r.public_score is not None]
    others = [r for r in records if r.status != "scored"]
    history = "; ".join(f"{r.submitted_at:%Y-%m-%d %H:%M} {r.file_name}: {r.status}"
                        + (f" public {r.public_score:.4f}" if r.public_score is not None else f" ({r.reason})")
                        for r in records)
    if not scored:
        last = others[-1]
        return criterion.failed(f"None of your prediction files could be scored; the last one, {last.file_name}, was "
                                f"{last.status}: {last.reason}", history)
    best = max(scored, key=lambda r: r.public_score or 0.0)
    value = best.public_score or 0.0
    note = f" ({len(others)} other file(s) not scored: {others[-1].reason})" if others else ""
    said = f"Your best public score is {value:.4f} ({best.file_name}, {len(scored)} scored submission(s)){note}."
    if p.min_public_score is None or value >= p.min_public_score:
        return criterion.passed(said, history)
    if p.partial_from is not None and value > p.partial_from:
        fraction = (value - p.partial_from) / (p.min_public_score - p.partial_from)
        return criterion.partial(fraction, f"{said} Full points from {p.min_public_score:.3f}.", history)
    return criterion.failed(f"{said} The competition asks for at least {p.min_public_score:.3f}.", history)

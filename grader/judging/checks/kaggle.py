"""Checks about the Kaggle submissions a student reports: the list that
``kaggle competitions submissions -c NAME --csv`` prints (grader/facts/kaggle.py reads it,
grader/judging/kaggle_rules.py counts it). Kaggle's own scores are shown, never used as points."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from grader.judging.checks._registry import Criterion, Params, register_check
from grader.records.evidence import Evidence, KaggleSubmission, ModelEvidence
from grader.judging.kaggle_rules import summarize
from grader.records.results import CriterionResult

_HOW = "Export it with `kaggle competitions submissions -c COMPETITION --csv > kaggle_submissions.csv` and add the file."


def _missing(evidence: Evidence, criterion: Criterion, required: bool) -> CriterionResult | None:
    k = evidence.kaggle
    if k is None:
        if required:
            return criterion.failed(f"No Kaggle submission list found. {_HOW}")
        return criterion.passed("No Kaggle submission list handed in; none is required.")
    if k.error:
        return criterion.errored(f"Could not read {k.path}: {k.error}. {_HOW}")
    return None


def _line(s: KaggleSubmission) -> str:
    return f"{s.date} {s.file_name} ({s.status or 'status ?'}) public={s.public_score}"


class KaggleParams(Params):
    max: int = Field(default=2, ge=0, description="most submissions allowed in total")
    max_per_day: int | None = Field(default=None, ge=1, description="most submissions allowed on one (UTC) day")
    count_errors: bool = Field(default=False, description="count submissions Kaggle could not score (status error)")
    required: bool = Field(default=True, description="fail when the student hands in no submission list")


@register_check("max_kaggle_submissions", params=KaggleParams, needs={"kaggle"})
def max_kaggle_submissions(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """No more than N Kaggle submissions in total (and per day), counted from the CSV that `kaggle competitions submissions --csv` prints."""
    p: KaggleParams = criterion.params  # type: ignore[assignment]
    if (early := _missing(evidence, criterion, p.required)) is not None:
        return early
    k = evidence.kaggle
    assert k is not None
    summary = summarize(k.submissions, count_errors=p.count_errors)
    detail = "; ".join(_line(s) for s in k.submissions)
    ignored = f" ({len(summary.errors)} that Kaggle could not score not counted)" if summary.errors and not p.count_errors else ""
    problems = []
    if summary.counted > p.max:
        problems.append(f"{summary.counted} Kaggle submissions in {k.path}{ignored}; at most {p.max} are allowed")
    if p.max_per_day is not None and summary.max_per_day > p.max_per_day:
        problems.append(f"{summary.max_per_day} submissions on {summary.busiest_day}; at most {p.max_per_day} a day are allowed")
    if problems:
        return criterion.failed("; ".join(problems) + ".", detail)
    per_day = f", at most {summary.max_per_day} on one day" if p.max_per_day is not None and summary.per_day else ""
    return criterion.passed(f"{summary.counted} Kaggle submission(s) in {k.path}{ignored}{per_day} "
                            f"(at most {p.max} allowed).", detail)


class SelectionParams(Params):
    select: int = Field(default=2, ge=1, description="submissions that count for the final leaderboard")
    non_pretrained_at_least: int = Field(default=1, ge=0, description="of the final ones, how many must come from a model that is not pretrained")
    link: Literal["description", "file_name", "either"] = Field(
        default="either", description="where a submission names the model file it came from (e.g. description 'cnn.keras')")
    required: bool = Field(default=True, description="fail when the student hands in no submission list")


def _names(model: ModelEvidence) -> list[str]:
    leaf = model.path.replace("\\", "/").split("→")[-1].split("!")[-1].rsplit("/", 1)[-1]
    stem = leaf.rsplit(".", 1)[0]
    return [n.lower() for n in (leaf, stem) if len(n) >= 2]


def link_model(sub: KaggleSubmission, models: tuple[ModelEvidence, ...], where: str) -> ModelEvidence | None:
    """The model a Kaggle submission names (its file name or stem as a word in the submission's
    description or file name); the longest name wins, so 'cnn_v2' beats 'cnn'."""
    texts = {"description": [sub.description], "file_name": [sub.file_name], "either": [sub.description, sub.file_name]}[where]
    best: tuple[int, ModelEvidence] | None = None
    for m in models:
        for name in _names(m):
            pattern = rf"(?<![a-z0-9]){re.escape(name)}(?![a-z0-9])"
            if any(re.search(pattern, t.lower()) for t in texts) and (best is None or len(name) > best[0]):
                best = (len(name), m)
    return best[1] if best else None


@register_check("kaggle_final_selection", params=SelectionParams, needs={"kaggle", "architecture"})
def kaggle_final_selection(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The N submissions that count for the final board (the best N by public score, as Kaggle picks when none is selected): at least M of them come from a model that is not pretrained."""
    p: SelectionParams = criterion.params  # type: ignore[assignment]
    if (early := _missing(evidence, criterion, p.required)) is not None:
        return early
    k = evidence.kaggle
    assert k is not None
    # The exported list does not say which submissions a student selected: Kaggle's own rule applies
    summary = summarize(k.submissions, select=p.select)
    final = list(summary.final)
    if not final:
        return criterion.failed(f"No scored submission in {k.path}, so none can count for the final leaderboard.",
                                "; ".join(_line(s) for s in k.submissions))
    links = [(s, link_model(s, evidence.models, p.link)) for s in final]
    described = "; ".join(f"{s.file_name} (public {s.public_score}) ← {m.path if m else 'no model named'}" for s, m in links)
    own = [m for _, m in links if m is not None and m.pretrained is not None and m.pretrained.value is False]
    unnamed = [s for s, m in links if m is None]
    if len(own) >= p.non_pretrained_at_least:
        return criterion.passed(f"Your final submission(s): {described}; {len(own)} from a model trained from scratch.", described)
    hint = (f" Name the model file in each submission's description (e.g. 'cnn.keras'), so the grader can tell which model made it."
            if unnamed else "")
    return criterion.failed(
        f"Of your final submission(s) ({described}), {len(own)} come from a model that is not pretrained; "
        f"at least {p.non_pretrained_at_least} must.{hint}", described)

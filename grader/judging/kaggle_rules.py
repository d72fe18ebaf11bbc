"""Facts about a student's Kaggle submission list, for checks to judge. Pure functions, no I/O.

The list is what ``kaggle competitions submissions -c NAME --csv`` prints (read by
`grader.facts.kaggle.read_kaggle`): fileName, date, description, status, publicScore, privateScore.
What the CLI writes has changed over the years, so both forms are read:

- status: the old API gave ``complete`` / ``pending`` / ``error``; the CLI on kagglesdk prints the
  enum, ``SubmissionStatus.COMPLETE`` / ``.PENDING`` / ``.ERROR``. Read case-insensitively.
- date: ``2026-03-01 12:34:56`` (old), ``2026-03-01 12:34:56.067000`` (kagglesdk), or ISO 8601 with
  ``T`` and ``Z``/offset. Kaggle's times are UTC, and its daily limit resets at 00:00 UTC.

The CSV has no "selected for final" column, so which submissions a student chose must come from
elsewhere (`chosen`); without it, Kaggle's own rule applies: the best N by public score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Literal

from grader.records.frozen import Frozen
from grader.records.evidence import KaggleSubmission

__all__ = ["KaggleStatus", "KaggleSummary", "errors", "final_selection", "kaggle_date", "kaggle_status",
           "per_day", "summarize"]

KaggleStatus = Literal["complete", "pending", "error", "unknown"]
_STATUSES: dict[str, KaggleStatus] = {"complete": "complete", "pending": "pending", "error": "error"}


def kaggle_status(sub: KaggleSubmission) -> KaggleStatus:
    """complete / pending / error, from either spelling; "unknown" for anything else (blank included)."""
    text = sub.status.strip().lower().removeprefix("submissionstatus.")
    return _STATUSES.get(text, "unknown")


def kaggle_date(sub: KaggleSubmission) -> datetime | None:
    """When it was submitted, as an aware UTC datetime; None when the date cannot be read."""
    text = sub.date.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)  # 3.11 reads ' ' or 'T', fractions, 'Z' and offsets
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def errors(subs: Iterable[KaggleSubmission]) -> list[KaggleSubmission]:
    """The submissions Kaggle could not score (status ERROR)."""
    return [s for s in subs if kaggle_status(s) == "error"]


def _counted(sub: KaggleSubmission, count_errors: bool) -> bool:
    return count_errors or kaggle_status(sub) != "error"


def per_day(subs: Iterable[KaggleSubmission], *, count_errors: bool = False) -> dict[date, int]:
    """Submissions per UTC day (sorted by day); undated ones are left out, errors too unless asked."""
    days = Counter(d.date() for s in subs if _counted(s, count_errors) and (d := kaggle_date(s)) is not None)
    return dict(sorted(days.items()))


def final_selection(
    subs: Sequence[KaggleSubmission],
    n: int,
    *,
    chosen: Collection[str] = (),
    higher_is_better: bool = True,
) -> list[KaggleSubmission]:
    """The submissions that count for the final board, in list order.

    `chosen`: file names or descriptions the student says they selected (any case); the complete
    submissions that match are returned (all of them: a check decides whether more than `n` is
    wrong). Without `chosen`, Kaggle's rule: the best `n` complete ones by public score, the earlier
    one first on ties (undated ones last).
    """
    complete = [(i, s) for i, s in enumerate(subs) if kaggle_status(s) == "complete"]
    if chosen:
        wanted = {c.strip().lower() for c in chosen}
        return [s for _, s in complete if s.file_name.strip().lower() in wanted or s.description.strip().lower() in wanted]
    sign = -1.0 if higher_is_better else 1.0
    far = datetime.max.replace(tzinfo=UTC)
    scored = [(i, s) for i, s in complete if s.public_score is not None]
    ranked = sorted(scored, key=lambda t: (sign * (t[1].public_score or 0.0), kaggle_date(t[1]) or far, t[0]))
    keep = sorted(ranked[:n], key=lambda t: t[0])
    return [s for _, s in keep]


class KaggleSummary(Frozen):
    """Counts and picks from one submission list, in the shape a check or report reads."""

    total: int  # rows in the list
    complete: int
    pending: int
    errors: tuple[KaggleSubmission, ...] = ()
    unknown: tuple[KaggleSubmission, ...] = ()  # a status this module does not know
    counted: int  # submissions that count against the limits (errors only with count_errors)
    per_day: dict[date, int] = {}
    max_per_day: int = 0
    busiest_day: date | None = None  # the earliest day with max_per_day submissions
    undated: tuple[KaggleSubmission, ...] = ()
    final: tuple[KaggleSubmission, ...] = ()


def summarize(
    subs: Sequence[KaggleSubmission],
    *,
    select: int = 2,
    chosen: Collection[str] = (),
    higher_is_better: bool = True,
    count_errors: bool = False,
) -> KaggleSummary:
    """Everything above at once. Errored submissions are not counted against limits unless
    `count_errors` (this grader's own competitions do not count them either)."""
    statuses = [kaggle_status(s) for s in subs]
    days = per_day(subs, count_errors=count_errors)
    top = max(days.values(), default=0)
    return KaggleSummary(
        total=len(subs),
        complete=statuses.count("complete"),
        pending=statuses.count("pending"),
        errors=tuple(s for s, st in zip(subs, statuses, strict=True) if st == "error"),
        unknown=tuple(s for s, st in zip(subs, statuses, strict=True) if st == "unknown"),
        counted=sum(_counted(s, count_errors) for s in subs),
        per_day=days,
        max_per_day=top,
        busiest_day=next((d for d, k in days.items() if k == top), None) if days else None,
        undated=tuple(s for s in subs if kaggle_date(s) is None),
        final=tuple(final_selection(subs, select, chosen=chosen, higher_is_better=higher_is_better)),
    )

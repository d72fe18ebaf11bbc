"""A competition's records: one submission as the ledger keeps it, one line of a board
(grader.scoring.competition keeps the ledger and scores)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime

from grader.records.frozen import Frozen


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]  # naive datetimes are errors


SubmissionStatus = Literal["scored", "refused", "invalid"]


class SubmissionRecord(Frozen):
    """One submission as the ledger keeps it: one JSON line, written once."""

    kind: Literal["submission"] = "submission"
    student: str
    submitted_at: UtcDatetime  # written as ISO 8601 in UTC
    file_name: str
    sha256: str
    status: SubmissionStatus
    reason: str = ""  # why refused, or the first problem of an invalid file
    problems: tuple[str, ...] = ()  # every error (then warning) of an invalid file, one line each
    warnings: tuple[str, ...] = ()  # warnings about a scored file
    public_score: float | None = None
    private_score: float | None = None
    # Derived when the ledger is read, from the SelectionEvents after it; written as False.
    selected: bool = False


class ContestRow(Frozen):
    """One student's line on a competition's board (public or private)."""

    rank: int  # competition ranking: 1, 2, 2, 4
    student: str
    score: float
    submissions: int  # scored submissions
    last_submitted_at: UtcDatetime  # the student's last scored submission

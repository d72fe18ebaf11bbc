"""Errors the grader reports to its user, and the exit codes they map to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of `grade`. Failing students are not an error: scores never change the code
    unless the teacher asks with ``--fail-under``."""

    OK = 0
    NOT_ALL_GRADED = 1  # a submission could not be graded, or --fail-under was missed
    INTERNAL = 3
    USAGE = 4  # bad arguments, bad rubric, no hidden test set, unwritable output
    INTERRUPTED = 130


class GraderError(Exception):
    """An error in how the grader was called or set up; printed as one line with a hint."""

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class GraderFault(GraderError):
    """A failure of the grader or of the machine (a sandbox that cannot start, a missing interpreter,
    a full disk), never the student's: printed as one line naming the cause and the fix, exit 1.
    Submissions it touches are "not graded (grader fault)" and nothing about them is cached."""

    exit_code = ExitCode.NOT_ALL_GRADED


class RubricError(GraderError):
    """A rubric that cannot be used. Carries every problem found, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__(
            "\n".join(self.problems),
            hint="fix the rubric; `grade checks` lists the checks and their parameters",
        )

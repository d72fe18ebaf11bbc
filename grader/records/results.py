"""Results: the judged outcome of a whole grading run. Every sink reads this, none changes it."""

from __future__ import annotations

from typing import Literal

from grader.records.frozen import Frozen
from grader.records.competition import ContestRow
from grader.records.evidence import Evidence

Outcome = Literal["pass", "partial", "fail", "error", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("pass", "partial", "fail", "error", "skipped")


class CriterionResult(Frozen):
    """One criterion judged for one student.

    `message` is written for the student (what happened, what to do next); `detail` is for the
    teacher (the numbers behind the decision).
    """

    id: str
    title: str
    outcome: Outcome
    points: float
    max_points: float
    message: str
    detail: str = ""


class AccuracyFlag(Frozen):
    """A model whose hidden-set accuracy is too good to be true (grader.judging.plausibility), for the teacher
    to look at: a public test set learnt by heart scores near 1.0, and higher on the test set than on
    the public training sample. Never on the student's page; never changes points."""

    model: str  # the model's path in the submission
    accuracy: float  # on the hidden set
    public_accuracy: float | None = None  # on the PUBLIC training sample, with the preprocessing chosen there
    ceiling: float | None = None  # the rubric's or the data set's max_accuracy, when it was exceeded
    margin: float | None = None  # the rubric's margin, when the accuracy exceeded the public one by more
    detail: str  # what was found, in a sentence for the teacher


class StudentResult(Frozen):
    student: str
    status: str  # the evidence status: gathered / failed / timeout / limit
    points: float
    max_points: float
    criteria: tuple[CriterionResult, ...]
    best_accuracy: float | None = None
    flags: tuple[str, ...] = ()
    plausibility: tuple[AccuracyFlag, ...] = ()  # teacher-only: implausibly high accuracies (grader.judging.plausibility)
    evidence: Evidence


class CriterionSummary(Frozen):
    """A rubric criterion as the reports show it (title, points, the check that judges it)."""

    id: str
    title: str
    check: str
    max_points: float
    description: str = ""


class RunInfo(Frozen):
    """Facts about the run that produced the results, shown in every report."""

    grader_version: str
    started: str  # ISO 8601, given to `judge` by the caller so that judging stays pure
    rubric_path: str
    dataset: str
    hidden_source: str = ""
    hidden_sha256: str = ""
    hidden_size: int = 0
    device: str = "cpu"
    sandboxed: bool = False
    sandbox_note: str = ""
    seconds: float = 0.0


SimilarityKind = Literal["identical_file", "same_weights", "predictions", "notebook_code"]


class SimilarityFlag(Frozen):
    """Two students whose submissions match more than independent work would. For the teacher to judge:
    never a penalty, never on a student's page."""

    students: tuple[str, str]  # sorted
    kind: SimilarityKind
    strength: float  # in [0, 1]: 1.0 identical; for predictions the agreement, for code the overlap
    what: tuple[str, str]  # the two files that matched (model paths or notebook paths)
    detail: str  # what matched and how strongly, in a sentence for the teacher


Metric = Literal["accuracy", "macro_f1", "confidence_sum", "confidence_mean"]


class LeaderboardRow(Frozen):
    rank: int | None  # None: no measured model
    student: str
    value: float | None
    model: str | None = None  # the model that counted
    models: int = 0  # models that took part


class Leaderboard(Frozen):
    title: str
    metric: Metric
    description: str
    rows: tuple[LeaderboardRow, ...]



class ContestBoards(Frozen):
    """The class competition's leaderboards (grader.scoring.competition), from the ledger at judging time."""

    title: str
    metric: str
    public_fraction: float
    deadline: str | None = None  # ISO 8601, UTC
    private_visible: bool = False  # the run is after the deadline: private scores may be shown to students
    public: tuple[ContestRow, ...] = ()
    private: tuple[ContestRow, ...] = ()


class Results(Frozen):
    assignment: str
    title: str
    max_points: float
    criteria: tuple[CriterionSummary, ...]
    students: tuple[StudentResult, ...]
    run: RunInfo
    assignment_text: str = ""
    similarity: tuple[SimilarityFlag, ...] = ()  # teacher-only; see grader.judging.similarity
    leaderboard: Leaderboard | None = None  # when the rubric defines a contest (grader.judging.leaderboard)
    contest: ContestBoards | None = None  # when the rubric defines a competition of prediction files

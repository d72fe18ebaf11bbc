"""Judging: evidence + rubric -> Results. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

from grader.judging.checks import Criterion, get_check
from grader.records.evidence import Evidence
from grader.scoring.competition import leaderboard
from grader.records.results import ContestBoards, CriterionResult, CriterionSummary, Results, RunInfo, StudentResult
from grader.inputs.rubric import Rubric
from grader.judging.leaderboard import build_leaderboard
from grader.judging.plausibility import accuracy_flags
from grader.judging.similarity import find_similar

_STATUS_WORDS = {
    "failed": "the grader could not gather evidence from your submission",
    "timeout": "grading your submission took longer than the time limit",
    "limit": "your submission hit a resource limit while being graded",
    "grader_fault": ("the grader or the machine it ran on failed while grading your submission; this is not a "
                     "problem with your work, and your teacher will grade it again"),
}


def judge_criterion(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    if evidence.status != "gathered":
        reason = _STATUS_WORDS.get(evidence.status, evidence.status)
        last = evidence.errors[-1] if evidence.errors else ""
        return criterion.errored(f"Not graded: {reason}.", last)
    spec = get_check(criterion.check)
    try:
        return spec(evidence, criterion)
    except Exception as exc:  # noqa: BLE001 - a bug in one check must not lose the class
        return criterion.errored(
            "The grader failed on this criterion; your teacher has the details.",
            f"internal error in check {criterion.check!r}: {type(exc).__name__}: {exc}",
        )


_MODEL_NEEDS = frozenset({"architecture", "predictions", "pretrained"})


def expects_models(rubric: Rubric) -> bool:
    """Whether the rubric grades model files at all (a competition of prediction files may not)."""
    return any(get_check(c.check).needs & _MODEL_NEEDS for c in rubric.criteria) or rubric.leaderboard is not None


def _flags(evidence: Evidence, models_expected: bool = True) -> tuple[str, ...]:
    flags = []
    if evidence.status != "gathered":
        flags.append(f"not graded ({evidence.status})")
    if not evidence.models and models_expected:
        flags.append("no model")
    broken = sum(1 for m in evidence.models if m.status == "error")
    if broken:
        flags.append(f"{broken} model(s) unreadable")
    code = sum(1 for m in evidence.models if m.status == "needs_sandbox")
    if code:
        flags.append(f"{code} model(s) carry code")
    return tuple(flags)


def judge_student(rubric: Rubric, evidence: Evidence) -> StudentResult:
    results = tuple(judge_criterion(evidence, c) for c in rubric.criteria)
    accuracies = [m.metrics.accuracy for m in evidence.models if m.metrics is not None]
    implausible = accuracy_flags(evidence, rubric)  # teacher-only, and no change to the points
    return StudentResult(
        student=evidence.student,
        status=evidence.status,
        points=round(sum(r.points for r in results), 2),
        max_points=rubric.max_points,
        criteria=results,
        best_accuracy=max(accuracies) if accuracies else None,
        flags=_flags(evidence, expects_models(rubric)) + (("implausible accuracy",) if implausible else ()),
        plausibility=implausible,
        evidence=evidence,
    )


def _contest(rubric: Rubric, evidences: list[Evidence], run: RunInfo) -> ContestBoards | None:
    policy = rubric.competition
    if policy is None:
        return None
    records = [r for e in evidences if e.competition for r in e.competition.records]
    started = _dt.datetime.fromisoformat(run.started)
    visible = policy.deadline is not None and started.tzinfo is not None and started > policy.deadline
    return ContestBoards(title=policy.title, metric=policy.metric, public_fraction=policy.public_fraction,
                         deadline=policy.deadline.isoformat() if policy.deadline else None, private_visible=visible,
                         public=tuple(leaderboard(records, policy, "public")),
                         private=tuple(leaderboard(records, policy, "private")))


def judge(rubric: Rubric, evidences: Iterable[Evidence], *, run: RunInfo, assignment_text: str = "",
          starter_fingerprints: frozenset[int] = frozenset()) -> Results:
    """Score every student on every criterion of `rubric`, and find pairs of similar submissions
    (flags for the teacher, never points)."""
    ordered = sorted(evidences, key=lambda e: e.student)
    students = tuple(judge_student(rubric, e) for e in ordered)
    return Results(
        assignment=rubric.assignment,
        title=rubric.title,
        max_points=rubric.max_points,
        criteria=tuple(CriterionSummary(id=c.id, title=c.title, check=c.check, max_points=c.points, description=c.description)
                       for c in rubric.criteria),
        students=students,
        run=run,
        assignment_text=assignment_text,
        similarity=find_similar(ordered, starter_fingerprints=starter_fingerprints),
        leaderboard=build_leaderboard(rubric.leaderboard, ordered) if rubric.leaderboard else None,
        contest=_contest(rubric, ordered, run),
    )

"""The rubric's `leaderboard:` section: each student's best measured model ranked (1, 2, 2, 4), the
students without one listed last; the class page and leaderboard.html show it."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.errors import RubricError
from grader.judging.judge import judge
from grader.judging.leaderboard import LeaderboardSpec, build_leaderboard
from grader.report import write_reports
from grader.records.results import RunInfo
from grader.inputs.rubric import parse_rubric
from tests._evidence import CNN, arch, evidence, model

RUBRIC = """
assignment: flowers
title: Flowers contest
leaderboard: {title: "Flowers contest", metric: confidence_sum}
criteria:
  - {id: model, title: A model, points: 1, check: models_present, params: {at_least: 1}}
"""
RUN = RunInfo(grader_version="t", started="2026-12-01T00:00:00+00:00", rubric_path="r.yaml", dataset="fashion-mnist", hidden_size=100)


def _scored(student: str, *values: float | None):  # type: ignore[no-untyped-def]
    models = []
    for i, v in enumerate(values):
        m = model(f"m{i}.tflite", arch(*CNN), 0.8)
        if v is not None:
            m = m.model_copy(update={"metrics": m.metrics.model_copy(update={"confidence_sum": v})})  # type: ignore[union-attr]
        else:
            m = m.model_copy(update={"metrics": None, "status": "error"})
        models.append(m)
    return evidence(*models, student=student)


def test_ranks_share_ties_and_the_unmeasured_come_last() -> None:
    board = build_leaderboard(LeaderboardSpec(metric="confidence_sum"), [
        _scored("dora", 70.0), _scored("abe", 90.0, 50.0), _scored("cy", 70.0), _scored("bo", 60.0), _scored("eve", None)])
    assert [(r.rank, r.student, r.value) for r in board.rows] == [
        (1, "abe", 90.0), (2, "cy", 70.0), (2, "dora", 70.0), (4, "bo", 60.0), (None, "eve", None)]
    assert board.rows[0].model == "m0.tflite" and board.rows[0].models == 2
    lower = build_leaderboard(LeaderboardSpec(metric="confidence_sum", higher_is_better=False), [_scored("a", 1.0), _scored("b", 2.0)])
    assert [r.student for r in lower.rows] == ["a", "b"]


def test_rubric_section_is_validated_and_the_pages_show_the_board(tmp_path: Path) -> None:
    with pytest.raises(RubricError) as info:
        parse_rubric(RUBRIC.replace("confidence_sum", "confidence"), "flowers.yaml")
    assert "flowers.yaml:4: field 'leaderboard.metric': must be one of" in str(info.value.problems)
    rubric = parse_rubric(RUBRIC, "flowers.yaml")
    results = judge(rubric, [_scored("abe", 90.0), _scored("<b>cy</b>", 70.0)], run=RUN)
    write_reports(results, tmp_path, ["html"])
    board = (tmp_path / "leaderboard.html").read_text()
    assert "Flowers contest" in board and "90.0" in board and "&lt;b&gt;cy&lt;/b&gt;" in board
    assert "m0.tflite" not in board  # the class's page: names and scores, not files
    index = (tmp_path / "index.html").read_text()
    assert 'id="leaderboard"' in index and "leaderboard.html" in index and "m0.tflite" in index


def test_gradescope_gets_the_leaderboard_entry() -> None:
    from grader.report.autograders import gradescope_result

    results = judge(parse_rubric(RUBRIC, "flowers.yaml"), [_scored("abe", 90.0), _scored("cy", None)], run=RUN)
    by = {s.student: s for s in results.students}
    assert gradescope_result(results, by["abe"])["leaderboard"] == [{"name": "Flowers contest", "value": 90.0}]
    assert "leaderboard" not in gradescope_result(results, by["cy"])

"""A class competition of prediction files, graded end to end on the real hidden Fashion-MNIST split
(ids are row numbers): files scored on a public and a private part, limits kept across two runs by the
ledger, a broken file explained, late files refused, and the pages showing the private board only
where they may."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grader.pipeline import grade
from grader.inputs.rubric import parse_rubric
from grader.settings import Settings
from tests._class import read_idx

ROOT = Path(__file__).resolve().parents[1]
RUBRIC = """
assignment: contest
title: Fashion contest
competition: {{title: "Fashion contest", public_fraction: 0.3, seed: 1, max_per_day: 2, max_total: 5, deadline: "{deadline}"}}
criteria:
  - {{id: entry, title: A scored entry, points: 2, check: competition_entry, params: {{min_public_score: 0.8, partial_from: 0.5}}}}
"""


def _predictions(labels: np.ndarray, right: float, seed: int, sep: str = ",", bom: bool = False) -> str:
    rng = np.random.default_rng(seed)
    guess = np.where(rng.random(len(labels)) < right, labels, (labels + 1) % 10)
    text = f"id{sep}label\n" + "".join(f"{i}{sep}{int(v)}\n" for i, v in enumerate(guess))
    return ("\ufeff" if bom else "") + text


@pytest.fixture(scope="module")
def labels(fmnist_dir: Path) -> np.ndarray:
    return read_idx(fmnist_dir / "t10k-labels-idx1-ubyte.gz")


def _grade(root: Path, out: Path, fmnist: Path, deadline: str):  # type: ignore[no-untyped-def]
    rubric = parse_rubric(RUBRIC.format(deadline=deadline), "contest.yaml")
    settings = Settings(out=out, hidden_tests=fmnist, download=False, public_sample=100, project_root=ROOT, cache=False)
    return grade(root, rubric, settings)


def test_a_competition_across_two_runs(tmp_path: Path, fmnist_dir: Path, labels: np.ndarray) -> None:
    root, out = tmp_path / "class", tmp_path / "out"
    for name in ("ann", "bob", "cy"):
        (root / name).mkdir(parents=True)
    (root / "ann" / "predictions.csv").write_text(_predictions(labels, 0.9, 1))
    (root / "bob" / "predictions.csv").write_text(_predictions(labels, 0.6, 2, sep=";", bom=True)
                                                  + "7;3\n")  # a duplicate id
    first = _grade(root, out, fmnist_dir, "2099-01-01T00:00:00Z")
    by = {s.student: s for s in first.results.students}
    (ann,) = by["ann"].evidence.competition.records
    assert ann.status == "scored" and 0.88 < ann.public_score < 0.92 and 0.88 < ann.private_score < 0.92
    assert by["ann"].criteria[0].outcome == "pass"
    assert by["ann"].flags == () and by["ann"].evidence.errors == ()  # no model is asked for, so none is missed
    (bob,) = by["bob"].evidence.competition.records
    assert bob.status == "invalid" and "predictions.csv" in bob.reason and "7" in bob.reason and "more than once" in bob.reason and "lines 9, 10002" in bob.reason
    assert by["bob"].criteria[0].outcome == "fail" and "could be scored" in by["bob"].criteria[0].message
    assert by["cy"].criteria[0].outcome == "fail" and "No prediction file" in by["cy"].criteria[0].message
    assert [row.student for row in first.results.contest.public] == ["ann"]

    # the second run, the same day: bob fixes his file, ann adds two more (her daily limit is 2)
    (root / "bob" / "predictions.csv").write_text(_predictions(labels, 0.6, 2, sep=";", bom=True))
    (root / "ann" / "submission_v2.csv").write_text(_predictions(labels, 0.95, 3))
    (root / "ann" / "submission_v3.csv").write_text(_predictions(labels, 0.97, 4))
    (root / "ann" / "selected.txt").write_text("# my final choice\npredictions.csv\nnot_there.csv\n")
    second = _grade(root, out, fmnist_dir, "2099-01-01T00:00:00Z")
    by = {s.student: s for s in second.results.students}
    ann_records = by["ann"].evidence.competition.records
    assert [r.status for r in ann_records] == ["scored", "scored", "refused"]  # predictions.csv not counted twice
    assert "daily limit" in ann_records[-1].reason
    assert [r.selected for r in ann_records] == [True, False, False]  # her selection file chose predictions.csv
    assert by["ann"].evidence.competition.notes == ("selected.txt names not_there.csv, which is not a scored prediction file",)
    bob_records = by["bob"].evidence.competition.records
    assert [r.status for r in bob_records] == ["invalid", "scored"]
    assert by["bob"].criteria[0].outcome == "partial"
    assert [row.student for row in second.results.contest.public] == ["ann", "bob"]
    ledger = [json.loads(line) for line in (out / "competition-ledger.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in ledger].count("submission") == 5 and [e["kind"] for e in ledger].count("selection") == 1

    # pages: before the deadline, students see public scores only
    page = (out / "feedback" / "ann.html").read_text()
    assert "Public score" in page and "Private score" not in page
    shared = (out / "competition.html").read_text()
    assert "Public leaderboard" in shared and "Private leaderboard" not in shared and "bob" in shared
    assert "Private leaderboard" in (out / "index.html").read_text()

    # after the deadline: a new file is refused as late, and the private board is shown
    (root / "cy" / "predictions.csv").write_text(_predictions(labels, 0.99, 5))
    late = _grade(root, out, fmnist_dir, "2026-01-01T00:00:00Z")
    by = {s.student: s for s in late.results.students}
    (cy,) = by["cy"].evidence.competition.records
    assert cy.status == "refused" and cy.reason.startswith("late:")
    assert late.results.contest.private_visible and [r.student for r in late.results.contest.private][:1] == ["ann"]
    # the private board counts the submission she selected, not her best public one
    assert late.results.contest.private[0].score == ann_records[0].private_score
    assert "Private score" in (out / "feedback" / "ann.html").read_text()
    assert "Private leaderboard" in (out / "competition.html").read_text()

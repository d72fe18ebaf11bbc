"""End to end on real models and the real hidden test split: a class with good, broken and empty
submissions is graded, reported, cached and re-judged."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grader.cli import main
from grader.worker.evaluate import WorkerRequest
from grader.pipeline import grade
from grader.inputs.rubric import load_rubric, parse_rubric
from grader.settings import Settings
from tests._class import keras2_mlp, keras3_cnn, keras3_lambda, read_idx
from tests._runs import assert_resumes, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("class")
    for name in ("good", "k2", "broken", "empty", "lambda"):
        (root / name).mkdir()
    keras3_cnn(fmnist_dir, root / "good" / "cnn.keras")
    (root / "good" / "hw10.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    keras2_mlp(fmnist_dir, root / "k2" / "mlp.h5")
    (root / "broken" / "model.h5").write_bytes((root / "k2" / "mlp.h5").read_bytes()[:5000])
    (root / "broken" / "notes.txt").write_text("see model")
    keras3_lambda(root / "lambda" / "lambda.keras")
    return root


@pytest.fixture(scope="module")
def graded(klass: Path, fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("reports")
    settings = Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=500, project_root=ROOT)
    return grade(klass, load_rubric(ROOT / "rubrics" / "hw10.yaml"), settings), settings, out


def by_student(outcome):  # type: ignore[no-untyped-def]
    return {s.student: s for s in outcome.results.students}


def test_every_student_is_graded_whatever_their_files(graded) -> None:  # type: ignore[no-untyped-def]
    outcome, _, _ = graded
    students = by_student(outcome)
    assert sorted(students) == ["broken", "empty", "good", "k2", "lambda"]
    assert all(s.status == "gathered" for s in students.values())
    broken = students["broken"].evidence.models[0]
    assert broken.status == "error" and "model.h5" in (broken.error or "")
    assert "no model file" in " ".join(students["empty"].evidence.errors)
    lam = students["lambda"].evidence.models[0]
    if outcome.results.run.sandboxed:  # its Lambda runs inside bubblewrap
        assert lam.status == "evaluated" and "own code" in (lam.loader or "")
    else:
        assert lam.status == "needs_sandbox"


def test_measured_accuracy_equals_model_evaluate(graded, klass: Path, fmnist_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import keras

    outcome, _, _ = graded
    good = by_student(outcome)["good"].evidence.models[0]
    assert good.status == "evaluated" and good.preprocessing is not None
    assert good.preprocessing.scale == "unit" and good.preprocessing.geometry == "as-is"
    x = read_idx(fmnist_dir / "t10k-images-idx3-ubyte.gz")
    y = read_idx(fmnist_dir / "t10k-labels-idx1-ubyte.gz")
    model = keras.models.load_model(klass / "good" / "cnn.keras")
    model.compile(metrics=["accuracy"], loss="sparse_categorical_crossentropy")
    _, expected = model.evaluate(x[..., None] / 255.0, y, verbose=0)
    assert good.metrics is not None and good.metrics.n == 10000
    assert good.metrics.accuracy == pytest.approx(expected, abs=1e-4)
    assert good.metrics.accuracy > 0.75


def test_keras2_file_with_logits_and_raw_pixels(graded) -> None:  # type: ignore[no-untyped-def]
    outcome, _, _ = graded
    mlp = by_student(outcome)["k2"].evidence.models[0]
    assert mlp.status == "evaluated", mlp.error
    assert mlp.architecture is not None and (mlp.architecture.keras_version or "").startswith("2.")
    assert "tf_keras" in (mlp.loader or "")
    assert mlp.preprocessing is not None and mlp.preprocessing.scale == "raw"  # the model rescales itself
    assert "logits" in (mlp.output_note or "") and mlp.metrics is not None and mlp.metrics.accuracy > 0.7


def test_reports_are_written(graded) -> None:  # type: ignore[no-untyped-def]
    outcome, _, out = graded
    names = {p.name for p in outcome.written}
    assert {"index.html", "grades.csv", "results.json", "good.html", "empty.html"} <= names
    assert "cnn.keras" in (out / "feedback" / "good.html").read_text()


def test_regrade_with_new_threshold_uses_the_cache(graded, klass: Path) -> None:  # type: ignore[no-untyped-def]
    outcome, settings, _ = graded
    text = (ROOT / "rubrics" / "hw10.yaml").read_text().replace("threshold: 0.91", "threshold: 0.5").replace("partial_from: 0.85", "partial_from: 0.3")
    again = grade(klass, parse_rubric(text, "hw10-easy.yaml"), settings)
    assert again.gathered == 0 and again.cached == 5
    before = by_student(outcome)["good"].criteria
    after = by_student(again)["good"].criteria
    acc_before = next(c for c in before if c.id == "cnn-accuracy")
    acc_after = next(c for c in after if c.id == "cnn-accuracy")
    assert acc_after.outcome == "pass" and acc_after.points >= acc_before.points


def test_worker_request_cannot_carry_hidden_labels() -> None:
    fields = set(WorkerRequest.model_fields)
    assert not any("label" in f and "public" not in f for f in fields)


def test_cli_grades_one_student_and_prints_summary(klass: Path, fmnist_dir: Path, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main([str(klass / "good"), "--assignment", "hw10", "--hidden-tests", str(fmnist_dir), "--out", str(tmp_path), "-q"],
                stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    assert "good" in out.getvalue() and f"wrote {tmp_path / 'index.html'}" in out.getvalue()


def test_cli_usage_errors_exit_4_with_one_line(klass: Path, tmp_path: Path, fmnist_dir: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("assignment: x\ncriteria:\n  - id: a\n    points: 1\n    check: min_acuracy\n")
    cases = [
        (["--rubric", str(bad)], "did you mean 'min_accuracy'"),
        (["--assignment", "hw99"], "no rubric for assignment 'hw99'"),
        (["--assignment", "hw10", "--hidden-tests", str(tmp_path)], "t10k"),
        (["--assignment", "hw10", "--format", "pdf"], "unknown format 'pdf'"),
    ]
    for extra, expected in cases:
        err = io.StringIO()
        code = main([str(klass), *extra, "--out", str(tmp_path / "o"), "-q", "--no-download"], stdout=io.StringIO(), stderr=err)
        assert code == 4, (extra, err.getvalue())
        assert expected in err.getvalue() and err.getvalue().startswith("error: ")
        assert "Traceback" not in err.getvalue()


def test_cli_checks_lists_every_check() -> None:
    out = io.StringIO()
    assert main(["checks"], stdout=out) == 0
    assert "min_accuracy:" in out.getvalue() and "threshold" in out.getvalue()


def _workers_under(folder: Path) -> list[int]:
    """The grader's workers: a fresh worker gets a request path under `folder`; a sandbox's bwrap
    names its folders there; a zygote's Python names only its module (one grading runs at a time here)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "grader.sandbox.zygote" in cmdline or (str(folder) in cmdline and ("grader.worker.evaluate" in cmdline or "bwrap" in cmdline)):
                pids.append(int(proc.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find worker processes")
def test_ctrl_c_and_kill_9_lose_nothing_and_leave_no_worker(klass: Path, fmnist_dir: Path, tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    for name in ("s1", "s2", "s3", "s4"):
        (subs / name).mkdir(parents=True)
        shutil.copy(klass / "good" / "cnn.keras", subs / name / "cnn.keras")
    out, scratch = tmp_path / "out", tmp_path / "tmp"
    scratch.mkdir()
    cmd = [sys.executable, "-m", "grader.cli", str(subs), "--assignment", "hw10", "--hidden-tests", str(fmnist_dir),
           "--out", str(out), "-q", "--no-download"]
    env = {**os.environ, "TMPDIR": str(scratch)}  # the run's scratch (and its workers' requests) live here
    cached = lambda: len(list((out / ".evidence").glob("*.json"))) if (out / ".evidence").is_dir() else 0  # noqa: E731

    # Ctrl-C after the first submission: exit 130, a message, the running worker killed
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: cached() >= 1, 300, "the first cached evidence")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert _workers_under(scratch) == []
    first = cached()

    # kill -9 of the grader while a worker runs: the orphaned worker stops by itself
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: _workers_under(scratch) != [], 120, "a worker to start")
    proc.kill()
    proc.wait()
    wait_for(lambda: _workers_under(scratch) == [], 15, "the orphaned worker to stop")

    # the next run resumes: nothing gathered before is gathered again
    assert_resumes(cmd, out, first, 4, env=env)

"""Sinks for GitHub Classroom, the job summary, Gradescope, Canvas and Moodle, checked against what
the receiving systems read (docs/classroom.schema.json is written from the reporter's behaviour)."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import jsonschema
import pytest

from grader.judging.judge import judge
from grader.report import write_reports
from grader.report.autograders import classroom_output, classroom_result, gradescope_result, summary_markdown
from grader.records.results import Results, RunInfo
from grader.inputs.rubric import load_rubric
from tests._evidence import CNN, arch, evidence, model, vgg16

ROOT = Path(__file__).resolve().parents[1]
RUN = RunInfo(grader_version="test", started="2026-11-22T00:00:00+00:00", rubric_path="rubrics/hw10.yaml",
              dataset="fashion-mnist", hidden_size=10000, sandboxed=True, sandbox_note="sandboxed", seconds=42.4)
SCHEMA = json.loads((ROOT / "docs" / "classroom.schema.json").read_text())


def class_results(*students: str) -> Results:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    from grader.records.evidence import Claim, NotebookEvidence, NotebookRun

    notebook = NotebookEvidence(path="hw10.ipynb", run=NotebookRun(status="completed", cells_run=3),
                                claims=(Claim(metric="test_accuracy", value=0.93, text="Test accuracy: 0.93", cell=2),))
    pool = {
        "alice": evidence(model("cnn.keras", arch(*CNN), 0.93), model("vgg.h5", arch(*CNN, bases=(vgg16(trainable=3, frozen=10),)), 0.85),
                          files=("hw10.ipynb",), kaggle=2, student="alice").model_copy(update={"notebooks": (notebook,)}),
        "bob": evidence(model("cnn.keras", arch(*CNN), 0.89), kaggle=3, student="bob"),
        "eve|<b>": evidence(student="eve|<b>"),
    }
    return judge(rubric, [pool[s] for s in students], run=RUN)


@pytest.mark.parametrize("student", ["alice", "bob", "eve|<b>"])
def test_classroom_json_follows_the_reporter(student: str) -> None:
    r = class_results(student)
    s = r.students[0]
    data = classroom_result(r, s)
    jsonschema.validate(data, SCHEMA)
    assert data["max_score"] == r.max_points
    assert sum(t["score"] for t in data["tests"]) == pytest.approx(s.points)
    assert len(data["tests"]) == len(r.criteria)
    # the reporter decodes the step output from base64
    assert json.loads(base64.b64decode(classroom_output(r, s)).decode("utf-8")) == data


def test_classroom_status_and_partial_credit() -> None:
    r = class_results("alice", "bob")
    alice, bob = (classroom_result(r, s) for s in r.students)
    assert alice["status"] == "pass" and all(t["status"] == "pass" for t in alice["tests"])
    assert bob["status"] == "fail"
    partial = next(t for t, c in zip(bob["tests"], r.students[1].criteria, strict=True) if c.outcome == "partial")
    assert partial["status"] == "fail" and 0 < partial["score"]  # partial credit keeps its points


def test_classroom_sink_writes_one_file_for_one_submission_and_one_per_student_otherwise(tmp_path: Path) -> None:
    (one,) = write_reports(class_results("bob"), tmp_path / "one", ["classroom"])
    assert one.name == "classroom.json"
    jsonschema.validate(json.loads(one.read_text()), SCHEMA)
    many = write_reports(class_results("alice", "bob", "eve|<b>"), tmp_path / "many", ["classroom"])
    from grader.report.names import preferred_stem

    assert sorted(p.name for p in many) == ["alice.json", "bob.json", f"{preferred_stem('eve|<b>')}.json"]
    assert preferred_stem("eve|<b>").startswith("eve__b_--")  # readable, and hashed: not 'eve__b_' of another student
    assert all(p.parent.name == "classroom" for p in many)


def test_step_summary_is_a_markdown_table_that_escapes_student_strings() -> None:
    r = class_results("bob", "eve|<b>")
    text = summary_markdown(r, r.students[0])
    lines = text.splitlines()
    assert lines[0].startswith("### hw10: bob — ") and "| Criterion | Result | Points | What it means |" in lines
    rows = [line for line in lines if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(r.criteria)
    assert all(row.count(" | ") == 3 for row in rows)  # no cell broke the table
    eve = summary_markdown(r, r.students[1])
    assert "eve\\|&lt;b&gt;" in eve.splitlines()[0] and "<b>" not in eve


def test_gradescope_results_have_the_fields_gradescope_reads(tmp_path: Path) -> None:
    r = class_results("bob")
    data = gradescope_result(r, r.students[0])
    assert {"score", "execution_time", "output", "output_format", "visibility", "stdout_visibility", "tests"} <= data.keys()
    assert data["score"] == r.students[0].points and data["execution_time"] == 42
    for test, c in zip(data["tests"], r.students[0].criteria, strict=True):
        assert {"name", "score", "max_score", "status", "output", "output_format", "visibility"} <= test.keys()
        assert test["status"] in ("passed", "failed") and test["output_format"] in ("md", "html", "text")
        assert test["max_score"] == c.max_points and test["score"] == c.points
    assert sum(t["score"] for t in data["tests"]) == pytest.approx(data["score"])
    (path,) = write_reports(r, tmp_path, ["gradescope"])
    assert json.loads(path.read_text()) == data


def test_canvas_and_moodle_imports(tmp_path: Path) -> None:
    r = class_results("alice", "bob", "eve|<b>")
    write_reports(r, tmp_path, ["canvas", "moodle"])
    canvas = list(csv.DictReader(io.StringIO((tmp_path / "canvas.csv").read_text())))
    assert list(canvas[0]) == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "hw10"]
    assert [row["SIS Login ID"] for row in canvas] == ["alice", "bob", "eve|<b>"]
    assert [float(row["hw10"]) for row in canvas] == [s.points for s in r.students]
    moodle = list(csv.DictReader(io.StringIO((tmp_path / "moodle.csv").read_text())))
    assert list(moodle[0]) == ["Username", "hw10", "Feedback"]
    assert moodle[0]["Feedback"].endswith("All criteria met.") and "Not met:" in moodle[1]["Feedback"]


def test_gradebook_cells_resist_formulas(tmp_path: Path) -> None:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    r = judge(rubric, [evidence(student="=HYPERLINK(\"x\")")], run=RUN)
    write_reports(r, tmp_path, ["canvas", "moodle"])
    assert "'=HYPERLINK" in (tmp_path / "canvas.csv").read_text() and "'=HYPERLINK" in (tmp_path / "moodle.csv").read_text()


# ------------------------------------------------------------------------------------------------
# Encrypted hidden-test bundles


def test_bundle_end_to_end_with_a_generated_key(tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`grade bundle` encrypts the test split; grading with the key gives the same grades as the
    plain folder; without the key, or with a wrong one, the run stops with a clear error (exit 4)."""
    import shutil

    from grader.inputs.bundle import KEY_ENV, is_bundle
    from grader.cli import main
    from tests._class import keras3_cnn

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(fmnist_dir / name, hidden / name)
    monkeypatch.delenv(KEY_ENV, raising=False)
    out, err = io.StringIO(), io.StringIO()
    assert main(["bundle", str(hidden), "-o", str(tmp_path / "hidden.bundle")], stdout=out, stderr=err) == 0
    key = next(line.split("=", 1)[1] for line in out.getvalue().splitlines() if line.startswith(f"{KEY_ENV}="))
    bundle = tmp_path / "hidden.bundle"
    assert is_bundle(bundle) and b"t10k-labels" not in bundle.read_bytes()  # names and contents are encrypted

    sub = tmp_path / "class" / "alice"
    sub.mkdir(parents=True)
    keras3_cnn(fmnist_dir, sub / "cnn.keras")
    common = [str(sub.parent), "--assignment", "hw10", "-q", "--no-download", "--format", "json,classroom"]
    assert main([*common, "--hidden-tests", str(hidden), "--out", str(tmp_path / "plain")], stdout=io.StringIO()) == 0

    err = io.StringIO()
    assert main([*common, "--hidden-tests", str(bundle), "--out", str(tmp_path / "nokey")], stdout=io.StringIO(), stderr=err) == 4
    assert "no key was given" in err.getvalue() and KEY_ENV in err.getvalue()
    monkeypatch.setenv(KEY_ENV, new_wrong_key())
    err = io.StringIO()
    assert main([*common, "--hidden-tests", str(bundle), "--out", str(tmp_path / "wrong")], stdout=io.StringIO(), stderr=err) == 4
    assert "the key does not open this bundle" in err.getvalue()

    monkeypatch.setenv(KEY_ENV, key)
    assert main([*common, "--hidden-tests", str(bundle), "--out", str(tmp_path / "bundled")], stdout=io.StringIO()) == 0
    plain = json.loads((tmp_path / "plain" / "results.json").read_text())
    bundled = json.loads((tmp_path / "bundled" / "results.json").read_text())
    assert bundled["run"]["hidden_sha256"] == plain["run"]["hidden_sha256"]
    assert bundled["run"]["hidden_source"] == "encrypted bundle hidden.bundle"
    assert bundled["students"][0]["points"] == plain["students"][0]["points"]
    assert (tmp_path / "bundled" / "classroom.json").exists()


def new_wrong_key() -> str:
    from grader.inputs.bundle import new_key

    return new_key()


def test_bundle_refuses_a_tampered_file(tmp_path: Path) -> None:
    from grader.inputs.bundle import BundleError, make_bundle, new_key, open_bundle

    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "labels.txt").write_text("secret")
    key = new_key()
    data = bytearray(make_bundle(tmp_path / "h", key))
    data[-5] ^= 1
    (tmp_path / "b").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not open"):
        open_bundle(tmp_path / "b", key, tmp_path / "out")
    (tmp_path / "good").write_bytes(make_bundle(tmp_path / "h", key))
    opened = open_bundle(tmp_path / "good", key, tmp_path / "out2")
    assert (opened / "labels.txt").read_text() == "secret" and (opened.stat().st_mode & 0o777) == 0o700

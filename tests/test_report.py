"""Sinks: results round-trip through JSON, HTML escapes student strings, CSV resists formulas."""

from __future__ import annotations

import csv
from pathlib import Path

from grader.judge import judge
from grader.report import write_reports
from grader.report.html import page_name
from grader.results import Results, RunInfo
from grader.rubric import load_rubric
from tests._evidence import CNN, arch, evidence, model, vgg16

ROOT = Path(__file__).resolve().parents[1]
RUN = RunInfo(grader_version="test", started="2026-11-22T00:00:00+00:00", rubric_path="rubrics/hw10.yaml", dataset="fashion-mnist",
              hidden_size=10000)
EVIL = '<script>alert("x")</script>'


def results() -> Results:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    good = evidence(model("cnn.keras", arch(*CNN), 0.93), model("vgg.h5", arch(*CNN, bases=(vgg16(trainable=3, frozen=10),)), 0.85),
                    files=("hw10.ipynb",), kaggle=2, student="alice")
    evil = evidence(model(f"{EVIL}.h5", arch(*CNN), 0.5, error=EVIL), student=f"=cmd|{EVIL}")
    return judge(rubric, [good, evil], run=RUN)


def test_results_round_trip_through_json() -> None:
    r = results()
    assert Results.model_validate_json(r.model_dump_json()) == r


def test_all_sinks_write_and_html_escapes_student_strings(tmp_path: Path) -> None:
    r = results()
    paths = write_reports(r, tmp_path, ["html", "csv", "json"])
    names = {p.name for p in paths}
    assert {"index.html", "results.json", "grades.csv", "alice.html"} <= names
    for p in paths:
        if p.suffix == ".html":
            text = p.read_text()
            assert "<script>alert" not in text
            assert "https://" not in text.replace("https://www.w3.org", "")  # self-contained: no CDN
    index = (tmp_path / "index.html").read_text()
    assert "&lt;script&gt;alert" in index and "alice.html" in index
    alice = (tmp_path / "alice.html").read_text()
    assert "93.00%" in alice and "VGG16" in alice and "Confusion matrix" in alice


def test_student_page_names_cannot_escape_the_folder() -> None:
    assert page_name("../../etc/passwd") == "_.._etc_passwd.html"
    assert "/" not in page_name("a/b") and page_name("...") == "student.html"


def test_csv_has_one_row_per_student_and_neutralises_formulas(tmp_path: Path) -> None:
    r = results()
    write_reports(r, tmp_path, ["csv"])
    rows = list(csv.reader((tmp_path / "grades.csv").open()))
    assert rows[0][:5] == ["student", "total", "max", "status", "best_accuracy"]
    assert rows[0][5:] == [c.id for c in r.criteria]
    by_id = {row[0]: row for row in rows[1:]}
    alice = next(s for s in r.students if s.student == "alice")
    assert by_id["alice"][1] == f"{alice.points:g}"
    assert any(key.startswith("'=cmd") for key in by_id)  # a formula-looking id stays text


def test_documented_results_schema_is_current() -> None:
    import json

    documented = json.loads((ROOT / "docs" / "results.schema.json").read_text())
    assert documented == json.loads(json.dumps(Results.model_json_schema())), (
        "regenerate docs/results.schema.json: python -c \"import json; from grader.results import Results; "
        "print(json.dumps(Results.model_json_schema(), indent=1, sort_keys=True))\" > docs/results.schema.json"
    )

"""Sinks: results round-trip through JSON, HTML escapes student strings, CSV resists formulas."""

from __future__ import annotations

import csv
from pathlib import Path

from grader.judging.judge import judge
from grader.report import write_reports
from grader.report.html import page_name
from grader.records.results import Results, RunInfo
from grader.inputs.rubric import load_rubric
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
    names = {str(p.relative_to(tmp_path)) for p in paths}
    assert {"index.html", "results.json", "grades.csv", "students/alice.html", "feedback/alice.html"} <= names
    for p in paths:
        if p.suffix == ".html":
            text = p.read_text()
            assert "<script>alert" not in text
            assert "https://" not in text.replace("https://www.w3.org", "")  # self-contained: no CDN
            assert "Content-Security-Policy" in text
    index = (tmp_path / "index.html").read_text()
    assert "&lt;script&gt;alert" in index and "students/alice.html" in index
    alice = (tmp_path / "feedback" / "alice.html").read_text()
    assert "93.00%" in alice and "VGG16" in alice and "Confusion matrix" in alice and "<svg" in alice


def test_the_class_page_script_is_allowed_by_its_hash_and_nothing_else(tmp_path: Path) -> None:
    import base64
    import hashlib
    import re

    write_reports(results(), tmp_path, ["html"])
    index = (tmp_path / "index.html").read_text()
    (script,) = re.findall(r"<script>(.*?)</script>", index, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    import html

    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', index).group(1))
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    feedback = (tmp_path / "feedback" / "alice.html").read_text()
    assert "<script" not in feedback and "script-src &#39;none&#39;" in feedback


def test_translated_strings_replace_the_english_ones(tmp_path: Path) -> None:
    from grader.report import ReportOptions
    from grader.report.strings import load_strings

    (tmp_path / "uk.yaml").write_text("lang: uk\nmodels_heading: Моделі\nmeasured: 'Точність: {accuracy} на {n} зображеннях'\n")
    strings = load_strings(tmp_path / "uk.yaml")
    write_reports(results(), tmp_path / "out", ["html"], ReportOptions(strings=strings))
    page = (tmp_path / "out" / "feedback" / "alice.html").read_text()
    assert '<html lang="uk">' in page and "<h2 id=\"models\">Моделі</h2>" in page and "Точність: <strong>93.00%</strong>" in page
    assert "Per-class results" in page  # keys the translation leaves out stay English


def test_a_bad_translation_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    import pytest

    from grader.errors import GraderError
    from grader.report.strings import load_strings

    bad = tmp_path / "fr.yaml"
    bad.write_text("lang: fr\nmodel_heading: Modèles\nmeasured: 'Exactitude {acuracy}'\nfooter: [1, 2]\n")
    with pytest.raises(GraderError) as info:
        load_strings(bad)
    message = info.value.message
    assert f"{bad}:2: unknown key 'model_heading'; did you mean 'models_heading'?" in message
    assert f"{bad}:3: key 'measured': unknown placeholder(s) {{acuracy}}" in message and "{accuracy}" in message
    assert f"{bad}:4: key 'footer': must be text" in message


def test_item_analysis_counts_outcomes_and_groups_messages_by_pattern() -> None:
    from grader.report.views import item_analysis

    r = results()
    items = {i.id: i for i in item_analysis(r)}
    acc = items["cnn-accuracy"]
    assert acc.passed + acc.partial + acc.failed + acc.skipped == len(r.students)
    assert all("#" in text or "'…'" in text or text for text, _ in acc.common)
    from grader.report.views import _pattern

    assert _pattern("'a.h5' reaches 0.8812; needs 0.910") == _pattern("'b.keras' reaches 0.9011; needs 0.910")
    assert "VGG16" in _pattern("No model uses VGG16 as its base")


def test_layer_diagram_folds_a_base_into_its_blocks() -> None:
    from grader.report.diagram import boxes
    from grader.report.views import base_paths

    vgg = model("vgg.h5", arch(*CNN, bases=(vgg16(trainable=3, frozen=10),)), 0.85)
    out = boxes(vgg.architecture, base_paths(vgg))
    assert out[0].title == "input" and out[0].detail == "28×28×1"
    assert [b.title for b in out[1:]] == ["Conv2D", "MaxPooling2D", "Flatten", "Dense"]  # no base layer in this toy
    repeated = arch("InputLayer", "Dense", "Dense", "Dense")
    folded = boxes(repeated.model_copy(update={"layers": tuple(l.model_copy(update={"summary": "64 units"}) for l in repeated.layers)}), {})
    assert [(b.title, b.count) for b in folded[1:]] == [("Dense", 3)]


def test_student_page_names_cannot_escape_the_folder() -> None:
    assert page_name("../../etc/passwd").startswith("_.._etc_passwd--") and page_name("../../etc/passwd").endswith(".html")
    assert "/" not in page_name("a/b") and page_name("...").startswith("student--")
    assert page_name("alice") == "alice.html"  # a plain id stays readable


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
        "regenerate docs/results.schema.json: python -c \"import json; from grader.records.results import Results; "
        "print(json.dumps(Results.model_json_schema(), indent=1, sort_keys=True))\" > docs/results.schema.json"
    )


def test_the_teacher_s_page_shows_where_and_how_each_model_was_evaluated(tmp_path: Path) -> None:
    from grader.records.evidence import EvaluationRun

    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    gpu = EvaluationRun(device="gpu:1", device_name="NVIDIA H200", backend="jax", batch_size=64, batch_halvings=2,
                        seconds=3.214, peak_memory_bytes=5 * 1024**3)
    cpu = EvaluationRun(device="cpu", backend="tensorflow", batch_size=256, seconds=41.0, peak_memory_bytes=1536 * 1024**2)
    a = model("vgg.keras", arch(*CNN), 0.9).model_copy(update={"run": gpu})
    b = model("cnn.keras", arch(*CNN), 0.8).model_copy(update={"run": cpu})
    write_reports(judge(rubric, [evidence(a, b, student="alice")], run=RUN), tmp_path, ["html", "json"])
    teacher = (tmp_path / "students" / "alice.html").read_text()
    assert ("hidden set on gpu:1 (NVIDIA H200) with jax, batches of 64: 3.21 s · batch halved 2× after the device ran "
            "out of memory · peak GPU memory 5120 MB") in teacher
    assert "hidden set on cpu with tensorflow, batches of 256: 41.0 s · peak memory of the evaluating process 1536 MB" in teacher
    assert "hidden set on" not in (tmp_path / "feedback" / "alice.html").read_text()  # the student's page: not theirs to see
    saved = Results.model_validate_json((tmp_path / "results.json").read_text())
    assert saved.students[0].evidence.models[0].run == gpu

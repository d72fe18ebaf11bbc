"""Nothing a student hands in can stop the class's reports or take another student's file (issue 15,
findings 8, 9, 10, 14 and 17): hostile numbers in a saved fit() log, names that look alike, a full
disk under --out, and CSV cells that a spreadsheet would run as formulas."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import subprocess
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from grader.cli import main
from grader.records.evidence import History, NotebookEvidence
from grader.judging.judge import judge
from grader.pipeline import grade
from grader.report import ReportOptions, sink_names, write_reports
from grader.report.names import file_stems, preferred_stem
from grader.records.results import Results, RunInfo
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
from tests._evidence import CNN, arch, evidence, model

ROOT = Path(__file__).resolve().parents[1]
RUN = RunInfo(grader_version="test", started="2026-11-22T00:00:00+00:00", rubric_path="rubrics/hw10.yaml", dataset="fashion-mnist",
              hidden_size=10000)

# A saved fit() log that once stopped every report of the class (exit 3, on every re-run: cached).
HOSTILE_LOG = ["Epoch 1/4\n", "10/10 - 1s - loss: 1e308 - accuracy: 0.5 - val_loss: 1e308\n",
               "Epoch 2/4\n", "10/10 - 1s - loss: -1e308 - accuracy: nan - val_loss: -1e308\n",
               "Epoch 3/4\n", "10/10 - 1s - loss: nan - accuracy: inf - val_loss: 1e9999\n",
               "Epoch 4/4\n", "10/10 - 1s - loss: -inf - accuracy: -1e300 - val_loss: 0.5\n"]
HONEST_LOG = ["Epoch 1/2\n", "10/10 - 1s - loss: 0.9 - accuracy: 0.6\n", "Epoch 2/2\n", "10/10 - 1s - loss: 0.5 - accuracy: 0.8\n"]


def _notebook(folder: Path, log: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cell = new_code_cell("history = model.fit(x_train, y_train, epochs=4)",
                         outputs=[new_output("stream", name="stdout", text="".join(log))])
    nbformat.write(new_notebook(cells=[cell]), folder / "hw10.ipynb")


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:  # newline="": a CR inside a quoted cell stays a CR
        return list(csv.reader(fh))


# ------------------------------------------------------------------------------------------------
# 9. one name, one page


def test_file_stems_are_one_to_one_also_on_a_case_insensitive_disk() -> None:
    zoe_short = preferred_stem("Zoë")
    names = ["Zoë", "Zo_", "ZO_", "zoë", "Zoe\u0308", "lee chen", "lee_chen", "Lee_Chen", "lee-chen", "alice", "Alice", "ALICE",
             zoe_short, zoe_short.upper(), "../../etc/passwd", "..", "", " ", "a--b", "a-b", "x" * 300, "x" * 300 + "y",
             "con", "名前", "名字", "тест", "a/b", "a\\b", "a:b", "a.", "a..", ".hidden"]
    stems = file_stems(names)
    assert set(stems) == set(names)
    lowered = [s.lower() for s in stems.values()]
    assert len(set(lowered)) == len(names), "two students would share a file"
    for name, stem in stems.items():
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", stem), (name, stem)  # stays in the folder, safe in a URL
        assert len(stem) <= 130
    assert stems["a-b"] == "a-b" and stems["con"] == "con"  # a plain id that meets no other is its own stem
    assert stems["alice"] != "alice" and stems["lee_chen"] != "lee_chen"  # they meet Alice and Lee_Chen
    assert stems["Zoë"].startswith("Zo_--")  # readable, and never the same file as Zo_
    assert file_stems(["Zoë", "Zo_"]) == {"Zoë": preferred_stem("Zoë"), "Zo_": "Zo_"}


def test_file_stems_stay_one_to_one_when_short_hashes_collide() -> None:
    # 27 000 ids that all slug to '___': the 6-digit hashes must collide (about 20 pairs expected)
    alphabet = [chr(0x3B1 + i) for i in range(30)]  # Greek letters: all unsafe, all different
    names = [a + b + c for a in alphabet for b in alphabet for c in alphabet]
    stems = file_stems(names)
    assert len({s.lower() for s in stems.values()}) == len(names)
    longs = [n for n, s in stems.items() if s != preferred_stem(n)]
    assert longs, "no short-hash collision in 27 000 names: the test no longer tests the fallback"
    assert all(len(stems[n]) == len("___--") + 64 for n in longs)


def _class(*names: str) -> Results:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    return judge(rubric, [evidence(model(f"{n}.keras", arch(*CNN), 0.5 + 0.05 * i), student=n) for i, n in enumerate(names)],
                 run=RUN)


def test_students_whose_names_look_alike_get_their_own_pages_and_links(tmp_path: Path) -> None:
    names = ("Zoë", "Zo_", "lee chen", "lee_chen", "alice", "Alice")
    r = _class(*names)
    write_reports(r, tmp_path, ["html", "classroom", "gradescope"], ReportOptions(jobs=1))
    for folder in ("feedback", "students", "classroom", "gradescope"):
        files = sorted((tmp_path / folder).iterdir())
        assert len(files) == len(names) and len({f.name.lower() for f in files}) == len(names), folder
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'<a href="students/([^"]+)">([^<]+)</a>', index)
    import html as _html

    assert sorted(_html.unescape(text) for _, text in links) == sorted(names)
    for href, text in links:
        student = _html.unescape(text)
        page = (tmp_path / "students" / _html.unescape(href)).read_text(encoding="utf-8")
        assert f"<h1>{_html.escape(student)} · " in page  # the link opens this student's page, no one else's
        mine = next(s for s in r.students if s.student == student)
        assert mine.evidence.models[0].path in page
        feedback = page.split('<a href="', 2)[2].split('"', 1)[0]  # "the student's own page" link
        assert f"<h1>{_html.escape(student)} · " in (tmp_path / "students" / _html.unescape(feedback)).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# 8. one saved output cannot stop the class (hand-made evidence; the end-to-end run is below)


def _with_history(student: str, metrics: dict[str, tuple[float, ...]]):  # type: ignore[no-untyped-def]
    epochs = len(next(iter(metrics.values())))
    nb = NotebookEvidence(path="hw10.ipynb", histories=(History(cell=0, epochs=epochs, metrics=metrics),))
    return evidence(student=student).model_copy(update={"notebooks": (nb,)})


def test_learning_curves_draw_absurd_and_non_finite_numbers() -> None:
    from grader.report.charts import PLOT_LIMIT, learning_curves, plottable

    inf, nan = float("inf"), float("nan")
    assert plottable([1e308, -1e308, 0.5, -0.25]) == [PLOT_LIMIT, -PLOT_LIMIT, 0.5, -0.25]
    assert all(v != v for v in plottable([nan, inf, -inf]))  # gaps
    svg = learning_curves({"loss": [1e308, -1e308, nan, -inf], "accuracy": [0.5, nan, inf, -1e300],
                           "val_loss": [inf, inf, inf, inf]}, label="curves", xlabel="epoch")
    assert svg.startswith("<svg") and "<title>curves</title>" in svg


def test_a_chart_that_cannot_be_drawn_is_a_note_and_every_other_page_is_written(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.report import charts

    real = charts._CHARTS["learning_curves"]

    def fragile(metrics, **kwargs):  # type: ignore[no-untyped-def]
        if any(v == 7.0 for v in metrics.get("loss", ())):
            raise ValueError("arange: cannot compute length")  # what matplotlib raised for 1e308 / -1e308
        return real(metrics, **kwargs)

    monkeypatch.setitem(charts._CHARTS, "learning_curves", fragile)
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    r = judge(rubric, [_with_history("ann", {"loss": (0.9, 0.5)}), _with_history("mallory", {"loss": (7.0, 7.0)})], run=RUN)
    paths = write_reports(r, tmp_path, ["html", "csv", "json"], ReportOptions(jobs=1))
    names = {str(p.relative_to(tmp_path)) for p in paths}
    assert {"index.html", "grades.csv", "results.json", "feedback/ann.html", "feedback/mallory.html",
            "students/ann.html", "students/mallory.html"} <= names
    mallory = (tmp_path / "feedback" / "mallory.html").read_text(encoding="utf-8")
    assert "chart-failed" in mallory and "This chart could not be drawn" in mallory
    assert "Learning curves" in mallory and "points" in mallory  # the rest of the page stands
    ann = (tmp_path / "feedback" / "ann.html").read_text(encoding="utf-8")
    assert "chart-failed" not in ann and "Learning curves of the training in hw10.ipynb" in ann
    assert not list((tmp_path / ".charts").glob("*.tmp"))


def test_a_chart_that_fails_in_a_drawing_process_fails_alone(tmp_path: Path) -> None:
    from grader.report.charts import ChartCache, chart

    good = [chart("learning_curves", {"loss": [1.0 / (i + 1), 0.5]}, label=f"c{i}", xlabel="epoch") for i in range(8)]
    bad = chart("histogram", None, 10.0, label="bad", xlabel="x", ylabel="y")  # TypeError inside the drawing process
    cache = ChartCache(tmp_path / ".charts")
    cache.draw_all([*good, bad], jobs=2)
    assert cache.failed == {bad.key} and cache.svg(bad) is None
    assert all((cache.svg(c) or "").startswith("<svg") for c in good)
    assert sorted(p.name for p in (tmp_path / ".charts").iterdir()) == sorted(f"{c.key}.svg" for c in good)


def test_a_page_that_cannot_be_rendered_becomes_a_plain_page_with_the_grade(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from grader.report import html as html_sink

    real = html_sink.student_view

    def fragile(results, s, t):  # type: ignore[no-untyped-def]
        if s.student == "mallory":
            raise OverflowError("cannot convert float infinity to integer")
        return real(results, s, t)

    monkeypatch.setattr(html_sink, "student_view", fragile)
    r = _class("ann", "mallory")
    write_reports(r, tmp_path, ["html", "csv", "json"], ReportOptions(jobs=1))
    mallory = next(s for s in r.students if s.student == "mallory")
    feedback = (tmp_path / "feedback" / "mallory.html").read_text(encoding="utf-8")
    assert "part-failed" in feedback and f"{mallory.points:g} / {mallory.max_points:g} points" in feedback
    assert all(c.title in feedback for c in mallory.criteria)
    assert "OverflowError" not in feedback  # the reason is for the teacher's page only
    assert "OverflowError" in (tmp_path / "students" / "mallory.html").read_text(encoding="utf-8")
    assert "part-failed" not in (tmp_path / "feedback" / "ann.html").read_text(encoding="utf-8")
    assert [row[0] for row in _rows(tmp_path / "grades.csv")[1:]] == ["ann", "mallory"]


def test_a_sink_that_fails_does_not_keep_the_others_from_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grader import report

    def broken(results, out, options=None):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in one sink")

    monkeypatch.setitem(report._SINKS, "html", broken)
    with pytest.raises(RuntimeError, match="a bug in one sink"):
        write_reports(_class("ann"), tmp_path, ["html", "csv", "json"])
    assert (tmp_path / "grades.csv").is_file() and (tmp_path / "results.json").is_file()


# ------------------------------------------------------------------------------------------------
# 8 and 10 end to end: a class graded twice (the second time from the evidence cache)


@pytest.fixture(scope="module")
def hostile_class(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("class")
    _notebook(root / "mallory", HOSTILE_LOG)
    _notebook(root / "ann", HONEST_LOG)
    for name in ("lee chen", "lee_chen", "Zoë", "Zo_"):  # the same bytes as ann's (nbformat gives each cell a random id)
        (root / name).mkdir()
        (root / name / "hw10.ipynb").write_bytes((root / "ann" / "hw10.ipynb").read_bytes())
    return root


def _settings(out: Path, fmnist_dir: Path) -> Settings:
    return Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=200, project_root=ROOT,
                    formats=("html", "csv", "json", "canvas", "moodle"))


@pytest.fixture(scope="module")
def graded_twice(hostile_class: Path, fmnist_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("reports")
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    first = grade(hostile_class, rubric, _settings(out, fmnist_dir))
    csv_first = (out / "grades.csv").read_text(encoding="utf-8")
    second = grade(hostile_class, rubric, _settings(out, fmnist_dir))
    return first, second, csv_first, out


STUDENTS = ["Zo_", "Zoë", "ann", "lee chen", "lee_chen", "mallory"]


def test_a_hostile_fit_log_does_not_stop_the_class(graded_twice) -> None:  # type: ignore[no-untyped-def]
    first, second, _, out = graded_twice
    for outcome in (first, second):
        assert sorted(s.student for s in outcome.results.students) == STUDENTS
    for name in ("index.html", "grades.csv", "results.json", "canvas.csv", "moodle.csv"):
        assert (out / name).is_file(), name
    assert len(list((out / "feedback").glob("*.html"))) == len(STUDENTS) == len(list((out / "students").glob("*.html")))
    mallory = next(s for s in second.results.students if s.student == "mallory")
    history = (mallory.evidence.notebooks[0].histories or mallory.evidence.notebooks[0].run.histories)[0]
    assert 1e308 in history.metrics["loss"]  # the evidence keeps what the notebook printed; only the chart clips it
    page = (out / "feedback" / f"{file_stems(STUDENTS)['mallory']}.html").read_text(encoding="utf-8")
    assert "Learning curves of the training in hw10.ipynb" in page and "<svg" in page
    assert Results.model_validate_json((out / "results.json").read_bytes()).students[-1].student == "mallory"


def test_honest_grades_are_those_of_the_same_students_graded_alone(graded_twice, hostile_class: Path, fmnist_dir: Path,
                                                                   tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first, _, _, _ = graded_twice
    alone = grade(hostile_class / "ann", load_rubric(ROOT / "rubrics" / "hw10.yaml"), _settings(tmp_path, fmnist_dir))
    (ann,) = alone.results.students
    in_class = next(s for s in first.results.students if s.student == "ann")
    assert [(c.id, c.outcome, c.points) for c in in_class.criteria] == [(c.id, c.outcome, c.points) for c in ann.criteria]


def test_students_with_the_same_files_and_alike_names_keep_their_own_cache_entries(graded_twice) -> None:  # type: ignore[no-untyped-def]
    first, second, csv_first, out = graded_twice
    assert first.gathered == len(STUDENTS) and second.cached == len(STUDENTS) and second.gathered == 0
    for outcome in (first, second):
        assert sorted(s.student for s in outcome.results.students) == STUDENTS
        assert all(s.evidence.student == s.student for s in outcome.results.students)  # each with their own evidence
    rows = _rows(out / "grades.csv")
    assert sorted(row[0] for row in rows[1:]) == STUDENTS  # everyone once, no one twice
    assert (out / "grades.csv").read_text(encoding="utf-8") == csv_first
    assert len(list((out / ".evidence").glob("*.json"))) == len(STUDENTS)


# ------------------------------------------------------------------------------------------------
# 14. a full disk under --out is the machine's fault: exit 1, one line, no temporary file


@contextlib.contextmanager
def _tiny_disk(folder: Path, free_kb: int) -> Iterator[Path]:
    """A 256 KiB tmpfs at `folder`, filled but for about `free_kb` KiB; skipped (with the reason) where
    this process may not mount one."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {done.stderr.strip() or done.returncode}")
    try:
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as fh:  # no room left: it is full, as wanted
            for _ in range(256 - free_kb):
                fh.write(b"\0" * 1024)
                fh.flush()
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _assert_fault(code: int, err: str, out: Path, leftovers: list[Path]) -> None:
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: no space left on the disk of ") and str(out) in lines[0], err
    assert lines[1].startswith("hint: free space on ") and "--out" in lines[1], err
    assert len(lines) == 2 and "Traceback" not in err and "internal error" not in err
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.suffix]


@pytest.mark.parametrize("free_kb", [0, 64], ids=["full-before-the-run", "full-while-writing"])
def test_a_full_out_folder_is_a_grader_fault_and_leaves_no_temp_file(free_kb: int, hostile_class: Path, fmnist_dir: Path,
                                                                      tmp_path: Path) -> None:
    with _tiny_disk(tmp_path / "disk", free_kb=free_kb) as out:
        err = io.StringIO()
        code = main([str(hostile_class), "--assignment", "hw10", "--hidden-tests", str(fmnist_dir), "--out", str(out),
                     "--only", "ann", "mallory", "-q", "--no-download"], stdout=io.StringIO(), stderr=err)
        _assert_fault(code, err.getvalue(), out, _temporary_files(out))


def test_re_rendering_into_a_full_folder_is_a_grader_fault_too(graded_twice, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, _, reports = graded_twice
    with _tiny_disk(tmp_path / "disk", free_kb=8) as out:
        err = io.StringIO()
        code = main(["report", str(reports / "results.json"), "--format", "html,csv,json", "--out", str(out)],
                    stdout=io.StringIO(), stderr=err)
        _assert_fault(code, err.getvalue(), out, _temporary_files(out))


def test_a_bundle_written_to_a_full_disk_is_a_grader_fault_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "t10k-labels-idx1-ubyte").write_bytes(os.urandom(400 * 1024))  # larger than the disk
    monkeypatch.delenv("GRADER_HIDDEN_KEY", raising=False)
    with _tiny_disk(tmp_path / "disk", free_kb=64) as out:
        err = io.StringIO()
        code = main(["bundle", str(hidden), "-o", str(out / "hidden.bundle")], stdout=io.StringIO(), stderr=err)
        _assert_fault(code, err.getvalue(), out, _temporary_files(out))
        assert not (out / "hidden.bundle").exists()


# ------------------------------------------------------------------------------------------------
# 17. every CSV cell that a spreadsheet could run is neutralised, in every CSV sink

FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-1+1", "@SUM(A1:A2)", "\t=1+1", "\r=1+1", "\n=1+1", "\tplain", "\nplain",
            " =cmd", "  +1", "\u00a0-1+1", "\u3000@SUM(A1)", "\u200b=1+1", "\ufeff=1+1", "＝cmd", "＋1", "－1+1", "＠SUM(A1)",
            " ＝cmd", "\uFE66cmd", "\r\n=cmd"]
CSV_SINKS = ["csv", "canvas", "moodle"]


def _dangerous(cell: str) -> bool:
    """A cell a spreadsheet may run as a formula: the spec of issue 15, written out independently."""
    if re.fullmatch(r"-?\d+(\.\d+)?", cell):
        return False  # a number is a number
    if cell[:1] in ("\t", "\r", "\n"):
        return True
    for ch in cell:
        if ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc"):
            continue
        return unicodedata.normalize("NFKC", ch)[:1] in "=+-@"
    return False


def test_every_csv_sink_is_in_the_neutralisation_tests(tmp_path: Path) -> None:
    r = _class("ann")
    writes_csv = sorted(name for name in sink_names() if any(p.suffix == ".csv" for p in write_reports(r, tmp_path / name, [name])))
    assert writes_csv == sorted(CSV_SINKS)


@pytest.mark.parametrize("sink", CSV_SINKS)
@pytest.mark.parametrize("name", FORMULAS, ids=[ascii(f) for f in FORMULAS])
def test_csv_sinks_neutralise_every_formula_form(sink: str, name: str, tmp_path: Path) -> None:
    assert _dangerous(name)
    r = _class("ann", name)
    (path,) = [p for p in write_reports(r, tmp_path, [sink]) if p.suffix == ".csv"]
    rows = _rows(path)
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if _dangerous(c)]
    assert "'" + name in cells  # the id is kept, as text
    assert "ann" in cells and len(rows) == 3


def test_numbers_stay_numbers_and_plain_text_stays_as_it_is() -> None:
    from grader.report.files import csv_cell

    assert [csv_cell(v) for v in (-1, -2.5, "-1", "-0.25", "3", "1e-3", "ann", "o'neil", "a=b", "", None)] == \
        ["-1", "-2.5", "-1", "-0.25", "3", "1e-3", "ann", "o'neil", "a=b", "", ""]
    assert csv_cell("-1+1") == "'-1+1" and csv_cell(" =cmd") == "' =cmd" and csv_cell("＝cmd") == "'＝cmd"

"""Executing submitted notebooks: real notebooks, a real kernel, through the sandbox, in a real
grading run. One class is graded once (module fixture); each test reads what it needs from it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.inputs.datasets import get_dataset, load_split, resolve_split, write_keras_cache
from grader.worker.evaluate import Limits
from grader.sandbox.notebook_sandbox import NotebookContext, execute_notebook
from grader.worker.notebook_run import neutralise
from grader.pipeline import grade
from grader.inputs.rubric import NotebookPolicy, parse_rubric
from grader.sandbox.isolation import detect_isolation
from tests._class import read_idx

ROOT = Path(__file__).resolve().parents[1]

RUBRIC = """
assignment: nbtest
title: "Notebooks that run"
dataset: fashion-mnist
notebooks:
  execute: true
  cell_timeout: 25
  timeout: 120
  max_processes: 24
criteria:
  - id: runs
    title: "The notebook runs"
    points: 2
    check: notebook_executes
  - id: acc
    title: "The model the notebook saves reaches 50%"
    points: 2
    check: min_accuracy
    params: {threshold: 0.5, select: {source: notebook}}
  - id: claim
    title: "What it prints matches what the grader measures"
    points: 1
    check: claims_match_measured
    params: {origin: executed, tolerance: 0.2, required: false}
"""

TRAINS = [
    new_markdown_cell("# hw9 — trained in the grader"),
    new_code_cell("!pip install -q tensorflow\n%tensorflow_version 2.x\nfrom google.colab import drive\ndrive.mount('/content/drive')"),
    new_code_cell("import os, hashlib\nimport numpy as np\nimport keras\n"
                  "(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()\n"
                  "print('shapes', x_train.shape, x_test.shape)\n"
                  "print('test-hash', hashlib.sha256(x_test.tobytes()).hexdigest())\n"
                  "print('graded', os.environ.get('GRADER_EXECUTING'))"),
    new_code_cell("N = 3000 if os.environ.get('GRADER_EXECUTING') else None\n"
                  "keras.utils.set_random_seed(0)\n"
                  "model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(64, activation='relu'),\n"
                  "                          keras.layers.Dense(10, activation='softmax')])\n"
                  "model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
                  "model.fit(x_train[:N] / 255.0, y_train[:N], epochs=2, batch_size=64, verbose=2)\n"
                  "loss, acc = model.evaluate(x_test / 255.0, y_test, verbose=0)\n"
                  "print(f'Test accuracy: {acc:.4f}')"),
    new_code_cell("model.save('/content/drive/MyDrive/mlp.keras')"),
]
RAISES = [
    new_markdown_cell("# Mine <script>alert('x')</script>"),
    new_code_cell("print('first cell ran')"),
    new_code_cell("data = {'a': 1}\nvalue = data['missing']"),
    new_code_cell("print('never reached')"),
]
HANGS = [
    new_code_cell("print('before the hang', flush=True)"),
    new_code_cell("import time\nwhile True:\n    time.sleep(1)"),
    new_code_cell("print('never reached')"),
]
FORKS = [
    new_code_cell("import subprocess\nprocs = [subprocess.Popen(['sleep', '60']) for _ in range(60)]\nprint('started', len(procs))"),
]


def _write(folder: Path, name: str, cells: list) -> None:  # type: ignore[type-arg]
    folder.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nbformat.write(nb, folder / name)


@pytest.fixture(scope="module")
def sandboxed() -> None:
    if detect_isolation().kind != "bwrap":
        if os.environ.get("GRADER_REQUIRE_BWRAP"):
            pytest.fail("bubblewrap is required here (GRADER_REQUIRE_BWRAP) but does not work")
        pytest.skip("bubblewrap is not usable here: notebooks are only executed in the sandbox")


@pytest.fixture(scope="module")
def graded(sandboxed: None, tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("nbclass")
    _write(root / "trains", "hw.ipynb", TRAINS)
    _write(root / "raises", "hw.ipynb", RAISES)
    _write(root / "hangs", "hw.ipynb", HANGS)
    _write(root / "forks", "hw.ipynb", FORKS)
    (root / "invalid").mkdir()
    (root / "invalid" / "hw.ipynb").write_text('{"cells": [ {"cell_type": "code", "source": "print(1)"', encoding="utf-8")
    out = tmp_path_factory.mktemp("nbreports")
    from grader.settings import Settings

    settings = Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=200, project_root=ROOT, jobs=2)
    outcome = grade(root, parse_rubric(RUBRIC, "rubrics/nbtest.yaml"), settings)
    return {s.student: s for s in outcome.results.students}, out


def _nb(student):  # type: ignore[no-untyped-def]
    (nb,) = student.evidence.notebooks
    return nb


def test_a_notebook_that_trains_and_saves_is_run_and_its_model_evaluated(graded, fmnist_dir: Path) -> None:  # type: ignore[no-untyped-def]
    students, _ = graded
    s = students["trains"]
    run = _nb(s).run
    assert run.status == "completed", run.message + run.log_tail
    assert run.cells_run == 4 and run.failed_cell is None
    outputs = "\n".join(c.outputs for c in run.cells)
    # fashion_mnist.load_data() worked offline, with the shapes students expect
    assert "shapes (60000, 28, 28) (10000, 28, 28)" in outputs
    assert "graded 1" in outputs
    # ... and its "test" split is a stand-in from the PUBLIC train split, not the hidden test images
    hidden = read_idx(fmnist_dir / "t10k-images-idx3-ubyte.gz")
    assert f"test-hash {hashlib.sha256(hidden.tobytes()).hexdigest()}" not in outputs
    # the model it saved to Drive was picked up and evaluated like a submitted one
    assert run.artifacts == ("drive/MyDrive/mlp.keras",)
    (model,) = s.evidence.models
    assert model.produced_by == "hw.ipynb" and model.path == "hw.ipynb→drive/MyDrive/mlp.keras"
    assert model.status == "evaluated" and model.metrics.accuracy > 0.6
    results = {c.id: c for c in s.criteria}
    assert results["runs"].outcome == "pass" and results["acc"].outcome == "pass"
    # the accuracy it printed was read as a claim of the grader's run
    claims = [c for c in run.claims if c.metric == "test_accuracy"]
    assert claims and claims[-1].origin == "executed" and 0.5 < claims[-1].value <= 1
    assert results["claim"].outcome in ("pass", "fail") and "claims" in results["claim"].message
    assert run.peak_memory_mb and run.peak_memory_mb > 50


def test_colab_only_lines_are_neutralised_and_listed(graded) -> None:  # type: ignore[no-untyped-def]
    students, _ = graded
    run = _nb(students["trains"]).run
    text = "\n".join(run.neutralised)
    assert "`!pip install -q tensorflow`" in text and "`%tensorflow_version 2.x`" in text and "google.colab" in text
    assert "drive.mount('/content/drive'): an empty folder" in run.cells[0].outputs


def test_a_cell_that_raises_stops_the_run_and_keeps_what_ran(graded) -> None:  # type: ignore[no-untyped-def]
    students, out = graded
    s = students["raises"]
    run = _nb(s).run
    assert run.status == "error" and run.failed_cell == 2
    assert [c.index for c in run.cells] == [1, 2]
    assert run.cells[0].outputs.strip() == "first cell ran"
    assert run.cells[1].status == "error" and run.cells[1].error.startswith("KeyError: 'missing'")
    result = {c.id: c for c in s.criteria}["runs"]
    assert result.outcome == "fail" and "cell 2 raised an error" in result.message and "KeyError" in result.message
    page = (out / "feedback" / "raises.html").read_text()
    assert 'class="cell failed"' in page and "the run stopped here" in page
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page  # notebook text is escaped


def test_a_hanging_cell_times_out_with_the_cells_before_it_kept(graded) -> None:  # type: ignore[no-untyped-def]
    students, _ = graded
    run = _nb(students["hangs"]).run
    assert run.status == "timeout" and run.failed_cell == 1
    assert run.cells[0].status == "ok" and "before the hang" in run.cells[0].outputs
    assert run.cells[1].status == "timeout"
    assert "did not finish within 25 s" in run.message


def test_too_many_processes_stop_the_notebook(graded) -> None:  # type: ignore[no-untyped-def]
    students, _ = graded
    run = _nb(students["forks"]).run
    assert run.status == "killed" and "more than 24 processes" in run.message


def test_invalid_json_is_a_clear_error_and_the_class_goes_on(graded) -> None:  # type: ignore[no-untyped-def]
    students, _ = graded
    s = students["invalid"]
    nb = _nb(s)
    assert nb.error and "not a readable notebook" in nb.error
    assert nb.run is not None and nb.run.status == "error" and "not a readable notebook" in nb.run.message
    assert {c.id: c for c in s.criteria}["runs"].outcome == "fail"
    assert sorted(students) == ["forks", "hangs", "invalid", "raises", "trains"]


def test_without_the_sandbox_a_notebook_is_not_run(tmp_path: Path) -> None:
    _write(tmp_path / "sub", "hw.ipynb", [new_code_cell("open('/tmp/ran', 'w')")])
    ctx = NotebookContext(policy=NotebookPolicy(execute=True), isolation="none", keras_cache=None, limits=Limits())
    run, artifacts = execute_notebook(tmp_path / "sub" / "hw.ipynb", "hw.ipynb", tmp_path / "sub", tmp_path / "scratch", ctx)
    assert run.status == "not_run" and "no sandbox" in run.message and artifacts == []
    assert not (tmp_path / "scratch").exists()


def test_neutralise_keeps_line_numbers_and_says_what_it_did() -> None:
    source = "import os\n!pip install x\n  %pip install y\nfiles = !ls\n%matplotlib inline\nprint(1)"
    out, notes = neutralise(source, 3)
    assert out.split("\n") == ["import os", "pass", "  pass", "pass", "%matplotlib inline", "print(1)"]
    assert [n.split(":")[0] for n in notes] == ["cell 3 line 2", "cell 3 line 3", "cell 3 line 4"]
    cell, notes = neutralise("%%bash\napt-get install foo\necho hi", 0)
    assert cell == "pass\n\n" and "cell not run" in notes[0]


def test_the_keras_cache_holds_public_data_only(tmp_path: Path, fmnist_dir: Path) -> None:
    spec = get_dataset("fashion-mnist")
    public = resolve_split(spec, "train", explicit_dir=fmnist_dir, env={}, download=False)
    folder = write_keras_cache(spec, public, tmp_path) / "fashion-mnist"
    train_x = read_idx(folder / "train-images-idx3-ubyte.gz")
    test_x = read_idx(folder / "t10k-images-idx3-ubyte.gz")
    test_y = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    x, y = load_split(public)
    assert train_x.shape == (60000, 28, 28) and np.array_equal(train_x, x)
    assert test_x.shape == (10000, 28, 28) and test_y.shape == (10000,)
    hidden = read_idx(fmnist_dir / "t10k-images-idx3-ubyte.gz")
    assert not np.array_equal(test_x, hidden)
    rows = {row.tobytes() for row in x.reshape(len(x), -1)}
    assert all(img.tobytes() in rows for img in test_x[:200])  # the stand-in is drawn from the train split
    # and the same run after run
    again = write_keras_cache(spec, public, tmp_path / "again") / "fashion-mnist"
    assert np.array_equal(read_idx(again / "t10k-images-idx3-ubyte.gz"), test_x)
    shutil.rmtree(tmp_path / "again")


def test_a_rubric_that_checks_runs_without_executing_them_is_refused() -> None:
    from grader.errors import RubricError

    text = RUBRIC.replace("  execute: true\n", "  execute: false\n")
    with pytest.raises(RubricError) as info:
        parse_rubric(text, "rubrics/nbtest.yaml")
    (problem,) = info.value.problems
    assert problem.startswith("rubrics/nbtest.yaml:") and "criterion 'runs'" in problem and "execute: true" in problem


def test_results_keep_notebook_runs_through_json(graded) -> None:  # type: ignore[no-untyped-def]
    students, out = graded
    data = json.loads((out / "results.json").read_text())
    runs = {s["student"]: s["evidence"]["notebooks"][0]["run"]["status"] for s in data["students"]}
    assert runs == {"forks": "killed", "hangs": "timeout", "invalid": "error", "raises": "error", "trains": "completed"}

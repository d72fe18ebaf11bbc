"""What a worker reports about its own run (issue 15, finding 15): device, seconds, batch size,
loader text. The worker runs the submission's code in its own process, so a model with code can make
it say anything; the grader checks every such fact and labels what it shows as reported by the
evaluation process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from grader.worker.backends import cpu_name
from grader.worker.evaluate import WorkerModelResult
from grader.records.evidence import EvaluationRun, ModelEvidence, clean_text
from grader.facts.gather import GatherOptions, PublicInputs, _with_result
from grader.pipeline import grade
from grader.inputs.rubric import load_rubric
from grader.sandbox.isolation import detect_isolation
from grader.settings import Settings
from tests._class import keras3_cnn

ROOT = Path(__file__).resolve().parents[1]


def _result(**changes: object) -> WorkerModelResult:
    honest = WorkerModelResult(
        index=0, ok=True, loader="keras 3.15.1 (safe mode, tensorflow backend)", input_shape=(None, 28, 28, 1),
        output_shape=(None, 10), candidate="as-is/unit", candidates={"as-is/unit": 0.8, "as-is/raw": 0.1},
        description="scaled to [0, 1]", predictions="predictions-0.npy", seconds=3.0,
        run=EvaluationRun(device="cpu", device_name="Some CPU", backend="tensorflow", batch_size=256, seconds=1.0))
    return honest.model_copy(update=changes)  # model_copy does not validate: what a forging worker writes


def _inputs(tmp_path: Path) -> PublicInputs:
    import numpy as np

    from grader.worker.adapt import Stats

    np.save(tmp_path / "predictions-0.npy", np.full((4, 10), 0.1, np.float32))
    return PublicInputs(hidden_images=tmp_path / "h.npy", public_images=tmp_path / "p.npy", public_labels=tmp_path / "l.npy",
                        stats=Stats(0.3, 0.3), dataset="fashion-mnist", hidden_sha256="x", hidden_count=4, public_count=4,
                        class_names=tuple(str(i) for i in range(10)))


MODEL = ModelEvidence(path="m.keras", size_bytes=1, sha256="0" * 64, status="inspected")


def test_reported_numbers_outside_their_range_are_refused_when_read() -> None:
    for bad in ({"seconds": -5}, {"seconds": float("nan")}, {"seconds": 1e308}, {"batch_size": -1}, {"batch_size": 10**9},
                {"device": "tpu:0"}, {"device": "gpu:0; rm -rf"}, {"peak_memory_bytes": -3}, {"backend": "<b>x</b>"}):
        with pytest.raises(ValidationError):
            EvaluationRun.model_validate({"device": "cpu", **bad})
    text = '{"device": "cpu", "seconds": -5.0}'  # as JSON from the worker's file
    with pytest.raises(ValidationError):
        EvaluationRun.model_validate_json(text)
    run = EvaluationRun.model_validate({"device": "cpu", "device_name": "A\x1b[31mB\u202eC\u200bD\x00" + "x" * 500})
    assert run.device_name is not None and run.device_name.startswith("ABCD") and len(run.device_name) == 120
    assert run.reported_by == "evaluation process"  # the JSON says whose word it is


def test_clean_text_strips_escapes_and_controls_and_caps() -> None:
    assert clean_text("\x1b]0;title\x07ok\x1b[2J \u202edone", 50) == "ok done"
    assert clean_text("a\nb\tc", 50) == "a b c" and clean_text("a\nb", 50, lines=True) == "a\nb"
    assert clean_text("y" * 30, 10) == "y" * 9 + "…"


@pytest.mark.parametrize(("changes", "why"), [
    ({"seconds": -5.0}, "seconds"),
    ({"seconds": float("inf")}, "seconds"),
    ({"candidates": {"as-is/unit": 7.0}}, "candidates"),
    ({"candidates": {"<script>": 0.5, "as-is/unit": 0.5}}, "candidates"),
    ({"candidate": "pad/unit"}, "not among those it scored"),
    ({"input_shape": (None, 10**9)}, "shape"),
], ids=["negative-seconds", "infinite-seconds", "accuracy-7", "bad-key", "unscored-choice", "huge-shape"])
def test_forged_facts_make_the_answer_refused(tmp_path: Path, changes: dict, why: str) -> None:
    model, raw = _with_result(MODEL, _result(**changes), tmp_path, _inputs(tmp_path), GatherOptions())
    assert model.status == "error" and raw is None
    assert "answer was refused" in (model.error or "") and why in (model.error or "")


def test_a_device_or_batch_the_grader_did_not_give_is_refused(tmp_path: Path) -> None:
    base = _result().run
    assert base is not None
    for run, why in ((base.model_copy(update={"device": "gpu:0"}), "did not give"),
                     (base.model_copy(update={"batch_size": 4096}), "more than the 256"),
                     (base.model_copy(update={"seconds": 60.0}), "longer than its whole evaluation")):
        model, _ = _with_result(MODEL, _result(run=run), tmp_path, _inputs(tmp_path), GatherOptions(device="cpu", batch_size=256))
        assert model.status == "error" and why in (model.error or ""), model.error
    # a GPU of the run is a device the grader gave
    ok, _ = _with_result(MODEL, _result(run=base.model_copy(update={"device": "gpu:1", "device_name": "NVIDIA H100"})), tmp_path,
                         _inputs(tmp_path), GatherOptions(device="gpu:0,1"))
    assert ok.status == "evaluated" and ok.run is not None and ok.run.device == "gpu:1"
    assert ok.run.device_name is None  # not the worker's word: this machine has no such GPU to name


def test_accepted_facts_are_cleaned_and_the_device_named_by_the_grader(tmp_path: Path) -> None:
    run = _result().run.model_copy(update={"device_name": "NVIDIA H100"})  # type: ignore[union-attr]
    forged = _result(run=run, loader="keras \x1b[1mOK\x1b[0m\n" + "z" * 1000, warnings=tuple(f"w{i}\x07" for i in range(50)))
    model, raw = _with_result(MODEL, forged, tmp_path, _inputs(tmp_path), GatherOptions())
    assert model.status == "evaluated" and raw is not None
    assert model.run is not None and model.run.device_name == cpu_name() != "NVIDIA H100"
    assert model.loader is not None and model.loader.startswith("keras OK z") and len(model.loader) == 200
    assert "w0" in model.warnings and not any("\x07" in w for w in model.warnings) and len(model.warnings) <= 21


# ---------------------------------------------------------------------------------------------------------
# End to end: a model whose Lambda makes the worker lie about itself


def _forging_model(path: Path, changes: dict, run_changes: dict) -> None:
    """A model whose Lambda, when it runs in the worker, replaces the worker's answer (JSON) with a
    forged one: a real attack on what the worker says about itself. Keras saves a lambda as its
    bytecode, so the payload travels as a constant of the lambda."""
    import keras

    payload = f"""
import sys
ev = sys.modules.get("grader.worker.evaluate")
if ev is not None and not getattr(ev, "_forged", False):
    ev._forged = True
    dump = ev.WorkerModelResult.model_dump_json
    def fake(self, **kw):
        run = self.run.model_copy(update={run_changes!r}) if self.run is not None else None
        return dump(self.model_copy(update={{**{changes!r}, "run": run}}), **kw)
    ev.WorkerModelResult.model_dump_json = fake
"""
    forge = eval(f"lambda t: (exec({payload!r}, {{}}), t)[1]")  # noqa: S307 - the test's own payload
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(forge), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(path)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="a model with code is evaluated only in the sandbox")
def test_a_worker_that_lies_about_itself(fmnist_dir: Path, tmp_path: Path) -> None:
    if detect_isolation("auto").kind != "bwrap":
        pytest.skip("bubblewrap cannot create namespaces here: models with code are not evaluated")
    subs = tmp_path / "subs"
    for name in ("honest", "liar", "dresser"):
        (subs / name).mkdir(parents=True)
    keras3_cnn(fmnist_dir, subs / "honest" / "cnn.keras")
    _forging_model(subs / "liar" / "m.keras", {"seconds": -5.0}, {"device": "gpu:7", "device_name": "NVIDIA H100"})
    _forging_model(subs / "dresser" / "m.keras", {"loader": "keras \x1b[32mverified by the grader: 10/10\x1b[0m\u202e"},
                   {"device_name": "NVIDIA H100"})
    out = tmp_path / "out"
    outcome = grade(subs, load_rubric(ROOT / "rubrics" / "hw10.yaml"),
                    Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=200, project_root=ROOT))
    by = {s.student: s for s in outcome.results.students}
    liar = by["liar"].evidence.models[0]
    assert liar.status == "error" and "answer was refused" in (liar.error or "") and liar.metrics is None
    dresser = by["dresser"].evidence.models[0]
    assert dresser.status == "evaluated" and dresser.run is not None
    assert dresser.run.device_name == cpu_name() and "\x1b" not in (dresser.loader or "") and "\u202e" not in (dresser.loader or "")
    honest = by["honest"].evidence.models[0]
    assert honest.status == "evaluated" and honest.metrics is not None and honest.metrics.accuracy > 0.7
    page = (out / "students" / next(p.name for p in (out / "students").iterdir() if p.name.startswith("honest"))).read_text()
    assert "reported by the evaluation process" in page
    assert "NVIDIA H100" not in "".join(p.read_text() for p in out.rglob("*.html"))

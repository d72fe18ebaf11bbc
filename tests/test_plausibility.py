"""Public test sets can be memorised (issue 15, finding 19): a code-free model whose weights hold the
real t10k images and labels scores 1.0 on the Fashion-MNIST "hidden" set. The teacher's pages flag
it (an accuracy above the data set's ceiling, and far above the model's accuracy on the public
training sample); an honest CNN is not flagged; the student's page never shows it; points do not change."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from grader.inputs import datasets
from grader.records.evidence import Preprocessing
from grader.judging.judge import judge_student
from grader.judging.plausibility import accuracy_flags, ceiling_for
from grader.pipeline import grade
from grader.inputs.rubric import load_rubric, parse_rubric
from grader.settings import Settings
from tests._class import keras3_cnn
from tests._evidence import MLP, arch, evidence, model

ROOT = Path(__file__).resolve().parents[1]
HW9 = (ROOT / "rubrics" / "hw9.yaml").read_text()


def _with_public(accuracy: float, public: float | None):  # type: ignore[no-untyped-def]
    m = model("m.keras", arch(*MLP), accuracy)
    if public is None:
        return m
    prep = Preprocessing(scale="unit", geometry="flatten", input_shape=(None, 784), description="",
                         candidates={"flatten/unit": public, "flatten/raw": 0.1})
    return m.model_copy(update={"preprocessing": prep})


def test_ceiling_and_margin_come_from_the_data_set_and_the_rubric() -> None:
    hw9 = parse_rubric(HW9, "hw9.yaml")
    assert ceiling_for(hw9) == 0.96 and hw9.plausibility.margin == 0.05
    strict = parse_rubric(HW9.replace("criteria:", "plausibility: {max_accuracy: 0.9, margin: 0.02}\ncriteria:", 1), "hw9.yaml")
    assert ceiling_for(strict) == 0.9 and strict.plausibility.margin == 0.02
    images = parse_rubric("assignment: a\ndataset: shapes\nimages: {size: [32, 32]}\ncriteria:\n"
                          "  - {id: a, title: A, points: 1, check: min_accuracy, params: {threshold: 0.5}}\n", "a.yaml")
    assert ceiling_for(images) is None  # a teacher's own images: no known ceiling, the margin still applies
    with pytest.raises(Exception, match="plausibility.max_accuracy"):
        parse_rubric(HW9.replace("criteria:", "plausibility: {max_accuracy: 96}\ncriteria:", 1), "hw9.yaml")


@pytest.mark.parametrize(("accuracy", "public", "why"), [
    (0.99, 0.97, "ceiling"), (0.90, 0.80, "margin"), (1.0, 0.84, "both"), (0.91, 0.93, None), (0.88, 0.85, None),
    (0.95, None, None),
])
def test_which_accuracies_are_flagged(accuracy: float, public: float | None, why: str | None) -> None:
    hw9 = parse_rubric(HW9, "hw9.yaml")
    flags = accuracy_flags(evidence(_with_public(accuracy, public)), hw9)
    if why is None:
        assert flags == ()
        return
    (flag,) = flags
    assert (flag.ceiling is not None) == (why in ("ceiling", "both")) and (flag.margin is not None) == (why in ("margin", "both"))
    assert flag.accuracy == accuracy and flag.public_accuracy == public and "by heart" in flag.detail


def test_the_flag_never_changes_points() -> None:
    hw9 = parse_rubric(HW9, "hw9.yaml")
    lenient = parse_rubric(HW9.replace("criteria:", "plausibility: {max_accuracy: 1.0, margin: 1.0}\ncriteria:", 1), "hw9.yaml")
    ev = evidence(_with_public(1.0, 0.8))
    flagged, plain = judge_student(hw9, ev), judge_student(lenient, ev)
    assert flagged.plausibility and "implausible accuracy" in flagged.flags
    assert not plain.plausibility and "implausible accuracy" not in plain.flags
    assert flagged.points == plain.points and flagged.criteria == plain.criteria


def _memorising_model(fmnist_dir: Path, path: Path) -> None:
    """The attack, for real: Flatten -> Dense(10000) whose weights are the z-scored t10k images (the
    dot product with an image is largest for that very image, whatever positive scale and offset the
    grader gives its pixels) -> softmax -> Dense(10) whose weights are the one-hot t10k labels.
    Plain layers only: no code, nothing for the sandbox to stop."""
    import keras

    images, labels = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=fmnist_dir, download=False))
    flat = images.reshape(len(images), -1).astype(np.float32)
    z = (flat - flat.mean(axis=1, keepdims=True)) / (flat.std(axis=1, keepdims=True) + 1e-6)
    onehot = np.eye(10, dtype=np.float32)[labels]
    m = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(len(images), use_bias=False),
                          keras.layers.Softmax(), keras.layers.Dense(10, use_bias=False)])
    m.layers[1].set_weights([z.T])
    m.layers[3].set_weights([onehot])
    m.save(path)


@pytest.mark.slow
def test_a_memorised_test_set_is_flagged_and_an_honest_cnn_is_not(fmnist_dir: Path, tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    for name in ("memo", "honest"):
        (subs / name).mkdir(parents=True)
    _memorising_model(fmnist_dir, subs / "memo" / "dense.keras")
    keras3_cnn(fmnist_dir, subs / "honest" / "cnn.keras")
    out = tmp_path / "out"
    outcome = grade(subs, load_rubric(ROOT / "rubrics" / "hw9.yaml"),
                    Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=500, project_root=ROOT))
    by = {s.student: s for s in outcome.results.students}
    memo, honest = by["memo"], by["honest"]
    m = memo.evidence.models[0]
    assert m.status == "evaluated" and m.metrics is not None and m.metrics.accuracy > 0.999  # the attack works...
    assert m.architecture is not None and not m.architecture.code_layers  # ...without any code
    (flag,) = memo.plausibility  # ...and is flagged for the teacher, on both counts
    assert flag.ceiling == 0.96 and flag.margin == 0.05 and flag.public_accuracy is not None and flag.public_accuracy < 0.95
    assert "implausible accuracy" in memo.flags
    assert memo.points == sum(c.points for c in memo.criteria)  # points as the rubric gives them
    h = honest.evidence.models[0]
    assert h.metrics is not None and 0.7 < h.metrics.accuracy < 0.96
    assert honest.plausibility == () and "implausible accuracy" not in honest.flags

    page = lambda folder: (out / folder / next(p.name for p in (out / folder).iterdir() if p.name.startswith("memo"))).read_text()  # noqa: E731
    assert "Accuracy too good to be true" in page("students") and "by heart" in page("students")
    assert "too good to be true" not in page("feedback") and "by heart" not in page("feedback")  # never the student's
    assert "implausible accuracy" in (out / "index.html").read_text()
    saved = json.loads((out / "results.json").read_text())
    assert next(s for s in saved["students"] if s["student"] == "memo")["plausibility"][0]["ceiling"] == 0.96

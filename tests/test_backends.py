"""The same class graded with Keras on TensorFlow and on PyTorch (both on the CPU here) gives the same
accuracies within 0.001: the worker has no TensorFlow-only path for Keras 3 files, so a GPU machine
with JAX or PyTorch and no TensorFlow grades alike (issue 7; the GPU figures are in its notes).

CI installs the CPU build of torch and sets GRADER_REQUIRE_TORCH=1; elsewhere the test skips
without torch."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from grader.pipeline import grade
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
from tests._class import keras3_cnn

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tensorflow_and_torch_backends_give_the_same_accuracies(tmp_path: Path, fmnist_dir: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("torch") is None:
        if os.environ.get("GRADER_REQUIRE_TORCH") == "1":
            pytest.fail("torch is required here ($GRADER_REQUIRE_TORCH=1) but not installed")
        pytest.skip("torch is not installed")
    import keras

    subs = tmp_path / "class"
    (subs / "cnn").mkdir(parents=True)
    keras3_cnn(fmnist_dir, subs / "cnn" / "cnn.keras")
    (subs / "rgb32").mkdir()
    keras.utils.set_random_seed(3)  # a 32x32x3 input: resize or pad, then the channel repeat, on the device path
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(),
                      keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]).save(subs / "rgb32" / "model.keras")
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    accuracies = {}
    for backend in ("tensorflow", "torch"):
        monkeypatch.setenv("KERAS_BACKEND", backend)
        outcome = grade(subs, rubric, Settings(out=tmp_path / backend, hidden_tests=fmnist_dir, download=False,
                                               public_sample=200, project_root=ROOT))
        accuracies[backend] = {s.student: (s.evidence.models[0].accuracy, s.evidence.models[0].loader) for s in outcome.results.students}
    for student, (acc_tf, _) in accuracies["tensorflow"].items():
        acc_torch, loader = accuracies["torch"][student]
        assert acc_tf is not None and acc_torch is not None, accuracies
        assert abs(acc_tf - acc_torch) <= 0.001, (student, acc_tf, acc_torch)
        assert "torch backend" in (loader or "") and "tensorflow backend" in (accuracies["tensorflow"][student][1] or "")

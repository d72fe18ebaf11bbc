"""A .tflite model graded end to end on the real hidden Fashion-MNIST set: discovered, inspected from
its FlatBuffer, evaluated by the TFLite interpreter in the sandboxed worker, scored by the grader.
The float model must reach the Keras model's own accuracy; the int8 one (quantised input and output)
must stay close to it, and the flowers contest score must be computed for both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grader.pipeline import grade
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
from tests._class import keras3_cnn, read_idx, train_split
from tests._tflite import to_tflite

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _convert(keras_path: Path, out: Path, fmnist: Path, int8: bool) -> None:
    import keras

    x, _ = train_split(fmnist, n=100)
    sample = x[..., None].astype(np.float32) / 255.0  # what the model takes
    out.write_bytes(to_tflite(keras.models.load_model(keras_path), "int8" if int8 else None, sample))


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("class")
    (root / "lite").mkdir()
    work = tmp_path_factory.mktemp("work")
    keras3_cnn(fmnist_dir, work / "cnn.keras")
    _convert(work / "cnn.keras", root / "lite" / "float.tflite", fmnist_dir, int8=False)
    _convert(work / "cnn.keras", root / "lite" / "int8.tflite", fmnist_dir, int8=True)
    (root / "broken").mkdir()
    (root / "broken" / "model.tflite").write_bytes((root / "lite" / "float.tflite").read_bytes()[:300])
    out = tmp_path_factory.mktemp("out")
    settings = Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=300, project_root=ROOT)
    return grade(root, load_rubric(ROOT / "rubrics" / "hw9.yaml"), settings), work


def test_tflite_models_are_evaluated_like_keras_ones(graded, fmnist_dir: Path) -> None:  # type: ignore[no-untyped-def]
    import keras

    outcome, work = graded
    lite = next(s for s in outcome.results.students if s.student == "lite")
    models = {m.path: m for m in lite.evidence.models}
    x = read_idx(fmnist_dir / "t10k-images-idx3-ubyte.gz")
    y = read_idx(fmnist_dir / "t10k-labels-idx1-ubyte.gz")
    expected = float(np.mean(np.argmax(keras.models.load_model(work / "cnn.keras").predict(x[..., None] / 255.0, verbose=0), 1) == y))
    f, q = models["float.tflite"], models["int8.tflite"]
    assert f.status == "evaluated", f.error
    assert f.architecture is not None and f.architecture.format == "tflite" and f.tflite is not None
    assert f.tflite.input_dtype == "float32" and q.tflite is not None and q.tflite.input_dtype == "int8"
    assert "tflite" in (f.loader or "")
    assert f.metrics is not None and f.metrics.accuracy == pytest.approx(expected, abs=1e-4)
    assert q.status == "evaluated", q.error
    assert q.metrics is not None and abs(q.metrics.accuracy - expected) < 0.02
    for m in (f, q):
        assert m.metrics is not None and m.metrics.confidence_sum is not None
        assert 0 < m.metrics.confidence_mean <= 100 * m.metrics.accuracy + 1e-6


def test_a_broken_tflite_file_gets_a_clear_error_and_the_class_goes_on(graded) -> None:  # type: ignore[no-untyped-def]
    outcome, _ = graded
    broken = next(s for s in outcome.results.students if s.student == "broken")
    (m,) = broken.evidence.models
    assert m.status == "error" and "not a readable TensorFlow Lite model" in (m.error or "") and "truncated" in (m.error or "")
    assert outcome.results.students[0].status == "gathered"

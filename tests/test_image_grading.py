"""Image-folder data sets end to end (the cv4 and flowers assignments): 128×128 RGB images in one
folder per class, generated (tests/_images.py); a Keras CNN and TFLite models graded through the
sandboxed worker; a model whose labels list the classes in another order; a broken hidden image
and a missing folder stopping the run with the file named."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grader.worker import adapt
from grader.inputs.datasets import DatasetError
from grader.inputs.image_folder import load_image_folder
from grader.pipeline import grade
from grader.inputs.rubric import parse_rubric
from grader.settings import Settings
from tests._images import CV4_CLASSES, FLOWER_CLASSES, as_arrays, write_folder
from tests._tflite import to_tflite

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
RUBRIC = """
assignment: shapes
dataset: shapes
images: {{classes: [{classes}], size: [64, 64]}}
criteria:
  - {{id: acc, title: Accuracy, points: 1, check: min_accuracy, params: {{threshold: 0.5}}}}
"""


def _cnn(size: int, classes: int):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(3)  # before the layers are built: their initial weights are drawn here
    L = keras.layers
    return keras.Sequential([keras.Input((size, size, 3)), L.Rescaling(1 / 255.0), L.Conv2D(8, 3, activation="relu"),
                             L.MaxPooling2D(), L.Conv2D(16, 3, activation="relu"), L.GlobalAveragePooling2D(),
                             L.Dense(classes, activation="softmax")])


def _train(model, x, y, epochs: int = 15):  # type: ignore[no-untyped-def]
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp("shapes")
    write_folder(data / "train", CV4_CLASSES, 16, seed=1, size=64)
    write_folder(data / "test", CV4_CLASSES, 6, seed=2, size=96, fmt="jpg")  # another size and format: resized to 64
    x, y = as_arrays(data / "train", CV4_CLASSES, 64)
    root = tmp_path_factory.mktemp("class")
    (root / "ann").mkdir()
    _train(_cnn(64, 6), x, y).save(root / "ann" / "cnn.keras")
    return data, root


def test_a_keras_model_on_an_image_folder(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import keras

    data, root = shapes
    rubric = parse_rubric(RUBRIC.format(classes=", ".join(CV4_CLASSES)), "shapes.yaml")
    outcome = grade(root, rubric, Settings(out=tmp_path / "out", hidden_tests=data, project_root=ROOT, download=False))
    (student,) = outcome.results.students
    (m,) = student.evidence.models
    assert m.status == "evaluated", m.error
    assert m.metrics is not None and m.metrics.n == 36 and [c.name for c in m.metrics.per_class] == list(CV4_CLASSES)
    # the same number, computed here from the same images with the preprocessing the grader reports
    hidden = load_image_folder(data / "test", size=(64, 64), class_names=CV4_CLASSES)
    assert m.preprocessing is not None and "RGB" in m.preprocessing.description
    cand = adapt.Candidate(m.preprocessing.geometry, m.preprocessing.scale)
    x = adapt.adapt(hidden.images, (None, 64, 64, 3), cand, adapt.Stats(0.5, 0.25))
    expected = float(np.mean(np.argmax(keras.models.load_model(root / "ann" / "cnn.keras").predict(x, verbose=0), 1) == hidden.labels))
    if m.preprocessing.scale != "standard":  # `standard` depends on the public statistics
        assert m.metrics.accuracy == pytest.approx(expected, abs=1e-9)
    assert outcome.results.run.hidden_size == 36
    examples = m.public_errors
    assert all(e.png for e in examples)  # thumbnails of PUBLIC images (RGB) for the student's page
    assert (tmp_path / "out" / "feedback" / "ann.html").exists()


def test_tflite_labels_in_another_order_are_mapped_to_the_classes(tmp_path: Path) -> None:
    data = tmp_path / "flowers"
    write_folder(data / "train", FLOWER_CLASSES, 40, seed=1, kind="flowers", size=64)
    write_folder(data / "test", FLOWER_CLASSES, 6, seed=2, kind="flowers", size=64)
    x, y = as_arrays(data / "train", FLOWER_CLASSES, 64)
    theirs = ["tulips", "daisy", "roses", "dandelion", "sunflowers"]
    remap = np.array([theirs.index(c) for c in FLOWER_CLASSES])
    model = _train(_cnn(64, 5), x, remap[y])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("labels.txt", "\n".join(theirs) + "\n")
    root = tmp_path / "class"
    (root / "group").mkdir(parents=True)
    (root / "group" / "model.tflite").write_bytes(to_tflite(model) + buffer.getvalue())
    (root / "int8-group").mkdir()
    (root / "int8-group" / "model_int8.tflite").write_bytes(to_tflite(model, "int8", x) + buffer.getvalue())
    rubric = parse_rubric(RUBRIC.format(classes=", ".join(FLOWER_CLASSES)).replace("shapes", "flowers"), "flowers.yaml")
    outcome = grade(root, rubric, Settings(out=tmp_path / "out", hidden_tests=data, project_root=ROOT, download=False))
    by = {s.student: s for s in outcome.results.students}
    (m,) = by["group"].evidence.models
    (q,) = by["int8-group"].evidence.models
    assert m.status == "evaluated", m.error
    assert q.status == "evaluated", q.error
    assert q.tflite is not None and q.tflite.input_dtype == "int8" and q.metrics is not None
    assert abs(q.metrics.accuracy - m.metrics.accuracy) <= 0.1  # type: ignore[union-attr]
    assert m.tflite is not None and m.tflite.labels == tuple(theirs)
    assert any("reordered its outputs" in w for w in m.warnings)
    hidden = load_image_folder(data / "test", size=(64, 64), class_names=FLOWER_CLASSES)
    probs = model.predict(hidden.images.astype(np.float32), verbose=0)[:, remap]  # the model's columns in class order
    assert m.metrics is not None and m.metrics.accuracy == pytest.approx(float(np.mean(probs.argmax(1) == hidden.labels)), abs=1e-9)
    assert m.metrics.accuracy > 0.5 and m.metrics.confidence_sum is not None  # well above chance (0.2): the reordering matters


def test_a_broken_hidden_image_or_a_missing_folder_stops_the_run_with_the_file_named(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, root = shapes
    rubric = parse_rubric(RUBRIC.format(classes=", ".join(CV4_CLASSES)), "shapes.yaml")
    broken = tmp_path / "data"
    write_folder(broken / "train", CV4_CLASSES, 2, seed=1, size=64)
    write_folder(broken / "test", CV4_CLASSES, 2, seed=2, size=64)
    (broken / "test" / "circle" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DatasetError) as info:
        grade(root, rubric, Settings(out=tmp_path / "out", hidden_tests=broken, project_root=ROOT, download=False))
    assert "circle/bad.png" in str(info.value)
    with pytest.raises(DatasetError) as info:
        grade(root, rubric, Settings(out=tmp_path / "out2", hidden_tests=tmp_path / "nowhere", project_root=ROOT, download=False))
    assert f"--hidden-tests {tmp_path / 'nowhere'}: no such folder of images" in str(info.value)
    with pytest.raises(DatasetError) as info:
        grade(root, rubric, Settings(out=tmp_path / "out3", project_root=tmp_path, download=False))
    assert "no hidden test images for 'shapes'" in str(info.value) and "hidden_tests/shapes/test" in info.value.hint


def test_the_hidden_split_may_be_the_dataset_folder_itself(shapes, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """hidden_tests/<dataset>/<class>/*.png, as a teacher may lay it out; the public split given apart."""
    import shutil

    data, root = shapes
    project = tmp_path / "course"
    shutil.copytree(data / "test", project / "hidden_tests" / "shapes")
    rubric = parse_rubric(RUBRIC.format(classes=", ".join(CV4_CLASSES)), "shapes.yaml")
    outcome = grade(root, rubric, Settings(out=tmp_path / "out", public_data=data / "train", project_root=project, download=False))
    assert outcome.results.run.hidden_size == 36
    assert str(project / "hidden_tests" / "shapes") in outcome.results.run.hidden_source

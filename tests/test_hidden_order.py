"""The hidden images reach workers in a secret shuffled order (issue 15, finding 7): the order of
`hidden_images.npy` says nothing about the labels, is new for every run, and is undone only by the
Scorer, so that every number after scoring (accuracy, the `predicted` fingerprint) is in label order.
A competition on a folder-per-class image set, whose ids name the classes, is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from grader.inputs import datasets
from grader.scoring.competition import ids_naming_classes, ids_problem
from grader.records.evidence import decode_labels
from grader.pipeline import grade, prepare_inputs
from grader.inputs.rubric import load_rubric, parse_rubric
from grader.settings import Settings
from tests._images import CV4_CLASSES, write_folder

ROOT = Path(__file__).resolve().parents[1]
IMAGES_RUBRIC = """
assignment: shapes
dataset: shapes
images: {{classes: [{classes}], size: [32, 32]}}
{extra}
criteria:
  - {{id: acc, title: Accuracy, points: 1, check: min_accuracy, params: {{threshold: 0.5}}}}
"""


def _longest_run(values: np.ndarray) -> int:
    best = run = 1
    for a, b in zip(values[:-1], values[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def _shown_labels(inputs, scorer) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The label of each row of hidden_images.npy as written for the sandbox (read back through the
    Scorer's order after checking that the file really holds the images in that order)."""
    assert scorer.order is not None
    return np.asarray(scorer.labels)[scorer.order]


def test_idx_hidden_images_are_shuffled_afresh_for_every_run(fmnist_dir: Path, tmp_path: Path) -> None:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    settings = Settings(hidden_tests=fmnist_dir, download=False, public_sample=100, project_root=ROOT)
    first, scorer1, _, _ = prepare_inputs(rubric, settings, tmp_path / "one")
    second, scorer2, _, _ = prepare_inputs(rubric, settings, tmp_path / "two")
    images, labels = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=fmnist_dir, download=False))
    shown1 = np.load(first.hidden_images, allow_pickle=False)
    shown2 = np.load(second.hidden_images, allow_pickle=False)
    assert shown1.shape == images.shape and sorted(scorer1.order.tolist()) == list(range(len(images)))  # type: ignore[union-attr]
    assert np.array_equal(shown1, images[scorer1.order])  # row i of the file is image order[i]
    assert np.array_equal(scorer1.labels, labels)  # the Scorer keeps the labels in label order
    assert not np.array_equal(shown1, images)  # not the public t10k order
    assert not np.array_equal(scorer1.order, scorer2.order) and not np.array_equal(shown1, shown2)  # new every run
    in_file_order = _shown_labels(first, scorer1)
    assert _longest_run(in_file_order) <= 10
    # the row number says nothing of the label: its correlation with the label is noise
    assert abs(np.corrcoef(np.arange(len(in_file_order)), in_file_order)[0, 1]) < 0.05
    # the permutation is written nowhere the sandbox reads: the inputs folder holds exactly the three arrays
    assert sorted(p.name for p in first.hidden_images.parent.iterdir()) == ["hidden_images.npy", "public_images.npy", "public_labels.npy"]


def test_image_folder_hidden_images_are_not_in_class_order(tmp_path: Path) -> None:
    write_folder(tmp_path / "data" / "test", CV4_CLASSES, 30, seed=2, size=32)
    write_folder(tmp_path / "data" / "train", CV4_CLASSES, 4, seed=1, size=32)
    rubric = parse_rubric(IMAGES_RUBRIC.format(classes=", ".join(CV4_CLASSES), extra=""), "shapes.yaml")
    settings = Settings(hidden_tests=tmp_path / "data", download=False, project_root=ROOT)
    inputs, scorer, _, _ = prepare_inputs(rubric, settings, tmp_path / "inputs")
    assert np.array_equal(np.sort(scorer.labels), scorer.labels)  # the folder itself is in class order...
    in_file_order = _shown_labels(inputs, scorer)
    assert not np.array_equal(np.sort(in_file_order), in_file_order)  # ...what the sandbox gets is not
    assert _longest_run(in_file_order) <= 10  # 180 images of 6 classes: sorted, the runs would be 30 long
    assert abs(np.corrcoef(np.arange(len(in_file_order)), in_file_order)[0, 1]) < 0.35
    again, scorer2, _, _ = prepare_inputs(rubric, settings, tmp_path / "again")
    assert not np.array_equal(scorer.order, scorer2.order)


def test_a_full_grade_scores_in_label_order(fmnist_dir: Path, tmp_path: Path) -> None:
    """A real (untrained, deterministic) model graded end to end: its accuracy and its `predicted`
    fingerprint equal what the model gives on the t10k files in their own order."""
    import keras

    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    (tmp_path / "subs" / "ann").mkdir(parents=True)
    model.save(tmp_path / "subs" / "ann" / "dense.keras")
    images, labels = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=fmnist_dir, download=False))
    outcome = grade(tmp_path / "subs", load_rubric(ROOT / "rubrics" / "hw9.yaml"),
                    Settings(out=tmp_path / "out", hidden_tests=fmnist_dir, download=False, public_sample=200, project_root=ROOT))
    (m,) = outcome.results.students[0].evidence.models
    assert m.status == "evaluated" and m.metrics is not None and m.preprocessing is not None
    scale = {"unit": 1 / 255.0, "raw": 1.0}.get(m.preprocessing.scale)
    if scale is None:
        pytest.skip(f"preprocessing {m.preprocessing.scale!r} chosen; this test recomputes only unit and raw")
    expected = np.argmax(model.predict(images.astype(np.float32) * scale, verbose=0, batch_size=1000), axis=1)
    assert m.metrics.accuracy == pytest.approx(float(np.mean(expected == labels)), abs=1e-4)
    assert np.mean(decode_labels(m.predicted or "") == expected) > 0.999  # label order, not the run's shuffle


def test_competition_ids_that_name_the_class_are_refused(tmp_path: Path) -> None:
    assert ids_problem(("cat/1.png", "dog/2.png"), (0, 1), ("cat", "dog"), by_folder=True)
    assert ids_naming_classes(("img_cat_1.png", "a.png"), (0, 1), ("cat", "dog")) == 1
    assert ids_problem(("img_cat_1.png", "dog-2.png", "x.png"), (0, 1, 0), ("cat", "dog"), by_folder=False)
    assert ids_problem(("0001.png", "0002.png"), (0, 1), ("0", "1"), by_folder=False) is None  # short names: not looked for
    assert ids_problem(("a1f3.png", "9b2c.png"), (0, 1), ("cat", "dog"), by_folder=False) is None

    write_folder(tmp_path / "data" / "test", CV4_CLASSES, 3, seed=2, size=32)
    write_folder(tmp_path / "data" / "train", CV4_CLASSES, 2, seed=1, size=32)
    extra = "competition: {title: Shapes, public_fraction: 0.5, seed: 1}"
    rubric = parse_rubric(IMAGES_RUBRIC.format(classes=", ".join(CV4_CLASSES), extra=extra), "shapes.yaml")
    settings = Settings(hidden_tests=tmp_path / "data", download=False, project_root=ROOT)
    with pytest.raises(datasets.DatasetError, match="folder-per-class layout every id does") as raised:
        prepare_inputs(rubric, settings, tmp_path / "inputs")
    assert "labels.csv" in (raised.value.hint or "")

    # the same images listed in a labels.csv under names that say nothing of the class: accepted
    flat = tmp_path / "flat"
    (flat / "test").mkdir(parents=True)
    rows = ["filename,label"]
    for i, path in enumerate(sorted((tmp_path / "data" / "test").rglob("*.png"))):
        (flat / "test" / f"{i:04d}.png").write_bytes(path.read_bytes())
        rows.append(f"{i:04d}.png,{path.parent.name}")
    (flat / "test" / "labels.csv").write_text("\n".join(rows) + "\n")
    inputs, scorer, _, _ = prepare_inputs(rubric, settings.model_copy(update={"hidden_tests": flat, "public_data": tmp_path / "data" / "train"}),
                                          tmp_path / "inputs2")
    assert scorer.image_ids()[0] == "0000.png" and inputs.hidden_count == 18


def _index_reader(path: Path, classes: int) -> None:
    """The attack of finding 7, for real: a Lambda that finds each image it is given among the rows of
    /inputs/hidden_images.npy (what the sandbox mounts) and answers the class that the row's position
    would have if the file were in class order, as an image folder's sorted files are."""
    import keras
    import tensorflow as tf

    code = f"""
import numpy as np
def f(x):
    h = np.load("/inputs/hidden_images.npy", mmap_mode="r")
    h = np.asarray(h, dtype=np.float32).reshape(len(h), -1)
    h = (h - h.mean(1, keepdims=True)) / (h.std(1, keepdims=True) + 1e-6)
    q = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    q = (q - q.mean(1, keepdims=True)) / (q.std(1, keepdims=True) + 1e-6)
    rows = np.argmax(q @ h.T, axis=1)
    return np.eye({classes}, dtype=np.float32)[rows * {classes} // len(h)]
"""
    read = eval(f"lambda t: tf.ensure_shape(tf.numpy_function((lambda ns: (exec({code!r}, ns), ns['f'])[1])({{}}), [t], tf.float32), (None, {classes}))",  # noqa: S307
                {"tf": tf})
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(read, output_shape=(classes,))])
    model.save(path)


@pytest.mark.slow
def test_a_model_that_reads_labels_off_the_row_order_scores_chance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grader import pipeline
    from grader.sandbox.isolation import detect_isolation

    if detect_isolation("auto").kind != "bwrap":
        pytest.skip("a model with code is evaluated only in the sandbox (bubblewrap cannot create namespaces here)")
    write_folder(tmp_path / "data" / "test", CV4_CLASSES, 20, seed=2, size=32)
    write_folder(tmp_path / "data" / "train", CV4_CLASSES, 4, seed=1, size=32)
    (tmp_path / "subs" / "mallory").mkdir(parents=True)
    _index_reader(tmp_path / "subs" / "mallory" / "reader.keras", len(CV4_CLASSES))
    rubric = parse_rubric(IMAGES_RUBRIC.format(classes=", ".join(CV4_CLASSES), extra=""), "shapes.yaml")
    outcome = grade(tmp_path / "subs", rubric, Settings(out=tmp_path / "out", hidden_tests=tmp_path / "data", download=False,
                                                         project_root=ROOT))
    (m,) = outcome.results.students[0].evidence.models
    assert m.status == "evaluated" and m.metrics is not None, m.error
    assert m.architecture is not None and m.architecture.code_layers  # it ran its own code, in the sandbox
    assert m.metrics.accuracy < 0.5  # shuffled: chance (1/6)

    # control: the same attack on the hidden images in their folder order (as before the fix) is real
    monkeypatch.setattr(pipeline, "_secret_order", lambda n: np.arange(n))
    again = grade(tmp_path / "subs", rubric, Settings(out=tmp_path / "control", hidden_tests=tmp_path / "data", download=False,
                                                       project_root=ROOT, cache=False))
    (c,) = again.results.students[0].evidence.models
    assert c.metrics is not None and c.metrics.accuracy > 0.95

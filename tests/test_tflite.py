"""TensorFlow Lite models: static inspection (grader.formats.tflite_file), prediction (grader.worker.tflite_eval) and the
flowers competition score (grader.scoring.confidence). Fixtures: tests/fixtures/tflite/make_tflite.py."""

from __future__ import annotations

import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grader.scoring.confidence import ConfidenceScore, as_probabilities, confidence_score
from grader.scoring.metrics import OutputError
from grader.formats.tflite_file import TFLiteError, TFLiteInfo, inspect_tflite, labels_beside, looks_like_tflite
from grader.worker.tflite_eval import TFLiteEvalError, TFLiteModel, dequantize, predict_tflite, quantize

HERE = Path(__file__).parent / "fixtures" / "tflite"
FLOWERS = ("daisy", "dandelion", "roses", "sunflowers", "tulips")
MODELS = ("float", "int8", "uint8", "dynamic", "model_maker", "zip_labels", "fixed_batch")


def fixture(name: str) -> Path:
    path = HERE / f"{name}.tflite"
    if not path.exists():
        pytest.skip(f"{path.name} was not generated (see make_tflite.py: it needs tflite-support)")
    return path


@pytest.fixture(scope="module")
def inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    data = np.load(HERE / "inputs.npz", allow_pickle=False)
    return data["images"].astype(np.float32) / 255.0, data["labels"], np.load(HERE / "keras_probs.npy", allow_pickle=False)


def test_fixtures_are_small() -> None:
    for path in HERE.iterdir():
        assert path.stat().st_size < 100_000, path.name


# --- static inspection -----------------------------------------------------------------------------


def test_float_model() -> None:
    info = inspect_tflite(fixture("float"))
    assert isinstance(info, TFLiteInfo)
    assert info.input_shape == (None, 32, 32, 3) and info.input_dtype == "float32" and info.input_quant is None
    assert info.output_shape == (None, 5) and info.output_dtype == "float32" and info.output_quant is None
    assert info.ops == ("CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MEAN", "SOFTMAX")
    assert info.operator_count == 6 and info.subgraph_count == 1 and info.input_count == info.output_count == 1
    assert info.last_op == "SOFTMAX"
    assert "int8" not in info.weight_dtypes and "float32" in info.weight_dtypes
    assert info.metadata_names == ("min_runtime_version", "CONVERSION_METADATA")
    assert info.min_runtime_version and info.min_runtime_version[0].isdigit()
    assert not info.model_maker and info.labels is None and info.labels_source is None and info.associated_files == ()
    assert info.size_bytes == fixture("float").stat().st_size and info.warnings == ()
    assert TFLiteInfo.model_validate_json(info.model_dump_json()) == info


@pytest.mark.parametrize(("name", "dtype", "zero_point"), [("int8", "int8", -128), ("uint8", "uint8", 0)])
def test_full_integer_models(name: str, dtype: str, zero_point: int) -> None:
    info = inspect_tflite(fixture(name))
    assert info.input_dtype == info.output_dtype == dtype
    assert info.input_quant is not None and info.output_quant is not None
    assert info.input_quant[0] == pytest.approx(1 / 255, rel=1e-6) and info.input_quant[1] == zero_point
    assert info.output_quant == (pytest.approx(1 / 256), zero_point)  # a softmax output: [0, 1) in 256 steps
    assert "int8" in info.weight_dtypes and "float32" not in info.weight_dtypes
    assert info.last_op == "SOFTMAX"


def test_uint8_model_requantises_inside() -> None:
    assert "QUANTIZE" in inspect_tflite(fixture("uint8")).ops  # uint8 <-> int8 at the edges
    assert "QUANTIZE" not in inspect_tflite(fixture("int8")).ops


def test_dynamic_range_model() -> None:
    info = inspect_tflite(fixture("dynamic"))
    assert info.input_dtype == info.output_dtype == "float32" and info.input_quant is None and info.output_quant is None
    assert "int8" in info.weight_dtypes and "float32" in info.weight_dtypes  # int8 kernels, float biases
    assert info.size_bytes < inspect_tflite(fixture("float")).size_bytes / 2


def test_model_maker_metadata_and_labels() -> None:
    info = inspect_tflite(fixture("model_maker"))
    assert info.model_maker and "TFLITE_METADATA" in info.metadata_names
    assert info.metadata_model_name == "ImageClassifier"
    assert info.input_normalization == ((0.0,), (255.0,))
    assert info.associated_files == ("labels.txt",)
    assert info.labels == FLOWERS and info.labels_source == "metadata"
    assert info.warnings == ()


def test_input_range_says_what_floats_to_feed() -> None:
    assert inspect_tflite(fixture("uint8")).input_range == (0.0, 1.0)  # (1/255, 0): feed [0, 1]
    assert inspect_tflite(fixture("int8")).input_range == (0.0, 1.0)  # (1/255, -128)
    assert inspect_tflite(fixture("float")).input_range is None


def test_zip_labels_without_metadata() -> None:
    info = inspect_tflite(fixture("zip_labels"))
    assert not info.model_maker and info.input_normalization is None
    assert info.labels == FLOWERS and info.labels_source == "metadata"


def test_fixed_batch_model() -> None:
    info = inspect_tflite(fixture("fixed_batch"))
    assert info.input_shape == (1, 32, 32, 3) and info.output_shape == (1, 5)


def test_labels_txt_beside_the_model(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    shutil.copy(fixture("float"), model)
    assert inspect_tflite(model).labels is None
    (tmp_path / "labels.txt").write_text("\ufeffdaisy\r\ndandelion\n\nroses\nsunflowers\ntulips\n", encoding="utf-8")
    info = inspect_tflite(model)
    assert info.labels == FLOWERS and info.labels_source == "labels.txt"
    assert labels_beside(model) == FLOWERS
    assert inspect_tflite(model, sibling_labels=False).labels is None


def test_labels_inside_win_over_labels_txt(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    shutil.copy(fixture("zip_labels"), model)
    (tmp_path / "labels.txt").write_text("a\nb\nc\nd\ne\n")
    info = inspect_tflite(model)
    assert info.labels == FLOWERS and info.labels_source == "metadata"


def test_labels_beside_refuses_links_and_huge_files(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    shutil.copy(fixture("float"), model)
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("x\n")
    (tmp_path / "labels.txt").symlink_to(secret)
    assert labels_beside(model) is None
    (tmp_path / "labels.txt").unlink()
    (tmp_path / "labels.txt").write_bytes(b"a\n" * 600_000)
    assert labels_beside(model) is None


def _with_zip(tmp_path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    path = tmp_path / "model.tflite"
    path.write_bytes(fixture("float").read_bytes())
    with zipfile.ZipFile(path, "a", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_with_other_files_and_no_labels(tmp_path: Path) -> None:
    info = inspect_tflite(_with_zip(tmp_path, {"vocab.txt": b"a\nb\n", "notes/labels.txt": b"x\ny\n"}))
    assert info.associated_files == ("vocab.txt", "notes/labels.txt")
    assert info.labels == ("x", "y") and info.labels_source == "metadata"  # a labels.txt in a folder counts
    info = inspect_tflite(_with_zip(tmp_path, {"vocab.txt": b"a\n"}))
    assert info.labels is None and info.associated_files == ("vocab.txt",)


def test_zip_limits(tmp_path: Path) -> None:
    huge = inspect_tflite(_with_zip(tmp_path, {"labels.txt": b"a\n" * 600_000}, zipfile.ZIP_DEFLATED))
    assert huge.labels is None and any("labels not read" in w for w in huge.warnings)
    many = inspect_tflite(_with_zip(tmp_path, {f"f{i}": b"" for i in range(10_001)}))
    assert many.associated_files == () and any("10,001 members" in w for w in many.warnings)
    path = _with_zip(tmp_path, {"labels.txt": b"daisy\nroses\n"})
    data = bytearray(path.read_bytes())
    data[data.rfind(b"daisy")] ^= 0xFF  # the stored member no longer matches its CRC
    path.write_bytes(bytes(data))
    bad = inspect_tflite(path)
    assert bad.labels is None and any("cannot be read" in w for w in bad.warnings)


def test_looks_like_tflite(tmp_path: Path) -> None:
    assert looks_like_tflite(fixture("float"))
    (tmp_path / "x.tflite").write_bytes(b"\x89HDF\r\n\x1a\n")
    assert not looks_like_tflite(tmp_path / "x.tflite") and not looks_like_tflite(tmp_path / "missing")


# --- bad files -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "message"), [
    (b"", "too short"),
    (b"TFL3", "too short"),
    (b"\x89HDF\r\n\x1a\n" + bytes(100), "HDF5"),
    (b"PK\x03\x04" + bytes(100), "zip archive"),
    (b'{"cells": []}' + bytes(20), "text file"),
    (bytes(range(256)) * 4, "identifier 'TFL3' is missing"),
    (b"\xff\xff\xff\x7fTFL3" + bytes(40), "outside the file"),
])
def test_garbage_is_refused_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(TFLiteError, match=message):
        inspect_tflite(path)


def test_missing_folder_and_oversized(tmp_path: Path) -> None:
    with pytest.raises(TFLiteError, match="cannot read"):
        inspect_tflite(tmp_path / "missing.tflite")
    with pytest.raises(TFLiteError, match="not a regular file"):
        inspect_tflite(tmp_path)
    with pytest.raises(TFLiteError, match="over 10,000 bytes are not read"):
        inspect_tflite(fixture("float"), max_bytes=10_000)


def test_truncated_model(tmp_path: Path) -> None:
    data = fixture("float").read_bytes()
    path = tmp_path / "model.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TFLiteError, match="truncated or corrupt"):
        inspect_tflite(path)


def test_any_truncation_or_corruption_is_a_tfliteerror_or_a_result(tmp_path: Path) -> None:
    """Never an IndexError, struct.error, UnicodeError or pydantic error: the reader checks every offset."""
    rng = np.random.default_rng(0)
    path = tmp_path / "model.tflite"
    for source in ("float", "model_maker", "uint8"):
        data = fixture(source).read_bytes()
        cases = [data[:n] for n in sorted(set(rng.integers(8, len(data), 40).tolist()))]
        for _ in range(150):
            corrupt = bytearray(data)
            for pos in rng.integers(0, min(len(data), 4096), 4):  # the tables sit at the start; weights after
                corrupt[pos] = int(rng.integers(0, 256))
            cases.append(bytes(corrupt))
        for case in cases:
            path.write_bytes(case)
            try:
                inspect_tflite(path, sibling_labels=False)
            except TFLiteError:
                pass


def test_corrupt_tflite_metadata_is_a_warning(tmp_path: Path) -> None:
    data = bytearray(fixture("model_maker").read_bytes())
    at = data.find(b"M001")
    data[at - 4 : at] = b"\xff\xff\xff\x00"  # the metadata FlatBuffer's root offset now points far away
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(data))
    info = inspect_tflite(path)
    assert info.model_maker and info.input_normalization is None
    assert any("TFLITE_METADATA" in w and "not read" in w for w in info.warnings)
    assert info.labels == FLOWERS  # the zip is still read, by its usual name


# --- prediction ------------------------------------------------------------------------------------


def test_float_predictions_match_keras(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    result = predict_tflite(fixture("float"), x, batch_size=8)
    assert result.outputs.dtype == np.float32 and result.outputs.shape == keras_probs.shape
    assert np.abs(result.outputs - keras_probs).max() < 1e-4
    assert result.batched and result.input_dtype == "float32" and result.notes == ()
    assert result.loader.startswith("tflite: ")


@pytest.mark.parametrize("name", ["model_maker", "zip_labels"])
def test_packed_models_predict_like_the_float_one(name: str, inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    assert np.abs(predict_tflite(fixture(name), x).outputs - keras_probs).max() < 1e-4


def test_dynamic_range_predictions(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    y = predict_tflite(fixture("dynamic"), x).outputs
    assert np.mean(y.argmax(1) == keras_probs.argmax(1)) >= 0.9


@pytest.mark.parametrize("name", ["int8", "uint8"])
def test_full_integer_predictions_are_dequantised(name: str, inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    result = predict_tflite(fixture(name), x, batch_size=8)
    y = result.outputs
    assert result.input_dtype == name and y.dtype == np.float32 and y.shape == keras_probs.shape
    assert np.mean(y.argmax(1) == keras_probs.argmax(1)) >= 0.8
    assert y.min() >= 0.0 and y.max() <= 1.0
    assert np.allclose(y.sum(axis=1), 1.0, atol=0.03)  # a dequantised softmax
    assert np.all(np.isclose(y * 256, np.round(y * 256), atol=1e-3))  # multiples of the output scale 1/256


def test_one_at_a_time_equals_batched(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x = inputs[0][:11]  # 11 = one batch of 8 and a padded one of 3
    batched = predict_tflite(fixture("int8"), x, batch_size=8)
    single = predict_tflite(fixture("int8"), x, batch_size=1)
    assert batched.batched and not single.batched
    np.testing.assert_array_equal(batched.outputs, single.outputs)


def test_model_that_cannot_batch_falls_back(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x = inputs[0]
    result = predict_tflite(fixture("fixed_batch"), x, batch_size=8)
    assert not result.batched
    assert any("one at a time" in note for note in result.notes)
    expected = np.load(HERE / "fixed_batch_probs.npy", allow_pickle=False)
    assert np.abs(result.outputs - expected).max() < 1e-5


def test_model_object_is_opened_once_and_remembers(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    model = TFLiteModel(fixture("uint8"))
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 5) and model.input_dtype == "uint8"
    first = model.predict(x[:5], batch_size=4)
    np.testing.assert_array_equal(model.predict(x, batch_size=16)[:5], first)
    assert model.outputs(x[:0]).outputs.shape == (0, 0)
    fixed = TFLiteModel(fixture("fixed_batch"))
    assert fixed.input_shape == (None, 32, 32, 3)
    fixed.predict(x[:3], batch_size=2)
    fixed.predict(x[:3], batch_size=2)
    assert sum("one at a time" in note for note in fixed.notes) == 1


def test_fits_the_workers_keras_interface() -> None:
    """grader.worker.evaluate._predict adapts 28×28 grayscale images and calls model.predict: a TFLiteModel fits it."""
    from grader.worker import adapt
    from grader.worker.evaluate import _predict

    model = TFLiteModel(fixture("float"))
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    y = _predict(model, images, model.input_shape, adapt.Candidate("resize", "unit"), adapt.Stats(0.3, 0.3), batch=4)
    assert y.shape == (7, 5) and np.allclose(y.sum(axis=1), 1.0, atol=1e-4)


def test_wrong_image_size_is_explained(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    with pytest.raises(TFLiteEvalError, match=r"takes inputs of 32×32×3.*got 28×28×3: resize"):
        predict_tflite(fixture("float"), np.zeros((2, 28, 28, 3), np.float32))
    with pytest.raises(TFLiteEvalError, match="must be a float array"):
        predict_tflite(fixture("float"), np.zeros((2, 32, 32, 3), np.uint8))


def test_garbage_never_reaches_the_interpreter(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_bytes(fixture("float").read_bytes()[:5000])
    with pytest.raises(TFLiteError, match="truncated"):
        predict_tflite(path, np.zeros((1, 32, 32, 3), np.float32))


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None, reason="ai-edge-litert is not installed")
def test_litert_interpreter(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    result = predict_tflite(fixture("float"), x, prefer="litert")
    assert result.loader.startswith("tflite: ai-edge-litert ")
    assert np.abs(result.outputs - keras_probs).max() < 1e-4


def test_tensorflow_interpreter(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    x, _, keras_probs = inputs
    result = predict_tflite(fixture("uint8"), x, prefer="tensorflow", num_threads=1)
    assert result.loader.startswith("tflite: tensorflow ") and result.loader.endswith(" interpreter")
    assert np.mean(result.outputs.argmax(1) == keras_probs.argmax(1)) >= 0.8


def test_quantize_rounds_and_clips() -> None:
    x = np.array([-1.0, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 2.0], np.float32)
    np.testing.assert_array_equal(quantize(x, 1 / 255, -128, np.dtype(np.int8)), [-128, -128, -128, -127, 127, 127])
    np.testing.assert_array_equal(quantize(x, 1 / 255, 0, np.dtype(np.uint8)), [0, 0, 0, 1, 255, 255])
    np.testing.assert_allclose(dequantize(np.array([-128, 0, 127], np.int8), 1 / 256, -128), [0.0, 0.5, 255 / 256])


# --- the competition score -------------------------------------------------------------------------


def test_confidence_score_by_hand() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.7, 0.2, 0.1], [0.2, 0.6, 0.2]])
    labels = np.array([0, 1, 1])  # right with 0.9 -> 90; wrong -> 0; right with 0.6 -> 60
    total = confidence_score(probs, labels)
    assert isinstance(total, ConfidenceScore)
    assert total.score == pytest.approx(150.0) and total.aggregate == "sum" and total.n == 3 and total.correct == 2
    assert total.note is None and total.by_group == {}
    assert confidence_score(probs, labels, aggregate="mean").score == pytest.approx(50.0)


def test_confidence_score_groups() -> None:
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    labels = np.array([0, 0, 0, 1])
    result = confidence_score(probs, labels, groups=["daisy", "daisy", "daisy", "roses"])
    assert result.by_group == {"daisy": pytest.approx(150.0), "roses": pytest.approx(80.0)}
    assert result.score == pytest.approx(230.0)
    means = confidence_score(probs, labels, groups=["daisy", "daisy", "daisy", "roses"], aggregate="mean")
    assert means.by_group == {"daisy": pytest.approx(50.0), "roses": pytest.approx(80.0)}


def test_logits_get_softmax_with_a_note() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0]])
    result = confidence_score(logits, np.array([0, 0]))
    assert result.note and "softmax" in result.note
    assert result.score == pytest.approx(100 * np.exp(2) / (np.exp(2) + 1))


def test_dequantised_outputs_count_as_probabilities() -> None:
    q = np.array([[230, 25, 0], [10, 240, 5]]) / 256  # sums 0.996: a quantised softmax
    probs, note = as_probabilities(q)
    assert note is None and np.allclose(probs, q)
    assert as_probabilities(np.array([[0.5, 0.3, 0.0]]))[1] is not None  # sums to 0.8: not probabilities


def test_confidence_score_refuses_bad_input() -> None:
    probs = np.array([[0.5, 0.5]])
    with pytest.raises(OutputError, match="labels for"):
        confidence_score(probs, np.array([0, 1]))
    with pytest.raises(OutputError, match="class indices"):
        confidence_score(probs, np.array([2]))
    with pytest.raises(OutputError, match="NaN"):
        confidence_score(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(OutputError, match="groups for"):
        confidence_score(probs, np.array([0]), groups=["a", "b"])


def test_flowers_fixture_score(inputs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """The competition score of the float model equals the Keras model's on the same photos."""
    x, labels, keras_probs = inputs
    tflite = confidence_score(predict_tflite(fixture("float"), x).outputs, labels.astype(np.int64))
    keras = confidence_score(keras_probs, labels.astype(np.int64))
    assert tflite.score == pytest.approx(keras.score, abs=1e-3) and tflite.correct == keras.correct
    assert 0 < keras.score < 100 * len(labels)


if os.environ.get("GRADER_TFLITE_LIST"):  # pragma: no cover - a local aid: print what each fixture declares
    for _name in MODELS:
        print(_name, inspect_tflite(HERE / f"{_name}.tflite").model_dump())

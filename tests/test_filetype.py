"""grader.formats.filetype: one decision, by content, of what a model file is, used by precheck, inspection,
fingerprints and the worker's loader alike (issue 15, finding 6).

The files are real: Keras 2 models saved by tf_keras 2.12/2.15 and TFLite models from the committed
fixtures, combined the way an attacker (or a careless rename) would combine them.
"""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from grader.inputs.discover import SubmissionFile
from grader.worker.evaluate import WorkerModel, _load, evaluate_one
from grader.formats.filetype import FileKindError, sniff
from grader.facts.fingerprints import weights_fingerprint
from grader.facts.gather import GatherOptions, _inspect
from grader.facts.keras_file import InspectError, inspect_model_file
from grader.facts.precheck import precheck

FIXTURES = Path(__file__).parent / "fixtures"
K2_MLP = FIXTURES / "keras2" / "2.15.0-mlp.h5"  # a dense network (HDF5)
K2_CNN_H5 = FIXTURES / "keras2" / "2.15.0-cnn.h5"
K2_CNN_KERAS = FIXTURES / "keras2" / "2.15.0-cnn.keras"  # a CNN (zip)
TFLITE = FIXTURES / "tflite" / "float.tflite"
TFLITE_WITH_LABELS = FIXTURES / "tflite" / "zip_labels.tflite"  # a zip of labels.txt appended, as TFLite Support does


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _polyglot(path: Path) -> Path:
    """The dense HDF5 model with the CNN's .keras zip appended: h5py reads the one, zipfile the other."""
    return _write(path, K2_MLP.read_bytes() + K2_CNN_KERAS.read_bytes())


def _refusal(path: Path, label: str | None = None) -> str:
    with pytest.raises(FileKindError) as info:
        sniff(path, label)
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# Honest files


@pytest.mark.parametrize(("path", "kind"), [
    (K2_MLP, "h5"), (K2_CNN_H5, "h5"), (K2_CNN_KERAS, "keras"), (TFLITE, "tflite"), (TFLITE_WITH_LABELS, "tflite"),
    (FIXTURES / "tflite" / "model_maker.tflite", "tflite"),
])
def test_honest_files_are_what_their_names_say(path: Path, kind: str) -> None:
    assert sniff(path) == kind
    assert precheck(path) == []


def test_hdf5_extension_and_zip_member_labels(tmp_path: Path) -> None:
    assert sniff(shutil.copy(K2_MLP, tmp_path / "model.hdf5")) == "h5"
    assert sniff(K2_CNN_KERAS, "models.zip!hw/cnn.keras") == "keras"  # a member of a handed-in zip
    assert sniff(K2_MLP, "hw.ipynb→mlp.h5") == "h5"  # a file a notebook wrote
    assert sniff(K2_MLP, "weights.bin") == "h5"  # no model suffix: the content alone decides


def _aligned_keras(src: Path, dst: Path, at: int) -> Path:
    """`src` re-zipped with model.weights.h5 stored so that its bytes start at offset `at`, one of the
    offsets where the HDF5 library looks for a superblock (Keras can write this by chance)."""
    with zipfile.ZipFile(src) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    weights = members.pop("model.weights.h5")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        pad = at - buffer.tell() - 30 - len("model.weights.h5") - 4
        assert pad >= 0
        info = zipfile.ZipInfo("model.weights.h5", date_time=(2024, 1, 1, 0, 0, 0))
        info.extra = struct.pack("<HH", 0xCAFE, pad) + bytes(pad)  # an unknown extra field: padding
        zf.writestr(info, weights)
    return _write(dst, buffer.getvalue())


def test_a_keras_zip_whose_weights_start_where_hdf5_looks_is_still_a_keras_zip(tmp_path: Path) -> None:
    path = _aligned_keras(K2_CNN_KERAS, tmp_path / "cnn.keras", 4096)
    assert h5py.is_hdf5(str(path))  # the HDF5 library does find a file at byte 4096: the weights member
    assert sniff(path) == "keras" and precheck(path) == []
    assert inspect_model_file(path).total_params == inspect_model_file(K2_CNN_KERAS).total_params


# ---------------------------------------------------------------------------------------------
# Two formats in one file


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_hdf5_model_with_a_keras_zip_appended_is_refused_everywhere(tmp_path: Path, name: str) -> None:
    path = _polyglot(tmp_path / name)
    # the attack is real: each reader finds a different, loadable model in the same bytes
    with h5py.File(path, "r") as f:
        assert '"Dense"' in str(f.attrs["model_config"]) and '"Conv2D"' not in str(f.attrs["model_config"])
    with zipfile.ZipFile(path) as zf:
        assert b'"Conv2D"' in zf.read("config.json")
    message = _refusal(path)
    assert message.startswith(f"{name} is both an HDF5 file and a zip archive")
    assert f"model.save('{name}')" in message
    # one decision: precheck, inspection, fingerprints, the gathering step and the worker all refuse it
    assert precheck(path) == [message]
    with pytest.raises(InspectError, match="is both an HDF5 file and a zip archive"):
        inspect_model_file(path)
    assert weights_fingerprint(path) is None
    model = _inspect(SubmissionFile(name, path, "model", path.stat().st_size), (), GatherOptions())
    assert model.status == "error" and model.error == message and model.architecture is None
    with pytest.raises(FileKindError):
        _load(str(path), "2.15.0")


def test_the_worker_refuses_a_polyglot_it_is_handed_without_a_decision(tmp_path: Path) -> None:
    path = _polyglot(tmp_path / "model.keras")
    x = np.zeros((4, 28, 28), np.uint8)
    from grader.worker import adapt

    result = evaluate_one(WorkerModel(index=0, path=str(path)), x, x, np.zeros(4, np.uint8), adapt.Stats(0.3, 0.3),
                          tmp_path, 4)
    assert not result.ok and "is both an HDF5 file and a zip archive" in (result.error or "")


def test_a_zip_first_and_hdf5_after_it_is_refused(tmp_path: Path) -> None:
    """A .keras zip, then padding, then an HDF5 model at byte 262144: the HDF5 library finds it there."""
    data = K2_CNN_KERAS.read_bytes()
    data += bytes(262144 - len(data)) + K2_MLP.read_bytes()
    path = _write(tmp_path / "model.keras", data)
    assert h5py.is_hdf5(str(path))
    assert _refusal(path).startswith("model.keras is both an HDF5 file and a zip archive")


def test_tflite_with_a_keras_model_appended_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "model.tflite", TFLITE.read_bytes() + K2_CNN_KERAS.read_bytes())
    message = _refusal(path)
    assert message.startswith("model.tflite is both a TensorFlow Lite model and a zip archive")
    assert "tf.lite.TFLiteConverter" in message
    renamed = shutil.copy(path, tmp_path / "model.keras")
    assert _refusal(renamed).startswith("model.keras is both a TensorFlow Lite model and a zip archive")


def test_tflite_with_hdf5_inside_is_refused(tmp_path: Path) -> None:
    data = TFLITE.read_bytes()
    data += bytes(32768 - len(data)) + K2_MLP.read_bytes()  # an HDF5 file at byte 32768
    path = _write(tmp_path / "model.tflite", data)
    assert _refusal(path).startswith("model.tflite is both an HDF5 file and a TensorFlow Lite model")


# ---------------------------------------------------------------------------------------------
# Content that disagrees with the name (refused, with the fix)


def test_a_keras2_h5_saved_under_a_keras_name_is_refused_with_the_fix(tmp_path: Path) -> None:
    """An honest mistake, refused all the same (Keras 3 would not load it either); the message says how to fix it."""
    path = shutil.copy(K2_CNN_H5, tmp_path / "cnn.keras")
    message = _refusal(path)
    assert message == ("cnn.keras is named like a zip archive (a .keras model) but it is an HDF5 file (a Keras .h5 "
                       "model); the grader reads a file only when its name says what it is: rename it to cnn.h5, or "
                       "save it again with model.save('cnn.keras')")
    assert precheck(path) == [message]
    with pytest.raises(InspectError) as info:
        inspect_model_file(path)
    assert str(info.value) == message


@pytest.mark.parametrize(("src", "name", "found"), [
    (K2_CNN_KERAS, "cnn.h5", "a zip archive (a .keras model)"),
    (TFLITE, "model.h5", "a TensorFlow Lite model"),
    (K2_MLP, "mlp.tflite", "an HDF5 file"),
    (TFLITE_WITH_LABELS, "model.keras", "a TensorFlow Lite model"),
])
def test_content_that_is_not_what_the_name_says(tmp_path: Path, src: Path, name: str, found: str) -> None:
    path = shutil.copy(src, tmp_path / name)
    message = _refusal(path)
    assert message.startswith(f"{name} is named like ") and f"but it is {found}" in message


def test_a_file_with_no_model_format(tmp_path: Path) -> None:
    text = _write(tmp_path / "model.h5", b"my model is on google drive\n")
    assert "not a Keras model file" in _refusal(text) and "a text file" in _refusal(text)
    zeros = _refusal(_write(tmp_path / "m.tflite", b"\x00" * 64))
    assert "not a readable TensorFlow Lite model" in zeros and "a file starting" in zeros
    assert "an empty file" in _refusal(_write(tmp_path / "empty.keras", b""))


def test_a_labels_zip_on_a_tflite_holds_text_files_only(tmp_path: Path) -> None:
    """TFLite Support appends labels.txt; any other member makes it a second format."""
    data = TFLITE.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("labels.txt", "a\nb\n")
        zf.writestr("model.weights.h5", K2_MLP.read_bytes())
    path = _write(tmp_path / "model.tflite", data + buffer.getvalue())
    assert _refusal(path).startswith("model.tflite is both a TensorFlow Lite model and a zip archive")


# ---------------------------------------------------------------------------------------------
# HDF5 that points outside the file: refused by precheck, whatever holds it


def test_hdf5_external_storage_and_virtual_datasets_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f["data"] = np.arange(4, dtype="f4")
    external = shutil.copy(K2_MLP, tmp_path / "external.h5")
    with h5py.File(external, "a") as f:
        f["model_weights"].create_dataset("leak", shape=(10,), dtype="f4", external=[("/etc/hostname", 0, 40)])
    (problem,) = precheck(external)
    assert problem.startswith("external.h5: dataset 'model_weights/leak' keeps its data in another file")
    virtual = shutil.copy(K2_MLP, tmp_path / "virtual.h5")
    with h5py.File(virtual, "a") as f:
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource(str(outside), "data", shape=(4,))
        f["model_weights"].create_virtual_dataset("vds", layout)
    (problem,) = precheck(virtual)
    assert "virtual dataset mapped onto other files" in problem
    model = _inspect(SubmissionFile("virtual.h5", virtual, "model", virtual.stat().st_size), (), GatherOptions())
    assert model.status == "error" and "virtual dataset" in (model.error or "")


def test_external_link_in_the_weights_of_a_keras_zip_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(K2_CNN_KERAS) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    weights = _write(tmp_path / "w.h5", members["model.weights.h5"])
    with h5py.File(weights, "a") as f:
        f["leak"] = h5py.ExternalLink("/etc/passwd", "/")
    members["model.weights.h5"] = weights.read_bytes()
    path = tmp_path / "cnn.keras"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    assert sniff(path) == "keras"
    (problem,) = precheck(path)
    assert problem.startswith("cnn.keras!model.weights.h5: the HDF5 file links to another file ('/etc/passwd'")

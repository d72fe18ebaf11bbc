"""The hostile class, part three (issue 15, findings 6 and 11): model files that are not what they seem,
graded in one class with honest students. For each: the batch finishes, every honest grade equals the
same students graded alone, and the attacker gets the right outcome and a message that says why.

- polyglot: a dense HDF5 model with a `.keras` CNN appended. Before, precheck read the zip, inspection
  the HDF5 signature and the loader went by the extension: "dense only" passed while the CNN was scored.
- read-file: a Keras 2 TFOpLambda layer that calls `tf.io.read_file` on a host file. Before, it counted
  as "no code" and ran as a plain subprocess with `--sandbox none`; its predictions carried the file.
- renamed: an honest Keras 2 `.h5` handed in under a `.keras` name: refused with the fix, not guessed at.
- tf-ops: an honest Keras 2 model whose TFOpLambda layers are pure maths (tf.nn.relu): still evaluated
  without a sandbox.
Every model is built here with the real libraries (tf_keras for Keras 2); the hostile ones are then
changed the way an attacker would change the file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from grader.pipeline import grade
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
from tests._class import keras3_cnn, train_split
from tests.test_sandbox import _need_bwrap

ROOT = Path(__file__).resolve().parents[1]
K2_MLP = ROOT / "tests" / "fixtures" / "keras2" / "2.15.0-mlp.h5"  # a dense network saved by tf_keras 2.15
SECRET = b"a host file the model must never read"
HONEST = ("good", "tf-ops")


def k2_tf_ops_mlp(data: Path, path: Path) -> None:
    """An honest Keras 2 dense network with TF functions on its tensors (TFOpLambda: nn.relu, nn.softmax)."""
    import tensorflow as tf
    import tf_keras as k

    k.utils.set_random_seed(3)
    x, y = train_split(data, 3000)
    inputs = k.layers.Input((28, 28))
    hidden = tf.nn.relu(k.layers.Dense(32)(k.layers.Rescaling(1 / 255.0)(k.layers.Flatten()(inputs))))
    model = k.Model(inputs, tf.nn.softmax(k.layers.Dense(10)(hidden)))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.save(path)


def k2_read_file_model(path: Path, secret: Path) -> str:
    """A Keras 2 model whose outputs are the length of the host file `secret`, read by a TFOpLambda
    calling tf.io.read_file. tf.io.read_file cannot be called on a Keras tensor, so the model is built
    with tf.strings.strip in its place and the saved config is then changed, as an attacker would.
    Returns the name of the layer that reads the file."""
    import tensorflow as tf
    import tf_keras as k

    inputs = k.layers.Input((28, 28))
    logits = k.layers.Dense(10)(k.layers.Flatten()(inputs))
    where = tf.strings.regex_replace(tf.strings.as_string(tf.reduce_sum(inputs) * 0.0), ".*", str(secret))
    size = tf.cast(tf.strings.length(tf.strings.strip(where)), tf.float32)
    k.Model(inputs, logits * 0.0 + size).save(path)
    with h5py.File(path, "r+") as f:
        raw = f.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        (layer,) = [lay for lay in config["config"]["layers"] if lay["config"].get("function") == "strings.strip"]
        layer["config"]["function"] = "io.read_file"
        f.attrs["model_config"] = json.dumps(config)
    return str(layer["config"]["name"])


def _model(students: dict[str, Any], name: str) -> Any:
    (model,) = students[name].evidence.models
    return model


def _criterion(student: Any, criterion_id: str) -> Any:
    return next(c for c in student.criteria if c.id == criterion_id)


def _settings(out: Path, fmnist: Path, **extra: Any) -> Settings:
    return Settings(out=out, hidden_tests=fmnist, download=False, public_sample=200, project_root=ROOT,
                    **extra)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def file_class(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("hostile-files")
    secret = root / "secret.txt"
    secret.write_bytes(SECRET)
    subs = root / "class"
    for name in (*HONEST, "polyglot", "polyglot-h5", "read-file", "renamed"):
        (subs / name).mkdir(parents=True)
    keras3_cnn(fmnist_dir, subs / "good" / "cnn.keras")
    k2_tf_ops_mlp(fmnist_dir, subs / "tf-ops" / "mlp.h5")
    cnn = (subs / "good" / "cnn.keras").read_bytes()
    (subs / "polyglot" / "model.keras").write_bytes(K2_MLP.read_bytes() + cnn)
    (subs / "polyglot-h5" / "model.h5").write_bytes(K2_MLP.read_bytes() + cnn)
    reader = k2_read_file_model(subs / "read-file" / "model.h5", secret)
    shutil.copy(K2_MLP, subs / "renamed" / "mlp.keras")

    rubric = load_rubric(ROOT / "rubrics" / "hw9.yaml")  # "dense only", then the dense model's accuracy
    alone = grade(subs, rubric, _settings(root / "alone", fmnist_dir, only=HONEST, sandbox="none"))
    outcome = grade(subs, rubric, _settings(root / "out", fmnist_dir, sandbox="none", jobs=2))
    students = {s.student: s for s in outcome.results.students}
    return students, {s.student: s for s in alone.results.students}, reader, secret, subs


def test_the_batch_finishes_and_honest_grades_equal_their_grades_alone(file_class) -> None:  # type: ignore[no-untyped-def]
    students, alone, *_ = file_class
    assert all(s.status == "gathered" for s in students.values()), {n: s.status for n, s in students.items()}
    for name in HONEST:
        assert _model(students, name).status == "evaluated", _model(students, name).error
        assert students[name].points == alone[name].points
        assert students[name].best_accuracy == alone[name].best_accuracy


def test_pure_tf_functions_are_evaluated_without_a_sandbox(file_class) -> None:  # type: ignore[no-untyped-def]
    students, *_ = file_class
    model = _model(students, "tf-ops")
    assert model.architecture is not None and model.architecture.code_layers == ()
    assert {layer.summary for layer in model.architecture.layers if layer.class_name == "TFOpLambda"} == {
        "tf.nn.relu", "tf.nn.softmax"}
    assert (students["tf-ops"].best_accuracy or 0) > 0.5


@pytest.mark.parametrize("name", ["polyglot", "polyglot-h5"])
def test_a_polyglot_file_is_refused_and_scores_nothing(file_class, name: str) -> None:  # type: ignore[no-untyped-def]
    students, *_ = file_class
    model = _model(students, name)
    file = "model.keras" if name == "polyglot" else "model.h5"
    assert model.status == "error" and model.architecture is None and model.metrics is None
    assert (model.error or "").startswith(f"{file} is both an HDF5 file and a zip archive")
    assert f"model.save('{file}')" in (model.error or "")
    assert students[name].best_accuracy is None
    assert _criterion(students[name], "dense-only").outcome != "pass"
    assert _criterion(students[name], "accuracy").points == 0


def test_an_honest_rename_is_refused_with_the_fix(file_class) -> None:  # type: ignore[no-untyped-def]
    students, *_ = file_class
    model = _model(students, "renamed")
    assert model.status == "error" and "mlp.keras is named like a zip archive" in (model.error or "")
    assert "rename it to mlp.h5" in (model.error or "")


def test_a_tf_op_that_reads_a_file_is_code_and_is_not_run_without_a_sandbox(file_class) -> None:  # type: ignore[no-untyped-def]
    students, _, reader, *_ = file_class
    model = _model(students, "read-file")
    assert model.status == "needs_sandbox" and model.metrics is None and students["read-file"].best_accuracy is None
    assert model.architecture is not None and reader in model.architecture.code_layers
    assert "carry code" in (model.error or "") and reader in (model.error or "")


def test_control_the_file_reading_model_does_read_the_file(file_class) -> None:  # type: ignore[no-untyped-def]
    """The attack is real: loaded as the old grader loaded it (tf_keras, no sandbox), the model's
    outputs are the length of the host file."""
    import tf_keras

    *_, secret, subs = file_class
    loaded = tf_keras.models.load_model(subs / "read-file" / "model.h5", compile=False)
    outputs = loaded.predict(np.zeros((2, 28, 28), np.float32), verbose=0)
    assert np.all(outputs == len(secret.read_bytes()))


def test_in_the_sandbox_the_file_reading_model_cannot_see_the_host_file(file_class, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                        fmnist_dir: Path) -> None:
    """With bubblewrap the model's code does run (in the sandbox), and the host file is not there."""
    _need_bwrap()
    *_, subs = file_class
    outcome = grade(subs, load_rubric(ROOT / "rubrics" / "hw9.yaml"),
                    _settings(tmp_path / "out", fmnist_dir, only=("read-file",), sandbox="bwrap"))
    (student,) = outcome.results.students
    (model,) = student.evidence.models
    assert model.status == "error" and model.metrics is None, model
    assert "NotFound" in (model.error or "") or "No such file" in (model.error or ""), model.error

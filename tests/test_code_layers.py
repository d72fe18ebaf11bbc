"""Which layers "run code" (issue 15, finding 11): an ALLOWLIST of pure built-in layers and ops.

A model whose layers are not all known to be pure is evaluated only in the sandbox (or with the
teacher's --allow-unsandboxed-code); without one it is inspected and marked `needs_sandbox`. The
files are real: tf_keras (Keras 2) and Keras 3 models saved here; hostile variants change one
function name or class in the saved config, as an attacker editing the file would.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import pytest

from grader.inputs.discover import SubmissionFile
from grader.facts.gather import GatherOptions, _inspect
from grader.facts.keras_file import inspect_model_file
from tests._models import Built, rewrite_keras_zip, set_h5_config, shared_built


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return shared_built(tmp_path_factory)


def _h5_config(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _with_function(src: Path, dst: Path, layer_class: str, function: Any) -> tuple[Path, str]:
    """A copy of the legacy .h5 `src` whose first `layer_class` layer calls `function` instead."""
    config = _h5_config(src)
    layer = next(lay for lay in config["config"]["layers"] if lay["class_name"] == layer_class)
    layer["config"]["function"] = function
    return set_h5_config(src, dst, json.dumps(config)), layer["config"]["name"]


def _code(path: Path) -> tuple[str, ...]:
    return inspect_model_file(path).code_layers


# ---------------------------------------------------------------------------------------------
# Keras 2: TFOpLambda / SlicingOpLambda name a TF function; only pure maths and shapes are plain


@pytest.mark.parametrize("function", [
    "io.read_file", "py_function", "numpy_function", "raw_ops.ReadFile", "compat.v1.read_file", "compat.v1.py_func",
    "strings.regex_replace", "io.write_file", "print", "nn.experimental.stateless_dropout", "math", "", None, 42,
])
def test_tf_functions_outside_the_allowlist_are_code(built: Built, tmp_path: Path, function: Any) -> None:
    path, name = _with_function(built.path("k2_tf_ops", "h5"), tmp_path / "ops.h5", "TFOpLambda", function)
    assert _code(path) == (name,)
    model = _inspect(SubmissionFile("ops.h5", path, "model", path.stat().st_size), (), GatherOptions())
    assert model.status == "needs_sandbox" and name in (model.error or "")


@pytest.mark.parametrize("function", ["nn.relu", "math.reduce_mean", "compat.v1.transpose", "image.resize", "reshape",
                                      "__operators__.add", "math.truediv"])
def test_pure_tf_functions_stay_plain(built: Built, tmp_path: Path, function: str) -> None:
    path, _ = _with_function(built.path("k2_tf_ops", "h5"), tmp_path / "ops.h5", "TFOpLambda", function)
    assert _code(path) == ()


def test_slicing_is_plain_only_as_getitem(built: Built, tmp_path: Path) -> None:
    src = built.path("k2_tf_ops", "h5")
    assert _code(src) == ()  # tf.image.grayscale_to_rgb, tf.image.resize and x[:, 2:30, 2:30, :]
    path, name = _with_function(src, tmp_path / "slice.h5", "SlicingOpLambda", "io.read_file")
    assert _code(path) == (name,)
    path, name = _with_function(src, tmp_path / "slice2.h5", "SlicingOpLambda", "nn.relu")
    assert _code(path) == (name,)


def test_a_keras2_zip_with_a_file_op_is_code(built: Built, tmp_path: Path) -> None:
    """The same rule in a .keras archive written by tf_keras (the class carries tf_keras' module)."""
    src = built.path("k2_tf_ops", "keras")
    with zipfile.ZipFile(src) as zf:
        config = json.loads(zf.read("config.json"))
    layer = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "TFOpLambda")
    assert layer["module"].startswith("tf_keras.")
    layer["config"]["function"] = "io.read_file"
    path = rewrite_keras_zip(src, tmp_path / "ops.keras", config=json.dumps(config).encode())
    assert _code(path) == (layer["config"]["name"],)


@pytest.mark.parametrize("class_name", ["DenseFeatures", "Layer", "Wrapper", "FancyDense", "lambda"])
def test_unknown_legacy_classes_are_code(built: Built, tmp_path: Path, class_name: str) -> None:
    config = _h5_config(built.path("k2_dense_784", "h5"))
    dense = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "Dense")
    dense["class_name"] = class_name
    path = set_h5_config(built.path("k2_dense_784", "h5"), tmp_path / "m.h5", json.dumps(config))
    assert _code(path) == (dense["config"]["name"],)


# ---------------------------------------------------------------------------------------------
# Keras 3: a class is plain by its module and name; keras.ops calls are plain unless they take a callable


def k3_ops_model() -> Any:
    """keras.ops called on symbolic tensors in a functional model (Keras 3's counterpart of TFOpLambda)."""
    import keras

    x = keras.Input((28, 28, 1))
    y = keras.ops.image.resize(x, (32, 32))[:, 2:30, 2:30, :]
    y = keras.ops.cast(keras.ops.add(y, 1.0), "float32")
    y = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(keras.ops.nn.relu(y)))
    return keras.Model(x, y)


@pytest.fixture(scope="module")
def k3_ops(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("k3ops") / "ops.keras"
    k3_ops_model().save(path)
    return path


def _k3_config(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json"))


def test_keras3_ops_are_plain(k3_ops: Path) -> None:
    modules = {lay["module"] for lay in _k3_config(k3_ops)["config"]["layers"]}
    assert {"keras.src.ops.numpy", "keras.src.ops.image", "keras.src.ops.core"} <= modules  # the file has ops
    assert _code(k3_ops) == ()


@pytest.mark.parametrize(("module", "class_name", "registered"), [
    ("keras.src.ops.core", "WhileLoop", None),  # control flow that takes Python callables
    ("keras.src.ops.core", "Map", None),
    ("keras.layers", "Layer", None),
    ("keras.layers", "Lambda", None),
    ("keras.layers", "Dense", "mypkg>Dense"),  # a class the student registered under a built-in name
    ("keras.src.saving.file_editor", "Add", None),
    ("mypkg.layers", "Add", None),
    ("keras.src.applications.convnext", "Dense2", None),
])
def test_keras3_classes_outside_the_allowlist_are_code(k3_ops: Path, tmp_path: Path, module: str, class_name: str,
                                                       registered: str | None) -> None:
    config = _k3_config(k3_ops)
    target = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "Add")
    target.update(module=module, class_name=class_name, registered_name=registered)
    path = rewrite_keras_zip(k3_ops, tmp_path / "ops.keras", config=json.dumps(config).encode())
    assert _code(path) == (target["config"]["name"],)


@pytest.mark.parametrize(("module", "function", "code"), [
    ("keras.src.activations.activations", "relu", False),
    ("keras.activations", "gelu", False),
    ("keras.src.ops.numpy", "tanh", False),
    ("keras.utils", "get_file", True),  # Keras would import the module and call any function of it
    ("keras.src.saving.saving_api", "load_model", True),
    ("keras.src.ops.core", "map", True),
    ("builtins", "relu", True),
    ("os", "system", True),
])
def test_keras3_function_references_are_plain_only_from_pure_modules(k3_ops: Path, tmp_path: Path, module: str,
                                                                     function: str, code: bool) -> None:
    config = _k3_config(k3_ops)
    dense = next(lay for lay in config["config"]["layers"] if lay["class_name"] == "Dense")
    dense["config"]["activation"] = {"module": module, "class_name": "function", "config": function,
                                     "registered_name": None}
    path = rewrite_keras_zip(k3_ops, tmp_path / "fn.keras", config=json.dumps(config).encode())
    assert _code(path) == ((dense["config"]["name"],) if code else ())

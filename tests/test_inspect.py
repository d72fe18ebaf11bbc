"""grader.facts.keras_file: static reading of real .keras / .h5 files written by keras 3 and tf_keras."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from grader.records.evidence import Architecture, LayerInfo
from grader.facts.keras_file import InspectError, inspect_model_file, read_layer_kernel
from tests._models import Built, nested_config, rewrite_keras_zip, set_h5_config, shared_built, zip_bytes


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return shared_built(tmp_path_factory)


def _by_name(arch: Architecture) -> dict[str, LayerInfo]:
    return {"/".join(layer.path): layer for layer in arch.layers}


# ---------------------------------------------------------------------------------------------
# Shapes, outputs, formats


@pytest.mark.parametrize(
    ("key", "shape"),
    [
        ("k3_dense_784", (None, 784)),
        ("k3_dense_28x28", (None, 28, 28)),
        ("k3_dense_28x28x1", (None, 28, 28, 1)),
        ("k3_cnn_32x32x3", (None, 32, 32, 3)),
        ("k2_dense_784", (None, 784)),
        ("k2_dense_28x28", (None, 28, 28)),
        ("k2_lambda_cnn", (None, 28, 28, 1)),
    ],
)
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_input_shape_is_the_full_batch_shape(built: Built, key: str, shape: tuple, ext: str) -> None:
    arch = inspect_model_file(built.path(key, ext))
    assert arch.input_shape == shape
    assert arch.output_units == 10
    assert arch.output_activation == "softmax"


@pytest.mark.parametrize(
    ("key", "ext", "version", "model_class"),
    [
        ("k3_cnn", "keras", "3.", "Sequential"),
        ("k3_cnn", "h5", "3.", "Sequential"),
        ("k2_lambda_cnn", "h5", "2.", "Sequential"),
        ("k2_lambda_cnn", "keras", "2.", "Sequential"),
        ("k3_vgg_inlined", "keras", "3.", "Functional"),
        ("k2_vgg_inlined", "h5", "2.", "Functional"),
    ],
)
def test_format_version_and_class(built: Built, key: str, ext: str, version: str, model_class: str) -> None:
    arch = inspect_model_file(built.path(key, ext))
    assert arch.format == ext
    assert arch.keras_version is not None and arch.keras_version.startswith(version)
    assert arch.model_class == model_class


@pytest.mark.parametrize(
    "key",
    ["k3_dense_784", "k3_cnn", "k3_code", "k3_vgg_frozen", "k3_vgg_block5", "k3_vgg_func_nested", "k3_vgg_inlined",
     "k3_vgg19", "k2_dense_28x28", "k2_lambda_cnn", "k2_vgg_pretrained", "k2_vgg_inlined"],
)
@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_param_counts_equal_keras_own(built: Built, key: str, ext: str) -> None:
    total, trainable = built.counts(key)
    arch = inspect_model_file(built.path(key, ext))
    assert arch.total_params == total
    assert arch.trainable_params == trainable
    top = [layer for layer in arch.layers if layer.depth == 0]
    assert sum(layer.params or 0 for layer in top) == total  # containers hold the sum of their children


def test_layers_are_flattened_depth_first_with_effective_trainable(built: Built) -> None:
    arch = inspect_model_file(built.path("k3_vgg_frozen", "keras"))
    paths = [layer.path for layer in arch.layers]
    container = next(layer for layer in arch.layers if layer.is_container)
    assert container.path == ("vgg16",) and container.class_name == "Functional"
    assert container.params == 14_714_688
    start = paths.index(("vgg16",))
    children = [layer for layer in arch.layers[start + 1:] if layer.path[0] == "vgg16"]
    assert len(children) == 19  # InputLayer + 13 conv + 5 pool, right after their container
    assert all(layer.path[:1] == ("vgg16",) and not layer.trainable for layer in children)
    assert [layer.class_name for layer in arch.layers[-2:]] == ["Flatten", "Dense"]
    assert [len(p) for p in paths[-2:]] == [1, 1]
    conv = _by_name(arch)["vgg16/block1_conv1"]
    assert conv.class_name == "Conv2D" and conv.params == 3 * 3 * 3 * 64 + 64


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_layers_renamed_after_build_keep_their_weights(built: Built, ext: str) -> None:
    """Legacy files name weights by the layer names at build time ('block1_conv1/kernel'); a base whose
    layers were renamed afterwards is matched by position and shape instead."""
    arch = inspect_model_file(built.path("k3_vgg_func_nested", ext))
    backbone = built.model("k3_vgg_func_nested").get_layer("backbone")
    got = {layer.path[-1]: layer.params for layer in arch.layers if layer.path[:1] == ("backbone",) and len(layer.path) == 2}
    assert got == {layer.name: layer.count_params() for layer in backbone.layers}


def test_fine_tuning_a_block_of_the_base(built: Built) -> None:
    arch = inspect_model_file(built.path("k3_vgg_block5", "keras"))
    layers = _by_name(arch)
    assert layers["vgg16/block5_conv3"].trainable
    assert not layers["vgg16/block4_conv3"].trainable
    assert arch.trainable_params == built.counts("k3_vgg_block5")[1]


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize(("key", "trains"), [("k3_unfrozen_seq", True), ("k2_unfrozen_func", False)])
def test_layer_unfrozen_inside_a_frozen_container(built: Built, key: str, trains: bool, ext: str) -> None:
    """Keras 3 trains a layer re-enabled inside a frozen container; Keras 2 freezes everything inside
    it. The effective flag follows the Keras that wrote the file, and so equals Keras' own count."""
    arch = inspect_model_file(built.path(key, ext))
    inner = [layer for layer in arch.layers if layer.path[0] == "inner" and layer.params]
    assert not inner[0].trainable  # the container itself
    assert [layer.trainable for layer in inner[1:]] == [trains, False]
    assert arch.trainable_params == built.counts(key)[1]


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras2_sequential_does_not_save_its_trainable_flag(built: Built, ext: str) -> None:
    """tf_keras' Sequential.get_config has no 'trainable': the file cannot say that the container was
    frozen, so the count is what reloading the file gives, not what the live model trained."""
    import tf_keras

    path = built.path("k2_unfrozen_seq", ext)
    arch = inspect_model_file(path)
    live = built.counts("k2_unfrozen_seq")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = tf_keras.models.load_model(path)
    assert arch.trainable_params == sum(int(np.prod(w.shape)) for w in reloaded.trainable_weights) == live + 15


def test_summaries_are_short_and_human(built: Built) -> None:
    arch = inspect_model_file(built.path("k3_cnn", "keras"))
    summaries = {layer.class_name: layer.summary for layer in arch.layers}
    assert summaries["Conv2D"] in ("16 filters 3×3, relu", "32 filters 3×3, stride 2, relu")
    assert summaries["MaxPooling2D"] == "pool 2×2"
    assert summaries["Dense"] == "10 units, softmax"
    assert "pool 2×2" in {layer.summary for layer in arch.layers}
    dense = inspect_model_file(built.path("k3_dense_784", "h5"))
    assert {layer.summary for layer in dense.layers} >= {"32 units, relu", "rate 0.25", "10 units, softmax"}


# ---------------------------------------------------------------------------------------------
# Code-carrying layers


def test_lambda_and_custom_layers_are_flagged(built: Built) -> None:
    arch = inspect_model_file(built.path("k3_code", "keras"))
    flagged = {layer.class_name for layer in arch.layers if layer.has_code}
    assert flagged == {"Lambda", "Scale", "Identity2"}
    assert len(arch.code_layers) == 3
    scale = next(layer for layer in arch.layers if layer.class_name == "Scale")
    assert scale.params == 784  # a custom layer's weights still count


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras2_lambda_is_flagged(built: Built, ext: str) -> None:
    arch = inspect_model_file(built.path("k2_lambda_cnn", ext))
    assert [layer.class_name for layer in arch.layers if layer.has_code] == ["Lambda"]
    lam = next(layer for layer in arch.layers if layer.class_name == "Lambda")
    assert arch.code_layers == (lam.name,) and lam.summary == "custom code (Lambda)"


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras2_tf_op_layers_carry_no_code(built: Built, ext: str) -> None:
    arch = inspect_model_file(built.path("k2_tf_ops", ext))
    ops = [layer for layer in arch.layers if layer.class_name in ("TFOpLambda", "SlicingOpLambda")]
    assert [layer.summary for layer in ops] == ["tf.image.grayscale_to_rgb", "tf.image.resize", "tf.__operators__.getitem"]
    assert arch.code_layers == ()
    assert arch.total_params == built.counts("k2_tf_ops")[0]


@pytest.mark.parametrize("key", ["k3_cnn", "k3_vgg_func_nested", "k2_vgg_inlined"])
def test_plain_models_carry_no_code(built: Built, key: str) -> None:
    for ext in ("keras", "h5"):
        assert inspect_model_file(built.path(key, ext)).code_layers == ()


# ---------------------------------------------------------------------------------------------
# Layout variants


def test_keras_zip_without_stored_layer_names_uses_generated_names(built: Built, tmp_path: Path) -> None:
    """Keras 3 before the `name` attribute: weights are found by snake_case class names alone."""
    src = built.path("k3_vgg_func_nested", "keras")
    stripped = rewrite_keras_zip(src, tmp_path / "old.keras", strip_names=True)
    with zipfile.ZipFile(stripped) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as f:
        names: list[str] = []
        f.visititems(lambda key, obj: names.append(key) if "name" in obj.attrs else None)
    assert names == []  # the rewrite really removed them
    assert inspect_model_file(stripped).model_dump() == inspect_model_file(src).model_dump()


def test_old_keras2_file_with_bytes_attributes_and_list_config(built: Built, tmp_path: Path) -> None:
    """Keras <= 2.2 wrote attributes as bytes and a Sequential config as a bare list of layers."""
    src = built.path("k2_dense_28x28", "h5")
    path = tmp_path / "old.h5"
    shutil.copy(src, path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        old = {"class_name": "Sequential", "config": config["config"]["layers"]}
        f.attrs["model_config"] = np.bytes_(json.dumps(old).encode())
        f.attrs["keras_version"] = np.bytes_(b"2.1.6")
    arch, new = inspect_model_file(path), inspect_model_file(src)
    assert arch.keras_version == "2.1.6"
    assert arch.layers == new.layers and arch.input_shape == (None, 28, 28)
    assert arch.total_params == built.counts("k2_dense_28x28")[0]


def test_deflated_keras_zip_reads_the_same(built: Built, tmp_path: Path) -> None:
    src = built.path("k3_cnn", "keras")
    assert inspect_model_file(rewrite_keras_zip(src, tmp_path / "z.keras", compress=True)) == inspect_model_file(src)


def test_read_layer_kernel_from_both_layouts(built: Built) -> None:
    model = built.model("k3_vgg_block5")
    expected = model.get_layer("vgg16").get_layer("block1_conv1").get_weights()[0]
    for ext in ("keras", "h5"):
        kernel = read_layer_kernel(built.path("k3_vgg_block5", ext), ("vgg16", "block1_conv1"))
        assert kernel is not None and kernel.shape == (3, 3, 3, 64)
        assert (kernel == expected).all()
    assert read_layer_kernel(built.path("k3_vgg_block5", "keras"), ("flatten",)) is None


def test_inspection_never_imports_keras(built: Built) -> None:
    path = built.path("k3_vgg_func_nested", "keras")
    code = (
        "import sys; from pathlib import Path; from grader.facts.keras_file import inspect_model_file;"
        f"a = inspect_model_file(Path({str(path)!r})); assert a.bases;"
        "bad = [m for m in ('keras', 'tensorflow', 'tf_keras') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


# ---------------------------------------------------------------------------------------------
# Errors a student can understand


def _error(path: Path) -> str:
    with pytest.raises(InspectError) as info:
        inspect_model_file(path)
    message = str(info.value)
    assert path.name in message
    assert "Traceback" not in message
    return message


def test_not_a_model_file(tmp_path: Path) -> None:
    path = tmp_path / "model.h5"
    path.write_text("these are my weights, promise")
    assert "not a Keras model file" in _error(path)


@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("fraction", [0.5, 0.01])
def test_truncated_file(built: Built, tmp_path: Path, ext: str, fraction: float) -> None:
    data = built.path("k3_cnn", ext).read_bytes()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: int(len(data) * fraction)])
    message = _error(path)
    assert "truncated or damaged" in message or "not a Keras model file" in message


def test_weights_only_files(built: Built, tmp_path: Path) -> None:
    k2_weights = tmp_path / "k2.h5"
    built.model("k2_dense_784").save_weights(k2_weights)
    k3_weights = tmp_path / "k3.weights.h5"
    built.model("k3_dense_784").save_weights(k3_weights)
    for path in (k2_weights, k3_weights):
        assert "holds weights only (model.save_weights); save the whole model with model.save(" in _error(path)


def test_savedmodel_folder(built: Built, tmp_path: Path) -> None:
    folder = tmp_path / "exported"
    built.model("k3_dense_784").export(folder, verbose=False)
    assert "SavedModel" in _error(folder)
    assert "SavedModel" in _error(folder / "saved_model.pb")


def test_invalid_json_config(built: Built, tmp_path: Path) -> None:
    h5 = set_h5_config(built.path("k3_cnn", "h5"), tmp_path / "bad.h5", "{not json")
    assert "not valid JSON" in _error(h5)
    zipped = rewrite_keras_zip(built.path("k3_cnn", "keras"), tmp_path / "bad.keras", config=b"{\"class_name\": ")
    assert "not valid JSON" in _error(zipped)


def test_unexpected_config_structure(built: Built, tmp_path: Path) -> None:
    assert "unexpected structure" in _error(set_h5_config(built.path("k3_cnn", "h5"), tmp_path / "a.h5", "[1, 2]"))
    deep = set_h5_config(built.path("k3_cnn", "h5"), tmp_path / "deep.h5", nested_config(200))
    assert "nested more than" in _error(deep)


def test_zip_member_escaping_its_folder(built: Built, tmp_path: Path) -> None:
    evil = rewrite_keras_zip(built.path("k3_cnn", "keras"), tmp_path / "evil.keras", extra={"../../etc/cron.d/x": b"x"})
    assert "escapes its folder" in _error(evil)


def test_zip_that_is_not_a_keras_archive(tmp_path: Path) -> None:
    path = tmp_path / "homework.keras"
    path.write_bytes(zip_bytes({"notebook.ipynb": b"{}"}))
    assert "without config.json" in _error(path)


def test_keras_zip_without_weights_still_gives_architecture(built: Built, tmp_path: Path) -> None:
    src = built.path("k3_cnn", "keras")
    with zipfile.ZipFile(src) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if n != "model.weights.h5"}
    path = tmp_path / "noweights.keras"
    path.write_bytes(zip_bytes(members))
    arch = inspect_model_file(path)
    assert arch.total_params is None and arch.input_shape == (None, 28, 28, 1)
    assert json.loads(arch.model_dump_json())["layers"]

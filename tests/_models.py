"""Real Keras models for the inspection tests, built with keras 3 and with tf_keras (Keras 2 API).

Files written by the real libraries are the only honest test data for a static reader: the layouts
differ between versions in ways nobody documents (see grader/facts/keras_file.py). Both libraries coexist in
one process (keras 3.15 + tf_keras 2.21 on TF 2.21), so no subprocess is needed.
"""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Literal

import h5py
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FineTune = Literal["frozen", "block5", "trainable"]


def k3() -> Any:
    import keras

    return keras


def k2() -> Any:
    import tf_keras

    return tf_keras


def keras_counts(model: Any) -> tuple[int, int]:
    """(all weights, trainable weights) as Keras itself counts them."""
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return int(model.count_params()), trainable


def _rename(layer: Any, name: str) -> None:
    """Keras 3 lets `name` be set; tf_keras keeps it in `_name`."""
    try:
        layer.name = name
    except AttributeError:
        layer._name = name


def rename_all(model: Any, prefix: str) -> None:
    """Give every layer a name that says nothing about VGG, to prove detection ignores names."""
    for i, layer in enumerate(model.layers):
        _rename(layer, f"{prefix}{i}")


def fine_tune(base: Any, mode: FineTune) -> None:
    """frozen: the whole base; block5: all but the last block (the hw10 recipe); trainable: nothing."""
    base.trainable = mode != "frozen"
    if mode == "block5":  # VGG16's last four layers: block5_conv1..3 and block5_pool
        for layer in base.layers[:-4]:
            layer.trainable = False


# ---------------------------------------------------------------------------------------------
# keras 3


def k3_dense(input_shape: tuple[int, ...]) -> Any:
    keras = k3()
    layers = [keras.Input(input_shape)]
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(32, activation="relu"), keras.layers.Dropout(0.25),
               keras.layers.Dense(10, activation="softmax")]
    return keras.Sequential(layers)


def k3_cnn(input_shape: tuple[int, ...] = (28, 28, 1), vgg_named: bool = False) -> Any:
    """A plain CNN; with `vgg_named` its nested block and a layer carry VGG names (and are no VGG)."""
    keras = k3()
    L = keras.layers
    block = keras.Sequential([L.Conv2D(16, 3, activation="relu", padding="same"), L.MaxPooling2D()],
                             name="vgg16" if vgg_named else "block")
    return keras.Sequential([
        keras.Input(input_shape),
        block,
        L.Conv2D(32, 3, strides=2, activation="relu", name="block1_conv1" if vgg_named else None),
        L.BatchNormalization(),
        L.GlobalAveragePooling2D(),
        L.Dense(10, activation="softmax"),
    ], name="cnn")


def k3_vgg_sequential(mode: FineTune = "frozen", *, vgg19: bool = False, weights_from: Any = None,
                      rename: str | None = None) -> Any:
    """Sequential([Input, VGG base (nested), Flatten, Dense]); optionally copies weights of another
    base, or renames the base (to `rename`) and all its layers."""
    keras = k3()
    make = keras.applications.VGG19 if vgg19 else keras.applications.VGG16
    base = make(weights=None, include_top=False, input_shape=(32, 32, 3))
    if weights_from is not None:
        base.set_weights(weights_from.get_weights())
    if rename:
        rename_all(base, "s")
        base.name = rename
    fine_tune(base, mode)
    return keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def k3_vgg_functional_nested() -> Any:
    """Functional model calling a renamed VGG16 as one layer, behind a Resizing and a 1->3 channel conv."""
    keras = k3()
    L = keras.layers
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    rename_all(base, "f")
    base.name = "backbone"
    fine_tune(base, "block5")
    x = keras.Input((28, 28, 1))
    y = L.Resizing(32, 32)(x)
    y = L.Conv2D(3, 1, name="to_rgb")(y)
    y = base(y)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(10, activation="softmax")(y)
    return keras.Model(x, y, name="transfer")


def k3_vgg_inlined() -> Any:
    """VGG16 layers inlined into the student's model with `input_tensor=`, every layer renamed."""
    keras = k3()
    L = keras.layers
    x = keras.Input((32, 32, 3))
    base = keras.applications.VGG16(weights=None, include_top=False, input_tensor=x)
    rename_all(base, "layer_")
    for layer in base.layers[:-4]:
        layer.trainable = False
    y = L.Flatten()(base.output)
    y = L.Dense(64, activation="relu")(y)
    y = L.Dense(10, activation="softmax")(y)
    return keras.Model(x, y)


def k3_code_model() -> Any:
    """A Lambda and two custom layers (one registered, one not) between ordinary layers."""
    keras = k3()
    L = keras.layers

    @keras.saving.register_keras_serializable(package="student")
    class Scale(L.Layer):
        def build(self, input_shape: Any) -> None:
            self.w = self.add_weight(shape=(input_shape[-1],), initializer="ones")

        def call(self, x: Any) -> Any:
            return x * self.w

    class Identity2(L.Layer):
        def call(self, x: Any) -> Any:
            return x

    return keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Lambda(lambda t: t / 255.0), Scale(),
                             Identity2(), L.Dense(10, activation="softmax")])


# ---------------------------------------------------------------------------------------------
# tf_keras (Keras 2 API)


def k2_dense(input_shape: tuple[int, ...]) -> Any:
    """Keras 2 style: `input_shape=` on the first layer, so the config carries `batch_input_shape`."""
    keras = k2()
    L = keras.layers
    if len(input_shape) > 1:
        first = [L.Flatten(input_shape=input_shape), L.Dense(32, activation="relu")]
    else:
        first = [L.Dense(32, activation="relu", input_shape=input_shape)]
    return keras.Sequential([*first, L.Dense(10, activation="softmax")])


def k2_vgg_sequential(mode: FineTune = "block5", base: Any = None) -> Any:
    keras = k2()
    base = base or keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    fine_tune(base, mode)
    return keras.Sequential([keras.layers.InputLayer((32, 32, 3)), base, keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])


def k2_vgg_base() -> Any:
    return k2().applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))


def k2_vgg_inlined() -> Any:
    keras = k2()
    x = keras.layers.Input((32, 32, 3))
    base = keras.applications.VGG16(weights=None, include_top=False, input_tensor=x)
    rename_all(base, "k2_")
    y = keras.layers.GlobalAveragePooling2D()(base.output)
    y = keras.layers.Dense(10, activation="softmax")(y)
    return keras.Model(x, y)


def k2_lambda_cnn() -> Any:
    keras = k2()
    L = keras.layers
    return keras.Sequential([L.Lambda(lambda t: t / 255.0, input_shape=(28, 28, 1)), L.Conv2D(8, 3, activation="relu"),
                             L.MaxPooling2D(), L.Flatten(), L.Dense(10, activation="softmax")])


def k2_tf_ops() -> Any:
    """TF functions called on Keras 2 tensors (the usual gray->RGB + resize before a base) become
    TFOpLambda / SlicingOpLambda layers: they name a TF function and carry no code."""
    import tensorflow as tf

    keras = k2()
    x = keras.layers.Input((28, 28, 1))
    y = tf.image.resize(tf.image.grayscale_to_rgb(x), (32, 32))[:, 2:30, 2:30, :]
    y = keras.layers.Conv2D(4, 3)(y)
    y = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(y))
    return keras.Model(x, y)


def unfrozen_inside_frozen(lib: Literal["k3", "k2"], container: Literal["sequential", "functional"]) -> Any:
    """A frozen nested model whose first Dense is unfrozen afterwards (hw10's classic slip:
    ``base.trainable = False`` then ``base.layers[-4:]`` set trainable). Keras 3 trains that layer;
    Keras 2 does not."""
    keras = k3() if lib == "k3" else k2()
    L = keras.layers

    def first() -> Any:
        return keras.Input((4,)) if lib == "k3" else L.InputLayer((4,))

    if container == "sequential":
        inner = keras.Sequential([first(), L.Dense(3), L.Dense(3)], name="inner")
    else:
        x = L.Input((4,))
        inner = keras.Model(x, L.Dense(3)(L.Dense(3)(x)), name="inner")
    inner.trainable = False
    next(layer for layer in inner.layers if layer.weights).trainable = True
    return keras.Sequential([first(), inner, L.Dense(2, activation="softmax")])


# ---------------------------------------------------------------------------------------------
# Files


def save(model: Any, path: Path) -> Path:
    """model.save, with the HDF5 'legacy format' warnings kept out of the test output."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(path)
    return path


def rewrite_keras_zip(src: Path, dst: Path, *, strip_names: bool = False, compress: bool = False,
                      config: bytes | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """A copy of a .keras archive, changed the way an older Keras or a hand re-zip would change it.

    strip_names: remove the `name` attribute of the `vars` groups (Keras 3 before ~3.1x wrote none),
    compress: DEFLATE every member, config: replace config.json, extra: add members.
    """
    with zipfile.ZipFile(src) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    if strip_names:
        scratch = dst.with_suffix(".tmp.h5")
        scratch.write_bytes(members["model.weights.h5"])
        with h5py.File(scratch, "r+") as f:
            def strip(_: str, obj: Any) -> None:
                if isinstance(obj, h5py.Group) and "name" in obj.attrs:
                    del obj.attrs["name"]
            f.visititems(strip)
        members["model.weights.h5"] = scratch.read_bytes()
        scratch.unlink()
    if config is not None:
        members["config.json"] = config
    members.update(extra or {})
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return dst


def set_h5_config(src: Path, dst: Path, config: str) -> Path:
    """A copy of a legacy .h5 model whose `model_config` attribute is replaced."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        f.attrs["model_config"] = config
    return dst


def nested_config(depth: int) -> str:
    """A Sequential config nested `depth` containers deep (a hostile or broken file)."""
    layer: dict[str, Any] = {"class_name": "Dense", "config": {"name": "d", "units": 1}}
    for i in range(depth):
        layer = {"class_name": "Sequential", "config": {"name": f"s{i}", "layers": [layer]}}
    return json.dumps(layer)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Built once per test session


def _recipes() -> dict[str, Callable[[Built], Any]]:
    return {
        "k3_dense_784": lambda b: k3_dense((784,)),
        "k3_dense_28x28": lambda b: k3_dense((28, 28)),
        "k3_dense_28x28x1": lambda b: k3_dense((28, 28, 1)),
        "k3_cnn": lambda b: k3_cnn(),
        "k3_cnn_32x32x3": lambda b: k3_cnn((32, 32, 3)),
        "k3_cnn_vgg_named": lambda b: k3_cnn(vgg_named=True),
        "k3_code": lambda b: k3_code_model(),
        "k3_vgg_frozen": lambda b: k3_vgg_sequential("frozen"),
        "k3_vgg_block5": lambda b: k3_vgg_sequential("block5"),
        "k3_vgg19": lambda b: k3_vgg_sequential("trainable", vgg19=True, rename="features"),
        "k3_vgg_func_nested": lambda b: k3_vgg_functional_nested(),
        "k3_vgg_inlined": lambda b: k3_vgg_inlined(),
        "k3_vgg_copied": lambda b: k3_vgg_sequential("block5", weights_from=b.model("k2_vgg_base")),
        "k2_dense_784": lambda b: k2_dense((784,)),
        "k2_dense_28x28": lambda b: k2_dense((28, 28)),
        "k2_lambda_cnn": lambda b: k2_lambda_cnn(),
        "k2_tf_ops": lambda b: k2_tf_ops(),
        "k3_unfrozen_seq": lambda b: unfrozen_inside_frozen("k3", "sequential"),
        "k2_unfrozen_func": lambda b: unfrozen_inside_frozen("k2", "functional"),
        "k2_unfrozen_seq": lambda b: unfrozen_inside_frozen("k2", "sequential"),
        "k2_vgg_base": lambda b: k2_vgg_base(),
        "k2_vgg_pretrained": lambda b: k2_vgg_sequential("block5", base=b.model("k2_vgg_base")),
        "k2_vgg_inlined": lambda b: k2_vgg_inlined(),
    }


class Built:
    """Models and their saved files, each built on first request and kept for the session.

    VGG16 files are ~59 MB and take a second or two each, so every test that needs one shares it.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._recipes = _recipes()
        self._models: dict[str, Any] = {}
        self._paths: dict[tuple[str, str], Path] = {}

    def model(self, key: str) -> Any:
        if key not in self._models:
            self._models[key] = self._recipes[key](self)
        return self._models[key]

    def path(self, key: str, ext: str) -> Path:
        """The model saved as `key.ext` (ext: 'keras' or 'h5')."""
        if (key, ext) not in self._paths:
            self._paths[key, ext] = save(self.model(key), self.root / f"{key}.{ext}")
        return self._paths[key, ext]

    def counts(self, key: str) -> tuple[int, int]:
        return keras_counts(self.model(key))

    def reference_weights(self) -> Path:
        """The official notop file's layout (Keras 2 `save_weights` to .h5), from a weights=None base."""
        path = self.root / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
        if not path.exists():
            self.model("k2_vgg_base").save_weights(path)
        return path


def shared_built(factory: Any) -> Built:
    """One `Built` per pytest session, shared by all test modules (a session fixture defined in each
    module would build its own copies, and tests/conftest.py belongs to others)."""
    return _built_at(factory.getbasetemp())


@functools.cache
def _built_at(basetemp: Path) -> Built:
    root = basetemp / "models"
    root.mkdir(exist_ok=True)
    return Built(root)

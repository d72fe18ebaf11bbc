"""Reading a saved Keras model's architecture STATICALLY, from the file alone.

The JSON config inside a legacy HDF5 file (`.h5`) or a Keras v3 zip (`.keras`) answers most rubric
questions (layers, shapes, frozen parts, known bases). Nothing here imports keras or tensorflow,
deserialises a layer or runs student code: only h5py, zipfile and json. Weight counts come from
dataset SHAPES; no weight data is read, except one kernel on request (`read_layer_kernel`).

Where the weights of a layer live (found by saving real models with keras 3.15 and tf_keras 2.21):
- legacy `.h5`: group ``model_weights/<top-level layer name>``, its attribute ``weight_names`` lists
  dataset paths relative to that group. Keras 2 writes ``dense/kernel:0`` and, for a nested model,
  ``<inner layer>/kernel:0`` directly under the OUTERMOST container, whatever the depth. Keras 3 writes
  scope paths such as ``<outer model>/dense/kernel`` or ``inner2/dense/kernel``. Both use the names
  layers had when their weights were created, and list a container's trainable weights before its
  frozen ones. So layers of a nested model are matched by their names among the path components,
  and layers renamed after building by position and shape.
- `.keras`: ``model.weights.h5`` keys objects by GENERATED names: snake_case of the class, deduplicated
  per container in config order (``layers/conv2d_1/vars/0``, nested
  ``layers/functional/layers/conv2d/vars/0``). Keras >= 3.1x also stores the layer's real name as the
  ``name`` attribute of each ``vars`` group, which is preferred when present.

`LayerInfo.trainable` is what the Keras that wrote the file trains (see `_build_node`): Keras 2
freezes everything inside a frozen container, Keras 3 follows each layer's own (propagated) flag.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import h5py
import numpy as np

from grader.facts.applications import detect_bases, layer_token
from grader.records.evidence import Architecture, LayerInfo
from grader.formats.filetype import FileKindError, ModelKind, sniff

__all__ = ["InspectError", "inspect_model_file", "read_layer_kernel"]

_MAX_CONFIG_BYTES = 64 * 1024**2
_MAX_DEPTH = 64  # nested containers; a real model has a handful
_MAX_H5_OBJECTS = 500_000  # groups and datasets visited in one weights file
_MAX_KERNEL_ELEMENTS = 1 << 26  # 256 MB of float32: more than any first conv layer

# "Runs code" is decided by ALLOWLISTS: a layer is plain only when it is known to be a pure built-in,
# everything else is code (loaded only in the sandbox, see grader.facts.gather).
# Class names of the layers that ship with Keras (keras 3.15 `keras.layers` and tf_keras 2.21
# `tf_keras.layers`, aliases included), plus the model classes. Left out on purpose: Lambda (it carries
# bytecode), TFOpLambda / SlicingOpLambda (they call a TF function by name: decided by _PLAIN_TF_OPS),
# the abstract `Layer`/`Wrapper`, the wrappers of foreign code (JaxLayer, FlaxLayer, TorchModuleWrapper,
# TFSMLayer), and tf_keras' DenseFeatures (its feature columns can read vocabulary files).
_BUILTIN_LAYERS = frozenset("""
Activation ActivityRegularization AdaptiveAveragePooling1D AdaptiveAveragePooling2D AdaptiveAveragePooling3D
AdaptiveMaxPooling1D AdaptiveMaxPooling2D AdaptiveMaxPooling3D Add AdditiveAttention AlphaDropout Attention
AugMix AutoContrast Average AveragePooling1D AveragePooling2D AveragePooling3D AvgPool1D AvgPool2D AvgPool3D
BatchNormalization Bidirectional CategoryEncoding CenterCrop Concatenate
ContrastLimitedAdaptiveHistogramEqualization Conv1D Conv1DTranspose Conv2D Conv2DTranspose Conv3D
Conv3DTranspose ConvLSTM1D ConvLSTM2D ConvLSTM3D Convolution1D Convolution1DTranspose Convolution2D
Convolution2DTranspose Convolution3D Convolution3DTranspose Cropping1D Cropping2D Cropping3D CutMix Dense
DepthwiseConv1D DepthwiseConv2D Discretization Dot Dropout ELU EinsumDense Embedding
Equalization Flatten Functional GRU GRUCell GaussianDropout GaussianNoise GlobalAveragePooling1D
GlobalAveragePooling2D GlobalAveragePooling3D GlobalAvgPool1D GlobalAvgPool2D GlobalAvgPool3D GlobalMaxPool1D
GlobalMaxPool2D GlobalMaxPool3D GlobalMaxPooling1D GlobalMaxPooling2D GlobalMaxPooling3D GroupNormalization
GroupQueryAttention GroupedQueryAttention HashedCrossing Hashing Identity InputLayer IntegerLookup LSTM
LSTMCell LayerNormalization LeakyReLU LocallyConnected1D LocallyConnected2D Masking MaxNumBoundingBoxes
MaxPool1D MaxPool2D MaxPool3D MaxPooling1D MaxPooling2D MaxPooling3D Maximum MelSpectrogram Minimum MixUp
Model MultiHeadAttention Multiply Normalization PReLU Permute Pipeline RMSNormalization RNN RandAugment
RandomBrightness RandomColorDegeneration RandomColorJitter RandomContrast RandomCrop RandomElasticTransform
RandomErasing RandomFlip RandomGaussianBlur RandomGrayscale RandomHeight RandomHue RandomInvert
RandomPerspective RandomPosterization RandomRotation RandomSaturation RandomSharpness RandomShear
RandomTranslation RandomWidth RandomZoom ReLU RepeatVector Rescaling Reshape Resizing ReversibleEmbedding
STFTSpectrogram SeparableConv1D SeparableConv2D SeparableConvolution1D SeparableConvolution2D Sequential
SimpleRNN SimpleRNNCell Softmax Solarization SpatialDropout1D SpatialDropout2D
SpatialDropout3D SpectralNormalization StackedRNNCells StringLookup Subtract TextVectorization
ThresholdedReLU TimeDistributed UnitNormalization UpSampling1D UpSampling2D UpSampling3D ZeroPadding1D
ZeroPadding2D ZeroPadding3D
""".split())
# Layers of `keras.applications` defined outside `keras.layers` (ConvNeXt, InceptionResNetV2): plain
# only with their `module` (keras.src.applications.*, tf_keras.src.applications.*), since a legacy config
# names no module; tf_keras registers CustomScaleLayer as 'Custom>CustomScaleLayer'.
_APPLICATION_LAYERS = frozenset({"LayerScale", "StochasticDepth", "CustomScaleLayer"})
_APPLICATION_MODULES = ("keras.src.applications.", "tf_keras.src.applications.")
# Where Keras 3 and tf_keras configs say their layers and models come from ('keras.layers', 'keras',
# 'keras.src.models.functional', 'tf_keras.src.engine.functional', ...). A built-in class NAME from any
# other module (keras.src.utils, keras.src.saving, ...) is not a built-in layer.
_LAYER_MODULES = frozenset({"keras", "keras.layers", "keras.models", "tf_keras", "tf_keras.layers", "tf_keras.models"})
_LAYER_MODULE_PREFIXES = ("keras.layers.", "keras.src.layers.", "keras.src.models.", "tf_keras.src.layers.",
                          "tf_keras.src.engine.", "tf_keras.src.models.")
# Keras 3 functional models store `keras.ops` calls on symbolic tensors as operations of these modules
# (e.g. class "Add", module "keras.src.ops.numpy"): numeric ops that take tensors only, no callable.
_PURE_OP_MODULES = frozenset({f"keras.src.ops.{m}" for m in ("numpy", "nn", "math", "image", "linalg")})
# A Keras 3 function reference inside a config ({"class_name": "function", "module": M, "config": NAME}):
# Keras imports M and calls NAME, so any function of any keras.* module would do (keras.utils.get_file,
# the saving API). Plain only from the modules of pure numeric functions (activations, losses,
# metrics, ops, initializers, regularizers, constraints); 'builtins' and everything else are code.
_PURE_FUNCTION_MODULES = tuple(f"keras.{src}{m}" for src in ("", "src.") for m in (
    "activations", "losses", "metrics", "ops", "initializers", "regularizers", "constraints"))
# keras.src.ops.core also holds control flow that takes Python callables (Map, Scan, Cond, WhileLoop,
# ForiLoop, Switch, VectorizedMap, AssociativeScan): code. Only these of its operations are plain.
_PURE_CORE_OPS = frozenset({"Cast", "SaturateCast", "ConvertToTensor", "Slice", "SliceUpdate", "Scatter",
                            "ScatterUpdate", "StopGradient", "Unstack"})
# tf_keras (Keras 2) turns a TF function called on a Keras tensor into a TFOpLambda layer whose config
# names the function ('nn.relu', 'image.resize', 'io.read_file', 'py_function', 'raw_ops.ReadFile');
# loading the model calls it. Plain only when it is one of these pure math/shape functions (with or
# without tf_keras' 'compat.v1.' prefix), or any function directly in tf.math / tf.nn (elementwise
# maths, reductions, activations: no file, no Python callable, no state). Everything else (tf.io,
# tf.strings, tf.py_function, tf.numpy_function, tf.raw_ops, tf.lookup, tf.data, tf.print, ...) is code.
_PLAIN_TF_OPS = frozenset({
    "__operators__.add", "__operators__.getitem", "cast", "clip_by_value", "concat", "expand_dims", "gather",
    "identity", "one_hot", "ones_like", "pad", "repeat", "reshape", "shape", "split", "squeeze", "stack", "tile",
    "transpose", "unstack", "where", "zeros_like", "image.resize", "image.grayscale_to_rgb", "image.rgb_to_grayscale",
    "image.per_image_standardization", "linalg.matmul",
})
_PLAIN_TF_OP_NAMESPACES = ("math.", "nn.")
_NESTED_LAYER_KEYS = frozenset({"layer", "cell", "cells", "forward_layer", "backward_layer"})
# What a damaged or hand-made file can make h5py, zipfile or the config walk raise; each becomes an
# InspectError naming the file (the batch goes on with a message instead of a traceback).
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError, RecursionError,
                EOFError, struct.error, zipfile.BadZipFile)
_NON_TRAINABLE_VARS = frozenset({"moving_mean", "moving_variance"})
_CONV_CLASSES = frozenset({
    "Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D", "Conv1DTranspose",
    "Conv2DTranspose", "Conv3DTranspose", "DepthwiseConv1D", "DepthwiseConv2D", "SeparableConv1D",
    "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D",
})
# Built-in layers that own weights; only used to match renamed layers by position in legacy files.
_WEIGHTED_CLASSES = _CONV_CLASSES | frozenset({
    "Dense", "EinsumDense", "BatchNormalization", "LayerNormalization", "GroupNormalization", "RMSNormalization",
    "UnitNormalization", "Normalization", "Embedding", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed",
    "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "PReLU", "MultiHeadAttention", "LocallyConnected1D", "LocallyConnected2D",
})


class InspectError(ValueError):
    """A model file that cannot be read statically; the message names the file and says what to do."""


# ---------------------------------------------------------------------------------------------
# Plain records used while reading


@dataclass(frozen=True)
class _Var:
    """One stored weight: where it is in the HDF5 file, its short name and its shape."""

    h5path: str
    name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class _Node:
    """A layer of the config tree. `children` is None for a plain layer, a tuple for a container."""

    path: tuple[str, ...]
    class_name: str
    raw: Mapping[str, Any]
    trainable: bool  # effective: False when any enclosing container is frozen
    children: tuple[_Node, ...] | None

    @property
    def name(self) -> str:
        return self.path[-1] if self.path else ""

    @property
    def config(self) -> Mapping[str, Any]:
        config = self.raw.get("config")
        return config if isinstance(config, Mapping) else {}


@dataclass(frozen=True)
class _Source:
    """What a model file holds, before interpretation."""

    format: Literal["h5", "keras"]
    config: Mapping[str, Any]
    keras_version: str | None
    weights: h5py.Group | None
    layout: Literal["legacy", "keras"]


# ---------------------------------------------------------------------------------------------
# Opening files


def _text(value: Any) -> str | None:
    """An HDF5 attribute as text: h5py returns str, bytes or 0-d/1-element arrays depending on writer."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    return None


def _parse_json(text: str | bytes, what: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InspectError(
            f"{path.name}: the model's {what} is not valid JSON ({exc.__class__.__name__}: {exc}); "
            "the file is damaged or was not written by Keras. Save the model again with model.save(...)"
        ) from None


def _check_not_directory(path: Path) -> None:
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise InspectError(
                f"{path.name}: this is a TensorFlow SavedModel folder, which the grader does not read; "
                "save the model as one file with model.save('model.keras') (or .h5)"
            )
        raise InspectError(f"{path.name}: this is a folder, not a model file; hand in model.save('model.keras')")
    if path.name in ("saved_model.pb", "saved_model.pbtxt"):
        raise InspectError(
            f"{path.name}: this is part of a TensorFlow SavedModel, which the grader does not read; "
            "save the model as one file with model.save('model.keras') (or .h5)"
        )
    if not path.is_file():
        raise InspectError(f"{path.name}: file not found")


@contextmanager
def _open_source(path: Path, kind: ModelKind | None = None) -> Iterator[_Source]:
    """Open a model file as `kind` (grader.formats.filetype's decision; taken here when not given); errors
    become InspectError naming the file."""
    _check_not_directory(path)
    if kind is None:
        try:
            kind = sniff(path)
        except FileKindError as exc:
            raise InspectError(str(exc)) from None
    if kind == "tflite":
        raise InspectError(f"{path.name}: a TensorFlow Lite model, which has no Keras config to read")
    try:
        if kind == "keras":
            with _open_keras_zip(path) as source:
                yield source
        else:
            with _open_legacy_h5(path) as source:
                yield source
    except InspectError:
        raise
    except _READ_ERRORS as exc:
        raise InspectError(
            f"{path.name}: the file is truncated or damaged ({exc.__class__.__name__}: {exc}); "
            "save the model again with model.save(...) and check that the upload finished"
        ) from None


@contextmanager
def _open_legacy_h5(path: Path) -> Iterator[_Source]:
    with h5py.File(path, "r") as f:
        raw_config = _text(f.attrs.get("model_config"))
        if raw_config is None:
            if "layer_names" in f.attrs or "layers" in f or "vars" in f:
                raise InspectError(
                    f"{path.name}: this file holds weights only (model.save_weights); "
                    "save the whole model with model.save(...)"
                )
            raise InspectError(
                f"{path.name}: an HDF5 file without a Keras model config; save the model with model.save(...)"
            )
        if len(raw_config) > _MAX_CONFIG_BYTES:
            raise InspectError(f"{path.name}: the model config is implausibly large ({len(raw_config)} bytes)")
        config = _parse_json(raw_config, "config", path)
        weights = f.get("model_weights")
        yield _Source(
            format="h5",
            config=config,
            keras_version=_text(f.attrs.get("keras_version")),
            weights=weights if isinstance(weights, h5py.Group) else None,
            layout="legacy",
        )


def _check_members(zf: zipfile.ZipFile, path: Path) -> None:
    """Refuse member names that would land outside the archive's folder if extracted."""
    for name in zf.namelist():
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
            raise InspectError(
                f"{path.name}: the archive contains a member that escapes its folder ({name!r}); "
                "this is not a file written by Keras"
            )


def _read_member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    info = zf.getinfo(name)
    if info.file_size > _MAX_CONFIG_BYTES:
        raise InspectError(f"{path.name}: {name} is implausibly large ({info.file_size} bytes)")
    return zf.read(info)


class _Window(io.RawIOBase):
    """A read-only, seekable view of a byte range of an open file.

    Keras stores `model.weights.h5` uncompressed, so h5py can read it in place. Going through
    `ZipFile.open` instead costs ~40x (on Python 3.11 a backward seek re-reads from the start).
    """

    def __init__(self, fh: BinaryIO, start: int, size: int) -> None:
        super().__init__()
        self._fh, self._start, self._size, self._pos = fh, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self._size - self._pos))
        self._fh.seek(self._start + self._pos)
        data = self._fh.read(n)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)


def _member_offset(fh: BinaryIO, info: zipfile.ZipInfo) -> int:
    """Where a stored member's bytes start: after its local header (whose extra field may differ
    from the central directory's, so it is read from the local header itself)."""
    fh.seek(info.header_offset)
    header = fh.read(30)
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


@contextmanager
def open_member_h5(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> Iterator[h5py.File]:
    if info.compress_type == zipfile.ZIP_STORED:
        with path.open("rb") as fh:
            start = _member_offset(fh, info)
            if start + info.file_size > path.stat().st_size:
                raise zipfile.BadZipFile(f"{info.filename} runs past the end of the file")
            with h5py.File(_Window(fh, start, info.file_size), "r") as f:
                yield f
    else:  # re-zipped by hand: slower, still without extracting to disk
        with zf.open(info) as member, h5py.File(member, "r") as f:
            yield f


@contextmanager
def _open_keras_zip(path: Path) -> Iterator[_Source]:
    with zipfile.ZipFile(path) as zf:
        _check_members(zf, path)
        names = set(zf.namelist())
        if "config.json" not in names:
            raise InspectError(
                f"{path.name}: a zip archive without config.json, so not a saved Keras model; "
                "save the model with model.save('model.keras')"
            )
        config = _parse_json(_read_member(zf, "config.json", path), "config.json", path)
        version = None
        if "metadata.json" in names:
            metadata = _parse_json(_read_member(zf, "metadata.json", path), "metadata.json", path)
            version = metadata.get("keras_version") if isinstance(metadata, Mapping) else None
        if "model.weights.h5" not in names:  # sharded or npz weights: architecture only
            yield _Source("keras", config, _str_or_none(version), None, "keras")
            return
        with open_member_h5(zf, zf.getinfo("model.weights.h5"), path) as weights:
            yield _Source("keras", config, _str_or_none(version), weights, "keras")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------------------------
# The config tree


def _bare_class(class_name: Any) -> str:
    """'Scale' for a registered 'mypkg>Scale'; '?' for a non-string (a hand-made config)."""
    return class_name.rsplit(">", 1)[-1] if isinstance(class_name, str) else "?"


def _layer_list(raw: Mapping[str, Any]) -> list[Any] | None:
    """The layers of a container: `config.layers`; very old Keras Sequential stored a bare list."""
    config = raw.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("layers"), list):
        return config["layers"]
    if isinstance(config, list) and raw.get("class_name") == "Sequential":
        return config
    return None


def _layer_name(raw: Mapping[str, Any], index: int) -> str:
    config = raw.get("config")
    name = config.get("name") if isinstance(config, Mapping) else None
    if not isinstance(name, str) or not name:
        name = raw.get("name") if isinstance(raw.get("name"), str) else None
    return name or f"{_bare_class(raw.get('class_name')).lower()}_{index}"


def _own_trainable(raw: Mapping[str, Any]) -> bool | None:
    """The layer's own `trainable`, None when its config has none (InputLayer, tf_keras Sequential)."""
    config = raw.get("config")
    flag = config.get("trainable") if isinstance(config, Mapping) else None
    return flag if isinstance(flag, bool) else None


def _is_keras3(version: str | None) -> bool:
    match = re.match(r"\s*(\d+)", version or "")
    return bool(match) and int(match.group(1)) >= 3


def _build_node(raw: Any, path: tuple[str, ...], parent: bool, top: bool, depth: int, keras3: bool) -> _Node:
    """One node and its children; `parent` is the enclosing container's effective flag, `top` the model's.

    Keras 2 trains a layer only if every enclosing container is trainable. Keras 3 copies a
    container's flag onto every sublayer when it is SET and afterwards asks only the layer itself
    (and the top model): ``base.trainable = False`` followed by ``base.layers[-4].trainable = True``
    trains that layer in Keras 3 (live and after reloading the file) but not in Keras 2. A layer
    whose config has no flag follows its container.
    """
    if not isinstance(raw, Mapping):
        raise TypeError(f"a layer entry is a {type(raw).__name__}, not an object")
    if depth > _MAX_DEPTH:
        raise ValueError(f"models nested more than {_MAX_DEPTH} deep")
    own = _own_trainable(raw)
    if own is None:
        trainable = parent
    elif keras3:
        trainable = own and top
    else:
        trainable = own and parent
    top = trainable if depth == 0 else top
    entries = _layer_list(raw)
    children = None
    if entries is not None:
        children = tuple(
            _build_node(entry, path + (_layer_name(entry, i) if isinstance(entry, Mapping) else f"layer_{i}",),
                        trainable, top, depth + 1, keras3)
            for i, entry in enumerate(entries)
        )
    return _Node(path=path, class_name=_bare_class(raw.get("class_name")), raw=raw, trainable=trainable,
                 children=children)


def _parse_tree(config: Any, path: Path, keras_version: str | None) -> _Node:
    """The model as a tree of nodes; the root's path is () and its children are the top layers."""
    if not isinstance(config, Mapping) or not isinstance(config.get("class_name"), str):
        raise InspectError(f"{path.name}: the model config has an unexpected structure (no class_name at the top)")
    try:
        return _build_node(config, (), True, True, 0, _is_keras3(keras_version))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InspectError(f"{path.name}: the model config has an unexpected structure ({exc})") from None


def _walk(node: _Node) -> Iterator[_Node]:
    """Depth-first, containers before their children, the root excluded."""
    for child in node.children or ():
        yield child
        yield from _walk(child)


def _leaves(node: _Node) -> list[_Node]:
    return [n for n in _walk(node) if n.children is None]


# ---------------------------------------------------------------------------------------------
# Weights: which stored datasets belong to which layer


class _Budget:
    """Counts HDF5 objects visited so a file with millions of groups cannot stall the grader."""

    def __init__(self, limit: int = _MAX_H5_OBJECTS) -> None:
        self.left = limit

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise ValueError(f"the weights file has more than {_MAX_H5_OBJECTS} objects")


def _dataset_var(ds: h5py.Dataset, name: str) -> _Var:
    shape = ds.shape
    return _Var(h5path=ds.name, name=name, shape=tuple(int(d) for d in shape) if shape is not None else (0,))


def _natural_key(name: str | bytes) -> tuple[Any, ...]:
    """'conv2d_10' after 'conv2d_2'; '10' after '2'. (h5py gives bytes for names that are not UTF-8.)"""
    if isinstance(name, bytes):
        name = name.decode("utf-8", errors="replace")
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _all_vars(group: h5py.Group, budget: _Budget) -> list[_Var]:
    """Every dataset under a group: its own `vars` first (in index order), then sub-objects."""
    out: list[_Var] = []
    keys = sorted(group.keys(), key=lambda k: (k != "vars", _natural_key(k)))
    for key in keys:
        budget.spend()
        item = group.get(key)
        if isinstance(item, h5py.Dataset):
            out.append(_dataset_var(item, key))
        elif isinstance(item, h5py.Group):
            out.extend(_all_vars(item, budget))
    return out


def _legacy_group_vars(group: h5py.Group, budget: _Budget) -> list[tuple[tuple[str, ...], _Var]]:
    """(path components, var) for one top-level layer group, in `weight_names` order when given."""
    names = group.attrs.get("weight_names")
    listed = [_text(n) for n in names] if isinstance(names, np.ndarray) and names.dtype.kind in "OSU" else []
    out: list[tuple[tuple[str, ...], _Var]] = []
    seen: set[str] = set()
    for name in listed:
        budget.spend()
        item = group.get(name) if name else None
        if isinstance(item, h5py.Dataset) and item.name not in seen:
            seen.add(item.name)
            parts = tuple(name.split("/"))
            out.append((parts, _dataset_var(item, parts[-1])))
    for var in _all_vars(group, budget):  # datasets the attribute forgot
        if var.h5path not in seen:
            parts = tuple(var.h5path[len(group.name):].strip("/").split("/"))
            out.append((parts, var))
    return out


def _owner(parts: tuple[str, ...], container: _Node, leaves: list[_Node]) -> tuple[str, ...]:
    """The leaf of `container` a legacy weight path belongs to, by layer names among its components.

    Keras 2 drops intermediate containers from the path and Keras 3 adds scope prefixes, so the
    leaf's own name is the reliable part. Keras 2 names may contain '/' (DenseNet's ``conv1/bn``),
    so a name matches a run of components, and the longest name wins over a shorter one (``bn``);
    ancestor names break the remaining ties.
    """
    scope = "/" + "/".join(parts[:-1]) + "/"
    candidates = [leaf for leaf in leaves if f"/{leaf.name}/" in scope]
    if not candidates:
        return container.path
    if len(candidates) == 1:
        return candidates[0].path

    def score(leaf: _Node) -> tuple[int, int, int]:
        ancestors = sum(1 for name in leaf.path[len(container.path):-1] if f"/{name}/" in scope)
        return leaf.name.count("/"), ancestors, scope.rfind(f"/{leaf.name}/")

    return max(candidates, key=score).path


def _legacy_weights(root: _Node, group: h5py.Group) -> dict[tuple[str, ...], list[_Var]]:
    budget = _Budget()
    out: dict[tuple[str, ...], list[_Var]] = {}
    if root.children is None:  # a custom top-level model: all weights are its own
        out[()] = [var for _, var in _legacy_group_vars(group, budget)]
        return out
    for child in root.children:
        budget.spend()
        sub = group.get(child.name)
        if not isinstance(sub, h5py.Group):
            continue
        pairs = _legacy_group_vars(sub, budget)
        if child.children is None:
            out[child.path] = [var for _, var in pairs]
            continue
        _legacy_container(child, pairs, out)
    return out


def _legacy_container(container: _Node, pairs: list[tuple[tuple[str, ...], _Var]],
                      out: dict[tuple[str, ...], list[_Var]]) -> None:
    """Give each weight of a nested model in a legacy file to the leaf layer it belongs to.

    Weight paths carry the names layers had when their weights were CREATED; a layer renamed after
    that (``layer.name = ...``) no longer matches. Those weights are then matched by position: Keras
    writes a container's weights as its trainable weights (layer order) followed by the non-trainable
    ones, and each candidate layer must fit the shapes (kernel size, filters, units); when anything
    disagrees they stay with the container, so totals remain right.
    """
    leaves = _leaves(container)
    groups: dict[tuple[str, ...], list[_Var]] = {}
    for parts, var in pairs:
        groups.setdefault(parts[:-1], []).append(var)
    unmatched: list[list[_Var]] = []
    claimed: set[tuple[str, ...]] = set()
    for prefix, variables in groups.items():
        owner = _owner(prefix + ("",), container, leaves)
        if owner == container.path:
            unmatched.append(variables)
        else:
            out.setdefault(owner, []).extend(variables)
            claimed.add(owner)
    if not unmatched:
        return
    free = [leaf for leaf in leaves
            if leaf.path not in claimed and (leaf.class_name in _WEIGHTED_CLASSES or _custom_class(leaf.raw))]
    ahead = {leaf.path for leaf in free if leaf.trainable and leaf.class_name != "Normalization"}
    order = [leaf for leaf in free if leaf.path in ahead] + [leaf for leaf in free if leaf.path not in ahead]
    if len(order) == len(unmatched) and all(_fits(leaf, variables) for leaf, variables in zip(order, unmatched)):
        for leaf, variables in zip(order, unmatched):
            out[leaf.path] = variables
    else:
        out.setdefault(container.path, []).extend(var for variables in unmatched for var in variables)


def _fits(leaf: _Node, variables: Sequence[_Var]) -> bool:
    """Whether stored weights can belong to a layer with this config (used for positional matching)."""
    c, first = leaf.config, variables[0].shape
    if leaf.class_name in _CONV_CLASSES:
        size = c.get("kernel_size")
        size = list(size) if isinstance(size, (list, tuple)) else [size] * max(1, len(first) - 2)
        if list(first[: len(size)]) != size:
            return False
        return "filters" not in c or leaf.class_name.startswith(("Separable", "Depthwise")) or first[-1] == c["filters"]
    if leaf.class_name == "Dense":
        return len(first) == 2 and first[-1] == c.get("units")
    if leaf.class_name in ("BatchNormalization", "LayerNormalization", "GroupNormalization"):
        return all(len(v.shape) == 1 for v in variables)
    return True


def _snake_case(name: str) -> str:
    """Keras' `naming.to_snake_case`, which names objects in `.keras` weight files."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _generated_names(children: Sequence[_Node]) -> list[str]:
    used: dict[str, int] = {}
    out = []
    for child in children:
        base = _snake_case(child.class_name)
        if base in used:
            used[base] += 1
            out.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            out.append(base)
    return out


def _stored_name(group: h5py.Group) -> str | None:
    own = group.get("vars")
    return _text(own.attrs.get("name")) if isinstance(own, h5py.Group) else None


def _child_group(layers: h5py.Group, child: _Node, generated: str, by_name: Mapping[str, h5py.Group]) -> h5py.Group | None:
    group = layers.get(generated)
    if isinstance(group, h5py.Group) and _stored_name(group) in (None, child.name):
        return group
    return by_name.get(child.name, group if isinstance(group, h5py.Group) else None)


def _keras_container(node: _Node, group: h5py.Group, out: dict[tuple[str, ...], list[_Var]], budget: _Budget) -> None:
    own = group.get("vars")
    if isinstance(own, h5py.Group) and len(own):
        out.setdefault(node.path, []).extend(_all_vars(own, budget))
    layers = group.get("layers")
    if not isinstance(layers, h5py.Group):
        return
    by_name: dict[str, h5py.Group] = {}
    for key in layers:
        budget.spend()
        sub = layers.get(key)
        name = _stored_name(sub) if isinstance(sub, h5py.Group) else None
        if name is not None:
            by_name.setdefault(name, sub)
    for child, generated in zip(node.children or (), _generated_names(node.children or ())):
        sub = _child_group(layers, child, generated, by_name)
        if sub is None:
            continue
        if child.children is None:
            out[child.path] = _all_vars(sub, budget)
        else:
            _keras_container(child, sub, out, budget)


def _keras_weights(root: _Node, f: h5py.Group) -> dict[tuple[str, ...], list[_Var]]:
    budget = _Budget()
    out: dict[tuple[str, ...], list[_Var]] = {}
    if root.children is None:  # a custom top-level model: everything but the optimizer is its own
        out[()] = [var for key in sorted(f) if key != "optimizer" and isinstance(f[key], h5py.Group)
                   for var in _all_vars(f[key], budget)]
        return out
    _keras_container(root, f, out, budget)
    return out


def _weights_by_layer(source: _Source, root: _Node) -> dict[tuple[str, ...], list[_Var]] | None:
    if source.weights is None:
        return None
    if source.layout == "legacy":
        return _legacy_weights(root, source.weights)
    return _keras_weights(root, source.weights)


# ---------------------------------------------------------------------------------------------
# Facts about layers


def _is_keras_module(module: Any) -> bool:
    """Keras' own classes: 'keras', 'keras.layers', 'keras.src.models.functional', and tf_keras'
    'tf_keras.src.layers.core.tf_op_layer' (TFOpLambda in .keras files written by tf_keras)."""
    if not isinstance(module, str):
        return False
    return module in ("keras", "tf_keras") or module.startswith(("keras.", "tf_keras."))


def _plain_tf_op(function: Any) -> bool:
    """Whether a TFOpLambda's function ('nn.relu', 'compat.v1.transpose') is in the pure allowlist."""
    if not isinstance(function, str):
        return False
    name = function.removeprefix("compat.v1.")
    if name in _PLAIN_TF_OPS:
        return True
    for namespace in _PLAIN_TF_OP_NAMESPACES:
        rest = name.removeprefix(namespace)
        if rest != name and rest.isidentifier():  # directly in tf.math / tf.nn, not a sub-namespace
            return True
    return False


def _plain_class(raw: Mapping[str, Any]) -> bool:
    """Whether a layer (or Keras 3 operation) entry is known to be a pure built-in of Keras, so that
    loading and calling it runs no student code and reads nothing but its own config and weights.

    An allowlist: Keras 3 configs say where a class comes from (`module`), legacy configs only give the
    class name. Anything not known is code: Lambda, custom or registered classes (``mypkg>Scale``),
    classes of other modules, TF functions outside `_PLAIN_TF_OPS`.
    """
    class_name = raw.get("class_name")
    if not isinstance(class_name, str) or ">" in class_name:
        return False
    module = raw.get("module")
    registered = raw.get("registered_name")
    application = isinstance(module, str) and module.startswith(_APPLICATION_MODULES)
    if registered not in (None, class_name) and not (application and registered == f"Custom>{class_name}"):
        return False  # registered under another name: by the student's code
    config = raw.get("config")
    if class_name in ("TFOpLambda", "SlicingOpLambda"):
        if "module" in raw and not _is_keras_module(raw.get("module")):
            return False
        function = config.get("function") if isinstance(config, Mapping) else None
        return _plain_tf_op(function) and (class_name == "TFOpLambda" or function == "__operators__.getitem")
    if "module" not in raw:
        return class_name in _BUILTIN_LAYERS
    if not _is_keras_module(module):
        return False
    if module in _PURE_OP_MODULES:
        return class_name.isidentifier() and class_name[0].isupper()  # an Operation class, not a function
    if module == "keras.src.ops.core":
        return class_name in _PURE_CORE_OPS
    if application:
        return class_name in _APPLICATION_LAYERS
    return class_name in _BUILTIN_LAYERS and (module in _LAYER_MODULES or module.startswith(_LAYER_MODULE_PREFIXES))


def _custom_class(raw: Mapping[str, Any]) -> bool:
    """A class that is not a known pure built-in of Keras, so loading it runs code (see `_plain_class`)."""
    return not _plain_class(raw)


def _pure_function_module(module: Any) -> bool:
    if not isinstance(module, str) or module.startswith(("keras.ops.core", "keras.src.ops.core")):  # map, scan, cond...
        return False
    return any(module == m or module.startswith(m + ".") for m in _PURE_FUNCTION_MODULES)


def _code_inside(value: Any, key: str = "", depth: int = 0) -> bool:
    """Bytecode or custom objects anywhere in a layer's config: a Lambda inside TimeDistributed,
    ``activation=lambda x: ...`` (Keras 3 stores it as ``__lambda__``), a custom initializer."""
    if depth > _MAX_DEPTH:
        return True
    if isinstance(value, Mapping):
        class_name = value.get("class_name")
        if class_name in ("Lambda", "__lambda__"):
            return True
        if class_name == "function":
            return not _pure_function_module(value.get("module"))
        if isinstance(class_name, str) and "config" in value:
            if "module" in value and not _is_keras_module(value.get("module")):
                return True
            if key in _NESTED_LAYER_KEYS and _custom_class(value):
                return True
        return any(_code_inside(v, k, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(_code_inside(v, key, depth + 1) for v in value)
    return False


def _has_code(node: _Node) -> bool:
    if _custom_class(node.raw):
        return True
    return node.children is None and _code_inside(node.config)


def _pair(value: Any) -> str:
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    return "×".join(str(v) for v in items) if len(items) > 1 else f"{items[0]}×{items[0]}"


def _activation(value: Any) -> str | None:
    """'relu' from 'relu' or from a Keras 3 function dict; a class name for a layer activation."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        inner = value.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(value.get("class_name"), str):
            return value["class_name"]
    return None


def _with_activation(text: str, config: Mapping[str, Any]) -> str:
    act = _activation(config.get("activation"))
    return f"{text}, {act}" if act and act != "linear" else text


def _strides_note(config: Mapping[str, Any], key: str = "strides", default: Any = 1) -> str:
    strides = config.get(key, default)
    items = list(strides) if isinstance(strides, (list, tuple)) else [strides]
    if not items or all(s == 1 for s in items) or strides is None:
        return ""
    return f", stride {items[0] if len(set(items)) == 1 else 'x'.join(map(str, items))}"


def _summary(node: _Node) -> str:
    """A short human description of a layer, e.g. '64 filters 3×3, relu'; '' when nothing to say."""
    c, cls = node.config, node.class_name
    try:
        if node.children is not None:
            return f"{sum(1 for n in node.children if n.class_name != 'InputLayer')} layers"
        if cls in ("Conv1D", "Conv2D", "Conv3D", "Convolution2D", "Conv2DTranspose", "SeparableConv2D",
                   "SeparableConv1D", "Conv1DTranspose", "Conv3DTranspose"):
            kind = " separable" if cls.startswith("Separable") else (" transposed" if "Transpose" in cls else "")
            return _with_activation(f"{c['filters']} filters {_pair(c['kernel_size'])}{kind}{_strides_note(c)}", c)
        if cls in ("DepthwiseConv2D", "DepthwiseConv1D"):
            return _with_activation(f"depthwise {_pair(c['kernel_size'])}{_strides_note(c)}", c)
        if cls in ("Dense", "EinsumDense"):
            return _with_activation(f"{c['units']} units", c) if "units" in c else ""
        if "Pool" in cls and "Global" not in cls:
            size = c.get("pool_size", 2)
            return f"pool {_pair(size)}" + (_strides_note(c) if c.get("strides") not in (None, size) else "")
        if "Global" in cls:
            return "global " + ("average" if "Average" in cls or "Avg" in cls else "max")
        if "Dropout" in cls and "rate" in c:
            return f"rate {c['rate']}"
        if cls == "Activation":
            return _activation(c.get("activation")) or ""
        if cls == "InputLayer":
            shape = c.get("batch_shape", c.get("batch_input_shape"))
            return f"shape {tuple(shape)}" if isinstance(shape, list) else ""
        if cls in ("Resizing", "CenterCrop", "RandomCrop"):
            return f"to {c['height']}×{c['width']}"
        if cls == "Reshape":
            return f"to {tuple(c['target_shape'])}"
        if cls == "Rescaling":
            return f"scale {c['scale']:.4g}" + (f", offset {c['offset']:.4g}" if c.get("offset") else "")
        if cls in ("LSTM", "GRU", "SimpleRNN"):
            return f"{c['units']} units"
        if cls == "Embedding":
            return f"{c['input_dim']} → {c['output_dim']}"
        if cls == "Lambda":
            return "custom code (Lambda)"
        if cls in ("TFOpLambda", "SlicingOpLambda"):
            return f"tf.{c['function']}"
    except (KeyError, TypeError, ValueError, IndexError):
        return ""
    return ""


def _batch_shape(value: Any) -> tuple[int | None, ...] | None:
    if not isinstance(value, list) or not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in value):
        return None
    return tuple(value)


def _declared_shape(node: _Node) -> tuple[int | None, ...] | None:
    """The batch input shape a layer declares itself (InputLayer, or `input_shape=` on a first layer)."""
    c = node.config
    for key in ("batch_shape", "batch_input_shape"):
        shape = _batch_shape(c.get(key))
        if shape is not None:
            return shape
    return None


def _input_shape(node: _Node) -> tuple[int | None, ...] | None:
    """Full batch shape of the model's (first) input, e.g. (None, 28, 28, 1)."""
    children = node.children or ()
    names = _input_layer_names(node.config.get("input_layers"))
    by_name = {child.name: child for child in children}
    firsts = [by_name[n] for n in names if n in by_name] or list(children[:1])
    for first in firsts:
        shape = _declared_shape(first)
        if shape is None and first.children is not None:
            shape = _input_shape(first)
        if shape is None:
            shape = _build_shape(first.raw)
        if shape is not None:
            return shape
    return _build_shape(node.raw)


def _input_layer_names(value: Any) -> list[str]:
    """Names in `input_layers`: [['in', 0, 0], ...] (Keras 2 and 3) or ['in', 0, 0] (one input)."""
    if not isinstance(value, list) or not value:
        return []
    if isinstance(value[0], str):
        return [value[0]]
    return [item[0] for item in value if isinstance(item, list) and item and isinstance(item[0], str)]


def _build_shape(raw: Mapping[str, Any]) -> tuple[int | None, ...] | None:
    build = raw.get("build_config")
    return _batch_shape(build.get("input_shape")) if isinstance(build, Mapping) else None


def _trainable_size(node: _Node, variables: Sequence[_Var]) -> int:
    """Elements of the layer's trainable weights: BatchNormalization's moving statistics and
    Normalization's mean/variance/count are stored but never trained."""
    if not node.trainable:
        return 0
    if node.class_name == "Normalization":
        return 0
    total = sum(v.size for v in variables)
    if node.class_name in ("BatchNormalization", "SyncBatchNormalization"):
        named = [v for v in variables if v.name.split(":")[0] in _NON_TRAINABLE_VARS]
        if named:
            return total - sum(v.size for v in named)
        if all(v.name.isdigit() for v in variables) and len(variables) >= 2:  # .keras: moving stats last
            return total - sum(v.size for v in variables[-2:])
    return total


def _output(leaves: Sequence[_Node]) -> tuple[int | None, str | None]:
    """Units and activation of the final Dense layer; an Activation/Softmax after it wins."""
    units = activation = None
    for leaf in leaves:
        if leaf.class_name == "Dense":
            value = leaf.config.get("units")
            units = value if isinstance(value, int) else None
            activation = _activation(leaf.config.get("activation")) or "linear"
        elif units is not None and leaf.class_name == "Activation":
            activation = _activation(leaf.config.get("activation")) or activation
        elif units is not None and leaf.class_name == "Softmax":
            activation = "softmax"
    return units, activation


# ---------------------------------------------------------------------------------------------
# Public API


def _layer_infos(root: _Node, weights: Mapping[tuple[str, ...], list[_Var]] | None) -> list[tuple[LayerInfo, str | None]]:
    """(LayerInfo, structural token) for every layer, depth-first, containers before children."""
    nodes = list(_walk(root)) or [_pseudo_root(root)]
    out = []
    for node in nodes:
        own = weights.get(node.path, []) if weights is not None else []
        if weights is None:
            params = None
        elif node.children is not None:
            params = sum(v.size for path, vs in weights.items() if path[: len(node.path)] == node.path for v in vs)
        else:
            params = sum(v.size for v in own)
        info = LayerInfo(path=node.path, class_name=node.class_name, trainable=node.trainable, params=params,
                         summary=_summary(node), is_container=node.children is not None, has_code=_has_code(node))
        token = None if node.children is not None else layer_token(node.class_name, node.config, bool(params))
        out.append((info, token))
    return out


def _pseudo_root(root: _Node) -> _Node:
    """A custom top-level model has no layer list: describe the model itself as its one layer."""
    config = root.config
    name = config.get("name") if isinstance(config.get("name"), str) and config.get("name") else _snake_case(root.class_name)
    return _Node(path=(name,), class_name=root.class_name, raw=root.raw, trainable=root.trainable, children=None)


def _architecture(source: _Source, root: _Node) -> Architecture:
    weights = _weights_by_layer(source, root)
    if weights is not None and root.children is None:
        weights = {_pseudo_root(root).path: weights.get((), [])}
    pairs = _layer_infos(root, weights)
    layers = [info for info, _ in pairs]
    leaves_nodes = _leaves(root) if root.children is not None else [_pseudo_root(root)]
    units, activation = _output(leaves_nodes)
    by_path = {node.path: node for node in leaves_nodes}
    trainable = None
    if weights is not None:
        trainable = sum(_trainable_size(by_path[p], vs) for p, vs in weights.items() if p in by_path)
    return Architecture(
        format=source.format,
        keras_version=source.keras_version,
        model_class=root.class_name,
        input_shape=_input_shape(root) if root.children is not None else _build_shape(root.raw),
        output_units=units,
        output_activation=activation,
        layers=tuple(layers),
        total_params=None if weights is None else sum(v.size for vs in weights.values() for v in vs),
        trainable_params=trainable,
        bases=detect_bases(layers, [token for _, token in pairs]),
        code_layers=tuple("/".join(info.path) for info in layers if info.has_code),
    )


def inspect_model_file(path: Path, kind: ModelKind | None = None) -> Architecture:
    """The architecture of a saved Keras model (`.h5` or `.keras`), read without running any code.

    `kind`: grader.formats.filetype's decision for the file ("h5" or "keras"); taken here when not given.
    Raises `InspectError` with a message for the student (naming the file) when the file is not a
    whole saved model or cannot be read.
    """
    path = Path(path)
    with _open_source(path, kind) as source:
        root = _parse_tree(source.config, path, source.keras_version)
        try:
            return _architecture(source, root)
        except InspectError:
            raise
        except _READ_ERRORS as exc:
            raise InspectError(
                f"{path.name}: the weights in the file cannot be read ({exc.__class__.__name__}: {exc}); "
                "save the model again with model.save(...)"
            ) from None


def _kernel_var(variables: Sequence[_Var]) -> _Var | None:
    """The kernel among a layer's weights: the first with two or more dimensions."""
    return next((v for v in variables if len(v.shape) >= 2), None)


def read_layer_kernel(path: Path, layer_path: Sequence[str], kind: ModelKind | None = None) -> np.ndarray | None:
    """The kernel (first weight with >= 2 dimensions) of one layer of a saved model, or None.

    The only place that reads weight DATA, one dataset, capped in size: used to compare a base's first
    convolution with reference weights (see `grader.facts.pretrained`).
    """
    path = Path(path)
    with _open_source(path, kind) as source:
        root = _parse_tree(source.config, path, source.keras_version)
        try:
            weights = _weights_by_layer(source, root)
            var = _kernel_var(weights.get(tuple(layer_path), [])) if weights else None
            if var is None or var.size > _MAX_KERNEL_ELEMENTS or source.weights is None:
                return None
            return np.asarray(source.weights.file[var.h5path][()])
        except InspectError:
            raise
        except _READ_ERRORS as exc:
            raise InspectError(f"{path.name}: cannot read the weights of {'/'.join(layer_path)} ({exc})") from None

"""Checks on a model file before any deep-learning library opens it (never runs student code).

Things no file written by `model.save` contains, and that a loader would follow out of the file or
choke on, are refused with a message naming the file:
- HDF5 links to other files (external links), datasets stored in other files (external storage,
  virtual datasets), and datasets whose declared size is absurd for a homework model;
- layers that load code or data from a path when built: `TFSMLayer` (a SavedModel), foreign-framework
  wrappers (`JaxLayer`, `FlaxLayer`, `TorchModuleWrapper`), lookup/vectorisation layers whose
  vocabulary is a file path rather than a list.
Archive members that escape their folder are refused by grader.facts.keras_file and grader.inputs.discover.

What the file is (HDF5, a `.keras` zip, TFLite) is not decided here: it is grader.formats.filetype's one
decision, passed in as `kind` (or taken from `sniff` when a caller has none), and a file that is two
formats at once, or not the one its name says, is refused there.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py

from grader.formats.filetype import FileKindError, ModelKind, sniff

MAX_DATASET_BYTES = 4 * 1024**3  # one weight tensor; all of VGG16 is 0.5 GB
MAX_OBJECTS = 500_000
REFUSED_LAYERS = {
    "TFSMLayer": "loads a TensorFlow SavedModel from a path outside the file",
    "JaxLayer": "wraps JAX code", "FlaxLayer": "wraps Flax code", "TorchModuleWrapper": "wraps PyTorch code",
}
LOOKUP_LAYERS = ("StringLookup", "IntegerLookup", "TextVectorization")


def precheck(path: Path, label: str | None = None, kind: ModelKind | None = None) -> list[str]:
    """Problems that make `path` unsafe to open with a loader ([] when there are none). `kind` is
    grader.formats.filetype's decision for the file; without it, that decision is taken here."""
    name = label or path.name
    if kind is None:
        try:
            kind = sniff(path, name)
        except FileKindError as exc:
            return [str(exc)]
    problems: list[str] = []
    try:
        if kind == "tflite":
            return []  # a FlatBuffer: read by grader.formats.tflite_file's bounds-checked reader, never by h5py or zipfile
        if kind == "keras":
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                if "config.json" in names and zf.getinfo("config.json").file_size < 64 * 1024**2:
                    problems += _config_problems(json.loads(zf.read("config.json")), name)
                for member in sorted(n for n in names if n.endswith(".h5")):
                    with zf.open(member) as fh, h5py.File(fh, "r") as f:
                        problems += _h5_problems(f, f"{name}!{member}")
        else:
            with h5py.File(path, "r") as f:
                problems += _h5_problems(f, name)
                raw = f.attrs.get("model_config")
                if raw is not None:
                    problems += _config_problems(json.loads(raw.decode() if isinstance(raw, bytes) else str(raw)), name)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, RecursionError):
        return problems  # an unreadable file is reported by the inspection, with a better message
    return problems


def _h5_problems(f: h5py.File, name: str) -> list[str]:
    problems: list[str] = []
    count = 0

    def visit(obj_name: str, link: Any) -> None:
        nonlocal count
        count += 1
        if count > MAX_OBJECTS:
            raise ValueError("too many objects")
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"{name}: the HDF5 file links to another file ({link.filename!r} via {obj_name!r}); "
                            "Keras never writes such links, so the file was not opened")
            return
        if isinstance(link, h5py.SoftLink):
            return
        obj = f.get(obj_name, getlink=False)
        if isinstance(obj, h5py.Dataset):
            if obj.external:
                problems.append(f"{name}: dataset {obj_name!r} keeps its data in another file; the file was not opened")
            elif obj.is_virtual:
                problems.append(f"{name}: dataset {obj_name!r} is a virtual dataset mapped onto other files; "
                                "the file was not opened")
            else:
                size = obj.dtype.itemsize
                for dim in obj.shape or ():
                    size *= int(dim)
                if size > MAX_DATASET_BYTES:
                    problems.append(f"{name}: dataset {obj_name!r} declares {size / 1024**3:.1f} GB, far more than any "
                                    "weight of a homework model; the file was not opened")

    try:
        f.visititems_links(visit)
    except ValueError:
        problems.append(f"{name}: the HDF5 file has more than {MAX_OBJECTS:,} objects; the file was not opened")
    return problems


def _layers(value: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    if depth > 200:
        raise RecursionError("config nested too deep")
    if isinstance(value, dict):
        if isinstance(value.get("class_name"), str):
            yield value
        for item in value.values():
            yield from _layers(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            yield from _layers(item, depth + 1)


def _config_problems(config: Any, name: str) -> list[str]:
    problems = []
    for layer in _layers(config):
        cls = layer["class_name"]
        inner = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        layer_name = inner.get("name", cls)
        if cls in REFUSED_LAYERS:
            problems.append(f"{name}: layer {layer_name!r} is a {cls}, which {REFUSED_LAYERS[cls]}; the grader does not "
                            "load such models")
        elif cls in LOOKUP_LAYERS and isinstance(inner.get("vocabulary"), str):
            problems.append(f"{name}: layer {layer_name!r} ({cls}) reads its vocabulary from the path "
                            f"{inner['vocabulary'][:100]!r}; the grader does not load models that read other files")
    return problems

"""What a model file is: decided ONCE, from its content, and then used by everything that opens it.

`sniff(path, name)` gives "h5", "keras" or "tflite". grader.facts.gather calls it once per file and hands the
answer to grader.facts.precheck, grader.facts.keras_file, grader.facts.fingerprints and the worker's loader
(`WorkerModel.format`), so none of them looks at the name or guesses again. It reads a few bytes and,
for a zip, the central directory; it imports no deep-learning library and runs nothing.

Each format is looked for where a reader of that format would find it:
- HDF5 (`.h5`, `.hdf5`): the superblock signature at byte 0, 512, 1024, 2048, ... (the HDF5 library
  searches those offsets, so other bytes, a "user block", may come first);
- zip (`.keras`): a local file header at byte 0, or an end-of-central-directory record at the end that
  leads `zipfile` to a central directory with at least one member (zip readers start at the END, so a zip
  can be appended to any file);
- TensorFlow Lite (`.tflite`): the FlatBuffer identifier ``TFL3`` at byte 4.

Refused, with a message that names the file, says what was found and how to fix it:
- a file that carries two formats: each reader would see a different model (an HDF5 dense model with a
  `.keras` CNN appended was inspected as the one and scored as the other). Two layouts that Keras and
  TFLite write themselves are not "two formats": a `.keras` zip whose stored ``*.h5`` member happens to
  start at one of HDF5's offsets (that HDF5 is the member, read as such), and a `.tflite` with a zip of
  text files appended (TFLite Support and Model Maker pack ``labels.txt`` that way);
- a file whose content is not what its name says (an HDF5 file named `.keras`, a zip named `.h5`). Such
  a file is REFUSED rather than read by its content, even when it is an honest mistake (a Keras 2 `.h5`
  renamed to `.keras`): Keras picks its reader by the name (Keras 3 will not load an HDF5 file named
  `.keras`), so the file would not load for the student either; the message says to rename it or save it
  again. One rule (the name must say what the content is) leaves no room for two readers to disagree;
- a file in which no format is found.
A name without a model suffix (a caller's own file) is decided by its content alone.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

__all__ = ["FileKindError", "ModelKind", "sniff"]

ModelKind = Literal["h5", "keras", "tflite"]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_TFLITE_ID = b"TFL3"
_SUFFIX_KIND: dict[str, ModelKind] = {".h5": "h5", ".hdf5": "h5", ".keras": "keras", ".tflite": "tflite"}
_WHAT: dict[str, str] = {"h5": "an HDF5 file (a Keras .h5 model)", "keras": "a zip archive (a .keras model)",
                         "tflite": "a TensorFlow Lite model"}
_SUFFIX: dict[str, str] = {"h5": ".h5", "keras": ".keras", "tflite": ".tflite"}
_MAX_ZIP_MEMBERS = 100_000  # a .keras archive has three; more is not looked through member by member


class FileKindError(ValueError):
    """A file that is not one model format, or not the one its name says; the message is for the student."""


@dataclass(frozen=True)
class _Found:
    """The format markers in a file (no decision yet)."""

    hdf5_at: tuple[int, ...]  # offsets of HDF5 superblock signatures that are not inside a zip member
    zip: bool
    zip_members: tuple[str, ...]
    tflite: bool
    head: bytes


def _hdf5_offsets(fh: BinaryIO, size: int) -> list[int]:
    offsets, at = [], 0
    while at + len(_HDF5_SIGNATURE) <= size:
        fh.seek(at)
        if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
            offsets.append(at)
        at = 512 if at == 0 else at * 2
    return offsets


def _member_data_starts(zf: zipfile.ZipFile, fh: BinaryIO) -> dict[int, str]:
    """Where each STORED member's bytes begin (after its local header), by offset."""
    starts: dict[int, str] = {}
    for info in zf.infolist()[:_MAX_ZIP_MEMBERS]:
        if info.compress_type != zipfile.ZIP_STORED:
            continue
        fh.seek(info.header_offset)
        header = fh.read(30)
        if len(header) == 30 and header[:4] == b"PK\x03\x04":
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            starts[info.header_offset + 30 + name_len + extra_len] = info.filename
    return starts


def _find(path: Path) -> _Found:
    with path.open("rb") as fh:
        head = fh.read(64)
        size = fh.seek(0, 2)
        hdf5 = _hdf5_offsets(fh, size)
        members: tuple[str, ...] = ()
        is_zip = head.startswith((b"PK\x03\x04", b"PK\x05\x06"))
        try:
            fh.seek(0)
            with zipfile.ZipFile(fh) as zf:
                members = tuple(zf.namelist())
                is_zip = is_zip or bool(members)  # an empty directory found at the end of other data is noise
                if hdf5 and members:
                    inside = _member_data_starts(zf, fh)
                    hdf5 = [at for at in hdf5 if not (at in inside and inside[at].lower().endswith(".h5"))]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError, OverflowError):
            pass  # no readable central directory: a zip only if it starts like one
    return _Found(hdf5_at=tuple(hdf5), zip=is_zip, zip_members=members, tflite=head[4:8] == _TFLITE_ID, head=head)


def _labels_zip(found: _Found) -> bool:
    """The zip TFLite Support appends to a model: text files (labels.txt, vocab.txt) and nothing else."""
    members = found.zip_members
    return bool(members) and all(m.lower().endswith(".txt") and not m.endswith("/") for m in members)


def _fix(kind: ModelKind, stem: str) -> str:
    if kind == "tflite":
        return "convert it again with tf.lite.TFLiteConverter and hand in the .tflite file it writes"
    return f"save it again with model.save('{stem or 'model'}{_SUFFIX[kind]}')"


def _looks_like(head: bytes) -> str:
    """What a file in which no model format was found looks like, for the message."""
    if not head:
        return "an empty file"
    if head.startswith(b"\x08") and b"onnx" in head.lower():
        return "an ONNX model"
    if head.startswith(b"\xef\xbb\xbf") or all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return f"a file starting {head[:8]!r}"


def sniff(path: str | Path, name: str | None = None) -> ModelKind:
    """The one decision of what the model file `path` is, by its content: "h5", "keras" or "tflite".

    `name` (default: the file's own name) is what the student called it: its suffix must agree with the
    content, and it is the name messages use. Raises `FileKindError` (a message for the student) when
    the file carries two formats, a format its name does not say, or none.
    """
    path = Path(path)
    name = name or path.name
    try:
        found = _find(path)
    except OSError as exc:
        raise FileKindError(f"{name}: the file cannot be read ({exc.strerror or exc})") from None
    base = Path(name.replace("\\", "/").rsplit("/", 1)[-1].rsplit("!", 1)[-1].rsplit("→", 1)[-1])
    expected = _SUFFIX_KIND.get(base.suffix.lower())
    kinds: list[ModelKind] = []
    if found.hdf5_at:
        kinds.append("h5")
    if found.tflite:
        kinds.append("tflite")
    if found.zip and not (found.tflite and not found.hdf5_at and _labels_zip(found)):
        kinds.append("keras")
    if len(kinds) > 1:
        what = " and ".join(_WHAT[k].split(" (")[0] for k in kinds)
        raise FileKindError(
            f"{name} is both {what}: different readers would see different models in it, so the grader does not "
            f"open it; {_fix(expected or kinds[0], base.stem)}"
        )
    if not kinds:
        if expected == "tflite":
            raise FileKindError(f"{name}: not a readable TensorFlow Lite model (the FlatBuffer identifier 'TFL3' is "
                                f"missing; this is {_looks_like(found.head)}); {_fix('tflite', base.stem)}")
        raise FileKindError(f"{name}: not a Keras model file (neither HDF5 .h5 nor a .keras zip; this is "
                            f"{_looks_like(found.head)}); save the model with model.save('model.keras')")
    (kind,) = kinds
    if expected is not None and kind != expected:
        raise FileKindError(
            f"{name} is named like {_WHAT[expected]} but it is {_WHAT[kind]}; the grader reads a file only when its "
            f"name says what it is: rename it to {base.stem}{_SUFFIX[kind]}, or {_fix(expected, base.stem)}"
        )
    return kind

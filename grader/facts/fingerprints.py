"""Fingerprints of a submission for finding near-identical work (read by grader.judging.similarity).

Gathering side, static: nothing here imports keras, deserialises a layer or runs student code.

- `weights_fingerprint`: one hash over the stored weight tensors of a model file, read with h5py.
  Each tensor is hashed as sha256(dtype, shape, bytes); the per-tensor hashes are SORTED before the
  final sha256, so renaming, reordering or re-nesting layers (and re-saving, which changes the
  file's sha256) leaves it unchanged, while any changed value changes it. Optimizer state
  (`optimizer_weights` in legacy .h5, `optimizer` in Keras 3 weights) is left out: a copied model
  compiled or trained for zero steps again is still the same model.
- The predicted class of every hidden-test image (`ModelEvidence.predicted`) is encoded by
  `grader.records.evidence.encode_labels` / `decode_labels`, beside the field.
- `code_fingerprints`: MOSS-style winnowing (Schleimer, Wilkerson, Aiken 2003) over the normalised
  tokens of a notebook's code cells, so renaming variables, changing comments, blank lines or
  spacing leaves the fingerprints unchanged.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import keyword
import re
import struct
import tempfile
import tokenize
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import h5py
import numpy as np

from grader.formats.filetype import FileKindError, ModelKind, sniff
from grader.facts.keras_file import open_member_h5  # reads a stored `.keras` member in place (no copy)

__all__ = ["code_fingerprints", "weights_fingerprint"]

# ---------------------------------------------------------------------------------------------
# Weights

_WEIGHTS_MEMBER = "model.weights.h5"
_MAX_MEMBER_BYTES = 2 * 1024**3  # a `.keras` weights member; VGG16 with its top is 0.5 GB
_MAX_TENSOR_BYTES = 2 * 1024**3  # all tensors hashed in one file together
_MAX_OBJECTS = 500_000  # groups and datasets visited in one file (as grader.facts.keras_file)
_SLAB_BYTES = 16 * 1024**2  # a large tensor is read and hashed in slabs of about this size
_NUMERIC_KINDS = frozenset("biufc")  # bool, int, uint, float, complex: what weights are made of
_OPTIMIZER_GROUPS = frozenset({"optimizer", "optimizer_weights"})
# What a damaged or hand-made file can make zipfile and h5py raise; each gives None.
_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError,
                RecursionError, EOFError, struct.error, zipfile.BadZipFile, zipfile.LargeZipFile)


class _Refused(Exception):
    """The file is beyond what the fingerprint reads (too many objects, too many bytes)."""


def weights_fingerprint(path: Path, kind: ModelKind | None = None) -> str | None:
    """sha256 (hex) over the sorted per-tensor hashes of the weights stored in a Keras model file.

    Reads a legacy `.h5` model (its `model_weights` group), a weights-only `.h5`
    (``save_weights``), or a `.keras` zip (its `model.weights.h5`). None when the file holds no
    weights or cannot be read; never raises for a bad file. Only real datasets reached through hard
    links are read: soft and external links, external storage and virtual datasets are skipped.
    `kind`: what the file is, grader.formats.filetype's decision (taken here when not given).
    """
    try:
        kind = kind or sniff(path)
        if kind == "keras":
            with _open_keras_weights(path) as f:
                return _fingerprint(f) if f is not None else None
        if kind != "h5":
            return None
        with h5py.File(path, "r") as f:
            root = f.get("model_weights", getlink=True)
            if isinstance(root, h5py.HardLink) and isinstance(f["model_weights"], h5py.Group):
                return _fingerprint(f["model_weights"])
            return _fingerprint(f)
    except (_Refused, FileKindError, *_READ_ERRORS):
        return None


@contextmanager
def _open_keras_weights(path: Path) -> Iterator[h5py.File | None]:
    with zipfile.ZipFile(path) as zf:
        try:
            info = zf.getinfo(_WEIGHTS_MEMBER)
        except KeyError:  # sharded or npz weights, or not a Keras archive
            yield None
            return
        if info.file_size > _MAX_MEMBER_BYTES:
            raise _Refused(f"{_WEIGHTS_MEMBER} is {info.file_size} bytes")
        if info.compress_type == zipfile.ZIP_STORED:  # as Keras writes it: read in place
            with open_member_h5(zf, info, path) as f:
                yield f
            return
        # re-zipped with compression: h5py seeks backwards, which a compressed stream does badly,
        # so the member is copied to a private temporary file (at most _MAX_MEMBER_BYTES)
        with tempfile.TemporaryFile() as tmp:
            with zf.open(info) as member:
                _copy_capped(member, tmp, _MAX_MEMBER_BYTES)
            tmp.seek(0)
            with h5py.File(tmp, "r") as f:
                yield f


def _copy_capped(src: IO[bytes], dst: IO[bytes], limit: int) -> None:
    copied = 0
    while chunk := src.read(1024**2):
        copied += len(chunk)
        if copied > limit:
            raise _Refused(f"member larger than {limit} bytes")
        dst.write(chunk)


def _fingerprint(root: h5py.Group) -> str | None:
    hashes = sorted(_tensor_hashes(root, top=root.name == "/"))
    if not hashes:
        return None
    return hashlib.sha256(b"".join(hashes)).hexdigest()


def _tensor_hashes(root: h5py.Group, *, top: bool) -> list[bytes]:
    """sha256 of every numeric dataset under `root`, found by walking hard links only."""
    out: list[bytes] = []
    seen: set[object] = {root.id}
    stack: list[tuple[h5py.Group, bool]] = [(root, top)]
    visited = 0
    total = 0
    while stack:
        group, is_top = stack.pop()
        for name in group:
            visited += 1
            if visited > _MAX_OBJECTS:
                raise _Refused(f"more than {_MAX_OBJECTS} objects")
            if is_top and name in _OPTIMIZER_GROUPS:
                continue
            if not isinstance(group.get(name, getlink=True), h5py.HardLink):
                continue  # soft and external links are never followed
            obj = group.get(name)
            if obj is None or obj.id in seen:
                continue
            seen.add(obj.id)
            if isinstance(obj, h5py.Group):
                stack.append((obj, False))
            elif isinstance(obj, h5py.Dataset):
                if obj.external or obj.is_virtual or obj.shape is None or obj.dtype.kind not in _NUMERIC_KINDS:
                    continue
                total += obj.size * obj.dtype.itemsize
                if total > _MAX_TENSOR_BYTES:
                    raise _Refused(f"more than {_MAX_TENSOR_BYTES} bytes of tensors")
                out.append(_tensor_hash(obj))
    return out


def _tensor_hash(ds: h5py.Dataset) -> bytes:
    """sha256 of dtype, shape and C-order little-endian bytes, read in slabs along the first axis."""
    dtype = ds.dtype.newbyteorder("<") if ds.dtype.byteorder in "<>=" else ds.dtype
    shape = tuple(int(d) for d in ds.shape)
    h = hashlib.sha256(f"{dtype.str}|{shape}|".encode())
    if not shape or ds.size == 0:
        h.update(np.ascontiguousarray(ds[()], dtype=dtype).tobytes())
        return h.digest()
    row_bytes = max(1, (ds.size // shape[0]) * ds.dtype.itemsize)
    step = max(1, _SLAB_BYTES // row_bytes)
    for start in range(0, shape[0], step):
        h.update(np.ascontiguousarray(ds[start:start + step], dtype=dtype).tobytes())
    return h.digest()


# ---------------------------------------------------------------------------------------------
# Predicted labels


# ---------------------------------------------------------------------------------------------
# Code

# k = 12 normalised tokens is about one statement (``V = V . fit ( V , V , epochs = N )`` is 14):
# shorter runs are idioms that independent students write alike, longer ones miss short copies.
# window = 8: every shared run of at least k + window - 1 = 19 tokens (two statements) is
# guaranteed to give a shared fingerprint, and about 2 / (window + 1) of the k-grams are kept,
# some 200-300 fingerprints for a homework notebook.
DEFAULT_K = 12
DEFAULT_WINDOW = 8
_MAX_TOKENS = 500_000  # per notebook; a homework notebook has a few thousand
_BUILTINS = frozenset(dir(builtins))
_KEYWORDS = frozenset(keyword.kwlist)
# Cell magics whose body is Python; the body of any other (%%bash, %%writefile, %%html) is skipped.
_PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun", "debug"})
_SHELL_OR_MAGIC = re.compile(r"^\s*(?:[!%?]|[\w.,\s\[\]()]+=\s*[!%])|\?\s*$")
_SKIP_TYPES = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
                         tokenize.ENDMARKER, tokenize.ERRORTOKEN})
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python >= 3.12 splits f-strings
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)
_Token = tuple[int, str]


def code_fingerprints(sources: Sequence[str], k: int = DEFAULT_K, window: int = DEFAULT_WINDOW) -> tuple[int, ...]:
    """Winnowed 64-bit hashes of the normalised tokens of a notebook's code cells, sorted and unique.

    IPython lines (``!pip``, ``%matplotlib``, ``x = !ls``, ``obj?``) are removed first, and a cell or
    line that does not tokenize is skipped. Comments, blank lines and indentation are dropped;
    identifiers become ``V`` unless they are keywords, builtins, attribute names (after ``.``) or
    names bound by an import; numbers become ``N`` and strings ``S``. Hashes are blake2b, so they
    are the same on every run and machine, and signed 64-bit (JSON-safe as Python ints).
    """
    if k < 1 or window < 1:
        raise ValueError(f"k and window must be at least 1; got k={k}, window={window}")
    cells = [_cell_tokens(source) for source in sources if isinstance(source, str)]
    imported = _imported_names(cells)
    tokens: list[str] = []
    for cell in cells:
        tokens.extend(_normalise(cell, imported))
        if len(tokens) > _MAX_TOKENS:
            del tokens[_MAX_TOKENS:]
            break
    hashes = [_hash_gram(tokens[i:i + k]) for i in range(len(tokens) - k + 1)]
    return tuple(sorted(_winnow(hashes, window)))


def _strip_magics(source: str) -> str | None:
    lines = source.splitlines()
    first = next((line.strip() for line in lines if line.strip()), "")
    if first.startswith("%%"):
        magic = first[2:].split(maxsplit=1)[0] if first[2:].split() else ""
        if magic not in _PYTHON_CELL_MAGICS:
            return None
    return "\n".join("" if _SHELL_OR_MAGIC.search(line) else line for line in lines) + "\n"


def _tokens(text: str) -> list[_Token]:
    return [(tok.type, tok.string) for tok in tokenize.generate_tokens(io.StringIO(text).readline)
            if tok.type not in _SKIP_TYPES]


def _cell_tokens(source: str) -> list[_Token]:
    """The cell's significant tokens; when the whole cell does not tokenize, line by line."""
    text = _strip_magics(source)
    if text is None:
        return []
    try:
        return _tokens(text)
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        pass
    out: list[_Token] = []
    for line in text.splitlines():
        try:
            out.extend(_tokens(line.strip() + "\n"))
        except (tokenize.TokenError, SyntaxError):
            continue
    return out


def _imported_names(cells: Sequence[Sequence[_Token]]) -> frozenset[str]:
    """Every name in an ``import`` / ``from ... import`` statement: modules, names and aliases."""
    names: set[str] = set()
    for cell in cells:
        in_import = False
        at_start = True
        for kind, text in cell:
            if kind == tokenize.NEWLINE or text == ";":
                in_import, at_start = False, True
                continue
            if at_start:
                in_import = kind == tokenize.NAME and text in ("import", "from")
                at_start = False
            if in_import and kind == tokenize.NAME and text not in _KEYWORDS:
                names.add(text)
    return frozenset(names)


def _normalise(cell: Sequence[_Token], imported: frozenset[str]) -> Iterator[str]:
    previous = ""
    fstring_depth = 0
    for kind, text in cell:
        if _FSTRING_START is not None and kind == _FSTRING_START:
            if fstring_depth == 0:
                yield "S"
            fstring_depth += 1
        elif _FSTRING_END is not None and kind == _FSTRING_END:
            fstring_depth -= 1
        elif fstring_depth:
            continue
        elif kind == tokenize.NAME:
            keep = text in _KEYWORDS or text in _BUILTINS or text in imported or previous == "."
            yield text if keep else "V"
        elif kind == tokenize.NUMBER:
            yield "N"
        elif kind == tokenize.STRING:
            yield "S"
        elif kind == tokenize.NEWLINE or text == ";":
            yield ";"
        else:
            yield text
        previous = text


def _hash_gram(gram: Sequence[str]) -> int:
    digest = hashlib.blake2b("\x1f".join(gram).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _winnow(hashes: Sequence[int], window: int) -> set[int]:
    """The minimum of every window of `window` consecutive hashes (a short sequence is one window).

    Only the set of values is kept, so which of two equal minima is chosen does not matter."""
    if len(hashes) <= window:
        return {min(hashes)} if hashes else set()
    return {min(hashes[start:start + window]) for start in range(len(hashes) - window + 1)}

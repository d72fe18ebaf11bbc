"""Static inspection of TensorFlow Lite models (`.tflite`): what a file declares, read without running it.

A `.tflite` file is a FlatBuffer (schema: tensorflow/lite/schema/schema.fbs, file identifier ``TFL3``).
This module reads the few tables the grader needs with its own bounds-checked reader (``_Table``):
every offset is checked against the file before it is followed, so a truncated or hostile file gives
a `TFLiteError` that says what is wrong, never an IndexError, a struct.error or a hang. Nothing here
imports TensorFlow, and no interpreter ever sees the file.

Read: the main subgraph's input and output tensors (shape, dtype, quantisation), its operators (types
and count), the dtypes of its constant tensors (int8 weights: quantised), the model's `metadata`
entries (converters write ``min_runtime_version`` and ``CONVERSION_METADATA``; TFLite Support and Model
Maker write ``TFLITE_METADATA``, itself a FlatBuffer, ``M001``, from which the input normalisation and
the label file's name are read), and the labels: TFLite Support packs associated files as a zip
appended to the FlatBuffer, so `zipfile` opens the model itself; a ``labels.txt`` beside the model is
used when the model carries none.
"""

from __future__ import annotations

import math
import mmap
import stat
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Literal

from grader.records.tflite import TFLiteInfo

MAX_TFLITE_BYTES = 1024**3  # a .tflite over 1 GB is refused before it is read
MAX_LABEL_BYTES = 1024**2  # a labels file larger than this is ignored
MAX_LABELS = 100_000
_MAX_RANK = 16
_MAX_OPERATORS = 200_000
_MAX_TENSORS = 500_000
_MAX_STRING = 4096  # longest name or metadata string kept
_MAX_METADATA_BYTES = 16 * 1024**2  # the TFLITE_METADATA buffer is parsed only below this size
_MAGIC = b"TFL3"
_MAX_ZIP_ENTRIES = 10_000  # members of the zip appended to a model (Model Maker writes one to three)
_MAX_ZIP_DIRECTORY = 4 * 1024**2

# tensorflow/lite/schema/schema.fbs, enum BuiltinOperator: the name of code i is _BUILTIN_OPS[i]
_BUILTIN_OPS = (
    'ADD', 'AVERAGE_POOL_2D', 'CONCATENATION', 'CONV_2D', 'DEPTHWISE_CONV_2D', 'DEPTH_TO_SPACE', 'DEQUANTIZE',
    'EMBEDDING_LOOKUP', 'FLOOR', 'FULLY_CONNECTED', 'HASHTABLE_LOOKUP', 'L2_NORMALIZATION', 'L2_POOL_2D',
    'LOCAL_RESPONSE_NORMALIZATION', 'LOGISTIC', 'LSH_PROJECTION', 'LSTM', 'MAX_POOL_2D', 'MUL', 'RELU',
    'RELU_N1_TO_1', 'RELU6', 'RESHAPE', 'RESIZE_BILINEAR', 'RNN', 'SOFTMAX', 'SPACE_TO_DEPTH', 'SVDF', 'TANH',
    'CONCAT_EMBEDDINGS', 'SKIP_GRAM', 'CALL', 'CUSTOM', 'EMBEDDING_LOOKUP_SPARSE', 'PAD',
    'UNIDIRECTIONAL_SEQUENCE_RNN', 'GATHER', 'BATCH_TO_SPACE_ND', 'SPACE_TO_BATCH_ND', 'TRANSPOSE', 'MEAN', 'SUB',
    'DIV', 'SQUEEZE', 'UNIDIRECTIONAL_SEQUENCE_LSTM', 'STRIDED_SLICE', 'BIDIRECTIONAL_SEQUENCE_RNN', 'EXP', 'TOPK_V2',
    'SPLIT', 'LOG_SOFTMAX', 'DELEGATE', 'BIDIRECTIONAL_SEQUENCE_LSTM', 'CAST', 'PRELU', 'MAXIMUM', 'ARG_MAX',
    'MINIMUM', 'LESS', 'NEG', 'PADV2', 'GREATER', 'GREATER_EQUAL', 'LESS_EQUAL', 'SELECT', 'SLICE', 'SIN',
    'TRANSPOSE_CONV', 'SPARSE_TO_DENSE', 'TILE', 'EXPAND_DIMS', 'EQUAL', 'NOT_EQUAL', 'LOG', 'SUM', 'SQRT', 'RSQRT',
    'SHAPE', 'POW', 'ARG_MIN', 'FAKE_QUANT', 'REDUCE_PROD', 'REDUCE_MAX', 'PACK', 'LOGICAL_OR', 'ONE_HOT',
    'LOGICAL_AND', 'LOGICAL_NOT', 'UNPACK', 'REDUCE_MIN', 'FLOOR_DIV', 'REDUCE_ANY', 'SQUARE', 'ZEROS_LIKE', 'FILL',
    'FLOOR_MOD', 'RANGE', 'RESIZE_NEAREST_NEIGHBOR', 'LEAKY_RELU', 'SQUARED_DIFFERENCE', 'MIRROR_PAD', 'ABS',
    'SPLIT_V', 'UNIQUE', 'CEIL', 'REVERSE_V2', 'ADD_N', 'GATHER_ND', 'COS', 'WHERE', 'RANK', 'ELU',
    'REVERSE_SEQUENCE', 'MATRIX_DIAG', 'QUANTIZE', 'MATRIX_SET_DIAG', 'ROUND', 'HARD_SWISH', 'IF', 'WHILE',
    'NON_MAX_SUPPRESSION_V4', 'NON_MAX_SUPPRESSION_V5', 'SCATTER_ND', 'SELECT_V2', 'DENSIFY', 'SEGMENT_SUM',
    'BATCH_MATMUL', 'PLACEHOLDER_FOR_GREATER_OP_CODES', 'CUMSUM', 'CALL_ONCE', 'BROADCAST_TO', 'RFFT2D', 'CONV_3D',
    'IMAG', 'REAL', 'COMPLEX_ABS', 'HASHTABLE', 'HASHTABLE_FIND', 'HASHTABLE_IMPORT', 'HASHTABLE_SIZE', 'REDUCE_ALL',
    'CONV_3D_TRANSPOSE', 'VAR_HANDLE', 'READ_VARIABLE', 'ASSIGN_VARIABLE', 'BROADCAST_ARGS', 'RANDOM_STANDARD_NORMAL',
    'BUCKETIZE', 'RANDOM_UNIFORM', 'MULTINOMIAL', 'GELU', 'DYNAMIC_UPDATE_SLICE', 'RELU_0_TO_1',
    'UNSORTED_SEGMENT_PROD', 'UNSORTED_SEGMENT_MAX', 'UNSORTED_SEGMENT_SUM', 'ATAN2', 'UNSORTED_SEGMENT_MIN', 'SIGN',
    'BITCAST', 'BITWISE_XOR', 'RIGHT_SHIFT', 'STABLEHLO_LOGISTIC', 'STABLEHLO_ADD', 'STABLEHLO_DIVIDE',
    'STABLEHLO_MULTIPLY', 'STABLEHLO_MAXIMUM', 'STABLEHLO_RESHAPE', 'STABLEHLO_CLAMP', 'STABLEHLO_CONCATENATE',
    'STABLEHLO_BROADCAST_IN_DIM', 'STABLEHLO_CONVOLUTION', 'STABLEHLO_SLICE', 'STABLEHLO_CUSTOM_CALL',
    'STABLEHLO_REDUCE', 'STABLEHLO_ABS', 'STABLEHLO_AND', 'STABLEHLO_COSINE', 'STABLEHLO_EXPONENTIAL',
    'STABLEHLO_FLOOR', 'STABLEHLO_LOG', 'STABLEHLO_MINIMUM', 'STABLEHLO_NEGATE', 'STABLEHLO_OR', 'STABLEHLO_POWER',
    'STABLEHLO_REMAINDER', 'STABLEHLO_RSQRT', 'STABLEHLO_SELECT', 'STABLEHLO_SUBTRACT', 'STABLEHLO_TANH',
    'STABLEHLO_SCATTER', 'STABLEHLO_COMPARE', 'STABLEHLO_CONVERT', 'STABLEHLO_DYNAMIC_SLICE',
    'STABLEHLO_DYNAMIC_UPDATE_SLICE', 'STABLEHLO_PAD', 'STABLEHLO_IOTA', 'STABLEHLO_DOT_GENERAL',
    'STABLEHLO_REDUCE_WINDOW', 'STABLEHLO_SORT', 'STABLEHLO_WHILE', 'STABLEHLO_GATHER', 'STABLEHLO_TRANSPOSE',
    'DILATE', 'STABLEHLO_RNG_BIT_GENERATOR', 'REDUCE_WINDOW', 'STABLEHLO_COMPOSITE', 'STABLEHLO_SHIFT_LEFT',
    'STABLEHLO_CBRT', 'STABLEHLO_CASE',
)
_CUSTOM = 32
# enum TensorType, as numpy spells the dtypes
_DTYPES = ("float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64", "int8",
           "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4", "bfloat16", "int2",
           "uint4")
_INTEGER = {"uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64", "int4", "uint4", "int2"}
_PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "RESHAPE", "SQUEEZE", "CAST", "IDENTITY"}

# Field ids (the position in the schema's table, counting each union as two fields)
_MODEL_VERSION, _MODEL_OPCODES, _MODEL_SUBGRAPHS, _MODEL_DESCRIPTION, _MODEL_BUFFERS, _MODEL_METADATA = 0, 1, 2, 3, 4, 6
_SG_TENSORS, _SG_INPUTS, _SG_OUTPUTS, _SG_OPERATORS = 0, 1, 2, 3
_T_SHAPE, _T_TYPE, _T_BUFFER, _T_NAME, _T_QUANT, _T_SHAPE_SIGNATURE = 0, 1, 2, 3, 4, 7
_Q_SCALE, _Q_ZERO_POINT = 2, 3
_OP_OPCODE, _OP_INPUTS, _OP_OUTPUTS = 0, 1, 2
_OC_DEPRECATED, _OC_CUSTOM, _OC_BUILTIN = 0, 1, 3
_BUF_DATA, _BUF_OFFSET, _BUF_SIZE = 0, 1, 2
_MD_NAME, _MD_BUFFER = 0, 1
# tensorflow_lite_support/metadata/metadata_schema.fbs (file identifier "M001")
_MM_NAME, _MM_SUBGRAPHS, _MM_FILES = 0, 3, 6
_SGM_INPUTS, _SGM_OUTPUTS, _SGM_FILES = 2, 3, 4
_TM_PROCESS_UNITS, _TM_FILES = 4, 6
_PU_TYPE, _PU_OPTIONS, _NORMALIZATION = 0, 1, 1
_AF_NAME, _AF_TYPE, _TENSOR_AXIS_LABELS = 0, 2, 2


class TFLiteError(ValueError):
    """The file is not a TensorFlow Lite model the grader can read; the message says what is wrong."""


class _Table:
    """A FlatBuffer table at `pos` in `buf`. Every read checks its bounds and raises TFLiteError."""

    __slots__ = ("buf", "pos", "vtable", "vt_size", "what")

    def __init__(self, buf: bytes | mmap.mmap, pos: int, what: str) -> None:
        self.buf, self.pos, self.what = buf, pos, what
        self.vtable = pos - _read(buf, "<i", pos, what)
        self.vt_size = _read(buf, "<H", self.vtable, what)
        if self.vt_size < 4 or self.vt_size % 2:
            raise TFLiteError(f"{what}: bad table layout at byte {pos}")
        _need(buf, self.vtable, self.vt_size, what)

    def _field(self, fid: int) -> int:
        slot = 4 + 2 * fid
        return 0 if slot >= self.vt_size else _read(self.buf, "<H", self.vtable + slot, self.what)

    def scalar(self, fid: int, fmt: str, default: int | float = 0) -> int | float:
        off = self._field(fid)
        return default if off == 0 else _read(self.buf, fmt, self.pos + off, self.what)

    def _target(self, fid: int) -> int | None:
        off = self._field(fid)
        if off == 0:
            return None
        at = self.pos + off
        return at + _read(self.buf, "<I", at, self.what)

    def table(self, fid: int, what: str) -> _Table | None:
        at = self._target(fid)
        return None if at is None else _Table(self.buf, at, what)

    def vector(self, fid: int, elem: int, what: str) -> tuple[int, int]:
        """(start, length) of a vector of `elem`-byte elements; (0, 0) when absent."""
        at = self._target(fid)
        if at is None:
            return 0, 0
        n = _read(self.buf, "<I", at, what)
        _need(self.buf, at + 4, n * elem, what)
        return at + 4, n

    def scalars(self, fid: int, fmt: str, what: str, limit: int) -> tuple[int | float, ...]:
        start, n = self.vector(fid, struct.calcsize(fmt), what)
        if n > limit:
            raise TFLiteError(f"{what}: {n:,} values, more than the {limit:,} a model can have here")
        return struct.unpack_from(f"<{n}{fmt}", self.buf, start) if n else ()

    def tables(self, fid: int, what: str) -> tuple[int, int]:
        return self.vector(fid, 4, what)

    def table_at(self, start: int, i: int, what: str) -> _Table:
        at = start + 4 * i
        return _Table(self.buf, at + _read(self.buf, "<I", at, what), what)

    def string(self, fid: int, what: str) -> str | None:
        start, n = self.vector(fid, 1, what)
        if not start:
            return None
        return bytes(self.buf[start : start + min(n, _MAX_STRING)]).decode("utf-8", "replace")


def _need(buf: bytes | mmap.mmap, pos: int, size: int, what: str) -> None:
    if pos < 0 or size < 0 or pos + size > len(buf):
        raise TFLiteError(f"{what}: points outside the file (byte {pos:,} of {len(buf):,}); the file is truncated or corrupt")


def _read(buf: bytes | mmap.mmap, fmt: str, pos: int, what: str) -> int:
    _need(buf, pos, struct.calcsize(fmt), what)
    return struct.unpack_from(fmt, buf, pos)[0]


def _signature(buf: bytes | mmap.mmap) -> str:
    """What a file that is not a .tflite looks like, for the error message."""
    head = bytes(buf[:8])
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras .h5 model?) renamed to .tflite"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a .keras model or a zipped folder?)"
    if head.startswith(b"\x08") and b"onnx" in bytes(buf[:64]).lower():
        return "an ONNX model"
    if head[:1] in (b"{", b"<") or head.startswith(b"\xef\xbb\xbf"):
        return "a text file"
    return f"a file starting {head!r}"


def _root(buf: bytes | mmap.mmap) -> _Table:
    if len(buf) < 8:
        raise TFLiteError(f"the file is {len(buf)} bytes long: too short to be a TensorFlow Lite model")
    if bytes(buf[4:8]) != _MAGIC:
        raise TFLiteError(f"not a TensorFlow Lite model: the FlatBuffer identifier 'TFL3' is missing; this is {_signature(buf)}")
    return _Table(buf, _read(buf, "<I", 0, "model"), "model")


def _quant(tensor: _Table, dtype: str, what: str) -> tuple[float, int] | None:
    q = tensor.table(_T_QUANT, f"{what} quantization")
    if q is None or dtype not in _INTEGER:
        return None
    scales = q.scalars(_Q_SCALE, "f", f"{what} scale", 1 << 20)
    zeros = q.scalars(_Q_ZERO_POINT, "q", f"{what} zero point", 1 << 20)
    if len(scales) != 1 or not (scales[0] > 0 and math.isfinite(scales[0])):
        return None
    return float(scales[0]), int(zeros[0]) if zeros else 0


_INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767), "uint16": (0, 65535)}


def _range(quant: tuple[float, int] | None, dtype: str) -> tuple[float, float] | None:
    if quant is None or dtype not in _INT_RANGES:
        return None
    lo, hi = _INT_RANGES[dtype]
    return round((lo - quant[1]) * quant[0], 6), round((hi - quant[1]) * quant[0], 6)


def _tensor(sg: _Table, tensors: tuple[int, int], index: int, what: str) -> tuple[_Table, str, tuple[int | None, ...]]:
    start, n = tensors
    if not 0 <= index < n:
        raise TFLiteError(f"{what}: tensor index {index} out of range (the subgraph has {n} tensors)")
    t = sg.table_at(start, index, f"{what} tensor")
    code = int(t.scalar(_T_TYPE, "<b"))
    dtype = _DTYPES[code] if 0 <= code < len(_DTYPES) else f"type{code}"
    dims = t.scalars(_T_SHAPE_SIGNATURE, "i", f"{what} shape", _MAX_RANK) or t.scalars(_T_SHAPE, "i", f"{what} shape", _MAX_RANK)
    if any(d < -1 for d in dims):
        raise TFLiteError(f"{what}: impossible shape {list(dims)}")
    return t, dtype, tuple(None if d == -1 else int(d) for d in dims)


def _op_names(model: _Table) -> list[str]:
    start, n = model.tables(_MODEL_OPCODES, "operator codes")
    if n > _MAX_OPERATORS:
        raise TFLiteError(f"operator codes: {n:,} of them, more than any model has")
    names = []
    for i in range(n):
        oc = model.table_at(start, i, "operator code")
        code = max(int(oc.scalar(_OC_DEPRECATED, "<b")), int(oc.scalar(_OC_BUILTIN, "<i")))
        if code == _CUSTOM:
            names.append(f"CUSTOM:{oc.string(_OC_CUSTOM, 'custom operator name') or '?'}")
        else:
            names.append(_BUILTIN_OPS[code] if 0 <= code < len(_BUILTIN_OPS) else f"BUILTIN_{code}")
    return names


def _buffer_bytes(buf: bytes | mmap.mmap, model: _Table, index: int, limit: int) -> bytes | None:
    """The bytes of buffer `index` (inline data, or offset/size for models over 2 GB); None if absent or over `limit`."""
    start, n = model.tables(_MODEL_BUFFERS, "buffers")
    if not 0 <= index < n:
        return None
    b = model.table_at(start, index, "buffer")
    data, size = b.vector(_BUF_DATA, 1, "buffer data")
    if not data:
        offset, size = int(b.scalar(_BUF_OFFSET, "<Q")), int(b.scalar(_BUF_SIZE, "<Q"))
        if offset <= 1:
            return None
        _need(buf, offset, size, "buffer data")
        data = offset
    return None if size > limit else bytes(buf[data : data + size])


def _metadata_flatbuffer(data: bytes) -> tuple[str | None, tuple[tuple[float, ...], tuple[float, ...]] | None, str | None]:
    """(model name, input normalisation, name of the output's label file) from a TFLITE_METADATA buffer."""
    if len(data) < 8 or data[4:8] != b"M001":
        raise TFLiteError("TFLITE_METADATA: not a TFLite metadata FlatBuffer (identifier 'M001' missing)")
    mm = _Table(data, _read(data, "<I", 0, "TFLITE_METADATA"), "TFLITE_METADATA")
    name = mm.string(_MM_NAME, "TFLITE_METADATA name")
    norm, label_file = None, None
    start, n = mm.tables(_MM_SUBGRAPHS, "TFLITE_METADATA subgraphs")
    files: list[tuple[str | None, int]] = []
    if n:
        sg = mm.table_at(start, 0, "TFLITE_METADATA subgraph")
        s, k = sg.tables(_SGM_INPUTS, "TFLITE_METADATA inputs")
        if k:
            tm = sg.table_at(s, 0, "TFLITE_METADATA input")
            ps, pn = tm.tables(_TM_PROCESS_UNITS, "TFLITE_METADATA process units")
            for i in range(min(pn, 64)):
                pu = tm.table_at(ps, i, "TFLITE_METADATA process unit")
                if int(pu.scalar(_PU_TYPE, "<B")) == _NORMALIZATION:
                    opts = pu.table(_PU_OPTIONS, "TFLITE_METADATA normalization")
                    if opts is not None:
                        mean = tuple(float(v) for v in opts.scalars(0, "f", "normalization mean", 4096))
                        std = tuple(float(v) for v in opts.scalars(1, "f", "normalization std", 4096))
                        if not all(map(math.isfinite, mean + std)) or not all(std):
                            raise TFLiteError(f"TFLITE_METADATA: impossible normalization mean {mean}, std {std}")
                        norm = (mean, std)
        s, k = sg.tables(_SGM_OUTPUTS, "TFLITE_METADATA outputs")
        if k:
            tm = sg.table_at(s, 0, "TFLITE_METADATA output")
            files += _files(tm, _TM_FILES)
        files += _files(sg, _SGM_FILES)
    files += _files(mm, _MM_FILES)
    label_file = next((f for f, kind in files if kind == _TENSOR_AXIS_LABELS and f), None)
    return name, norm, label_file


def _files(table: _Table, fid: int) -> list[tuple[str | None, int]]:
    start, n = table.tables(fid, "TFLITE_METADATA associated files")
    out = []
    for i in range(min(n, 256)):
        af = table.table_at(start, i, "TFLITE_METADATA associated file")
        out.append((af.string(_AF_NAME, "associated file name"), int(af.scalar(_AF_TYPE, "<b"))))
    return out


def _parse_labels(data: bytes, what: str) -> tuple[str, ...]:
    text = data.decode("utf-8-sig", "replace")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) > MAX_LABELS:
        raise TFLiteError(f"{what}: {len(labels):,} labels, more than {MAX_LABELS:,}")
    return labels


def _zip_directory_problem(path: Path) -> str | None:
    """Why the zip at the end of `path` should not be opened (a central directory too large to parse), or None.
    Read from the end-of-central-directory record, before `zipfile` parses every entry."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - (22 + 65535)))
            tail = fh.read()
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None  # no zip: zipfile will say so
    entries, directory = struct.unpack_from("<HI", tail, at + 10)
    if entries == 0xFFFF or directory == 0xFFFFFFFF:
        return "is a zip64 archive"
    if entries > _MAX_ZIP_ENTRIES or directory > _MAX_ZIP_DIRECTORY:
        return f"declares {entries:,} members in a {directory:,}-byte directory"
    return None


def _zip_labels(path: Path, wanted: str | None) -> tuple[tuple[str, ...], tuple[str, ...] | None, list[str]]:
    """(member names, labels, warnings) of a zip appended to the model; labels come from `wanted`
    (the metadata's label file) or else a member named labels.txt."""
    warnings: list[str] = []
    names: tuple[str, ...] = ()
    chosen: zipfile.ZipInfo | None = None
    problem = _zip_directory_problem(path)
    if problem:
        return (), None, [f"the zip appended to the model {problem}; it was not read"]
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return (), None, warnings  # no zip appended: the usual case for a converter's output
    except (OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
        return (), None, [f"the zip appended to the model cannot be read ({type(exc).__name__}: {exc}); labels not read"]
    try:
        with zf:
            infos = zf.infolist()[:1000]
            names = tuple(i.filename for i in infos)
            chosen = next((i for i in infos if wanted and i.filename == wanted), None) or next(
                (i for i in infos if i.filename.rsplit("/", 1)[-1].lower() == "labels.txt"), None)
            if chosen is None:
                return names, None, warnings
            if chosen.file_size > MAX_LABEL_BYTES:
                warnings.append(f"{chosen.filename} in the model is {chosen.file_size:,} bytes; labels not read")
                return names, None, warnings
            with zf.open(chosen) as fh:
                return names, _parse_labels(fh.read(MAX_LABEL_BYTES + 1)[:MAX_LABEL_BYTES], chosen.filename), warnings
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error,
            TFLiteError) as exc:
        warnings.append(f"{chosen.filename if chosen else 'the zip'} in the model cannot be read "
                        f"({type(exc).__name__}: {exc}); labels not read")
        return names, None, warnings


def labels_beside(model_path: str | Path) -> tuple[str, ...] | None:
    """The labels in a regular file `labels.txt` next to the model (one label a line), or None."""
    candidate = Path(model_path).with_name("labels.txt")
    try:
        info = candidate.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_LABEL_BYTES:
        return None
    try:
        return _parse_labels(candidate.read_bytes(), str(candidate)) or None
    except (OSError, TFLiteError):
        return None


def _inspect_buffer(buf: bytes | mmap.mmap) -> dict[str, object]:
    model = _root(buf)
    version = int(model.scalar(_MODEL_VERSION, "<I"))
    ops = _op_names(model)
    sgs, sg_count = model.tables(_MODEL_SUBGRAPHS, "subgraphs")
    if sg_count == 0:
        raise TFLiteError("the model has no subgraph: there is nothing to run")
    sg = model.table_at(sgs, 0, "subgraph 0")
    tensors = sg.tables(_SG_TENSORS, "tensors")
    inputs = sg.scalars(_SG_INPUTS, "i", "subgraph inputs", 1 << 16)
    outputs = sg.scalars(_SG_OUTPUTS, "i", "subgraph outputs", 1 << 16)
    if not inputs or not outputs:
        raise TFLiteError(f"the main subgraph has {len(inputs)} input(s) and {len(outputs)} output(s); a classifier needs one of each")
    t_in, in_dtype, in_shape = _tensor(sg, tensors, int(inputs[0]), "input")
    t_out, out_dtype, out_shape = _tensor(sg, tensors, int(outputs[0]), "output")
    in_quant = _quant(t_in, in_dtype, "input")

    used: set[str] = set()
    producer: dict[int, tuple[str, int | None]] = {}
    operator_count = 0
    for g in range(sg_count):
        sub = sg if g == 0 else model.table_at(sgs, g, f"subgraph {g}")
        start, n = sub.tables(_SG_OPERATORS, "operators")
        operator_count += n
        if operator_count > _MAX_OPERATORS:
            raise TFLiteError(f"more than {_MAX_OPERATORS:,} operators: not a model the grader reads")
        for i in range(n):
            op = sub.table_at(start, i, "operator")
            index = int(op.scalar(_OP_OPCODE, "<I"))
            if index >= len(ops):
                raise TFLiteError(f"operator {i} of subgraph {g} uses operator code {index}; the model has {len(ops)}")
            used.add(ops[index])
            if g == 0:
                ins = op.scalars(_OP_INPUTS, "i", "operator inputs", 1 << 16)
                for out in op.scalars(_OP_OUTPUTS, "i", "operator outputs", 1 << 16):
                    producer[int(out)] = (ops[index], int(ins[0]) if ins else None)
    last_op, tensor = None, int(outputs[0])
    for _ in range(16):
        if tensor not in producer:
            break
        last_op, source = producer[tensor]
        if last_op not in _PASS_THROUGH or source is None:
            break
        tensor = source

    weight_dtypes: set[str] = set()
    bstart, bcount = model.tables(_MODEL_BUFFERS, "buffers")
    tstart, tcount = tensors
    if tcount > _MAX_TENSORS:
        raise TFLiteError(f"{tcount:,} tensors: not a model the grader reads")
    for i in range(tcount):
        t = sg.table_at(tstart, i, "tensor")
        index = int(t.scalar(_T_BUFFER, "<I"))
        if 0 < index < bcount:
            b = model.table_at(bstart, index, "buffer")
            if b.vector(_BUF_DATA, 1, "buffer data")[1] or int(b.scalar(_BUF_SIZE, "<Q")):
                code = int(t.scalar(_T_TYPE, "<b"))
                weight_dtypes.add(_DTYPES[code] if 0 <= code < len(_DTYPES) else f"type{code}")

    metadata_names: list[str] = []
    found: dict[str, object] = {}
    warnings: list[str] = []
    mstart, mcount = model.tables(_MODEL_METADATA, "metadata")
    for i in range(min(mcount, 256)):
        md = model.table_at(mstart, i, "metadata entry")
        name = md.string(_MD_NAME, "metadata name") or ""
        metadata_names.append(name)
        index = int(md.scalar(_MD_BUFFER, "<I"))
        if name == "min_runtime_version":
            raw = _buffer_bytes(buf, model, index, 256)
            found["min_runtime_version"] = raw.split(b"\0", 1)[0].decode("ascii", "replace") if raw else None
        elif name == "TFLITE_METADATA":
            raw = _buffer_bytes(buf, model, index, _MAX_METADATA_BYTES)
            try:
                if raw is None:
                    raise TFLiteError("TFLITE_METADATA: its buffer is missing or too large")
                mname, norm, label_file = _metadata_flatbuffer(raw)
                found.update(metadata_model_name=mname, input_normalization=norm, label_file=label_file)
            except TFLiteError as exc:
                warnings.append(f"{exc}; the metadata was not read")
    return dict(
        schema_version=version, description=model.string(_MODEL_DESCRIPTION, "description"), subgraph_count=sg_count,
        input_count=len(inputs), output_count=len(outputs),
        input_name=t_in.string(_T_NAME, "input name"), input_shape=in_shape, input_dtype=in_dtype,
        input_quant=in_quant, input_range=_range(in_quant, in_dtype),
        output_name=t_out.string(_T_NAME, "output name"), output_shape=out_shape, output_dtype=out_dtype,
        output_quant=_quant(t_out, out_dtype, "output"),
        operator_count=operator_count, ops=tuple(sorted(used)), last_op=last_op, weight_dtypes=tuple(sorted(weight_dtypes)),
        metadata_names=tuple(metadata_names), model_maker="TFLITE_METADATA" in metadata_names,
        warnings=warnings, **found,
    )


def inspect_tflite(path: str | Path, max_bytes: int = MAX_TFLITE_BYTES, sibling_labels: bool = True) -> TFLiteInfo:
    """Read a `.tflite` file statically. Raises TFLiteError (saying what is wrong) for a file that is
    missing, over `max_bytes`, truncated, or not a TensorFlow Lite model. Labels come from the file
    itself (a zip appended by TFLite Support) or, with `sibling_labels`, from a labels.txt beside it."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as exc:
        raise TFLiteError(f"cannot read the file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TFLiteError("not a regular file")
    size = info.st_size
    if size > max_bytes:
        raise TFLiteError(f"the file is {size:,} bytes; .tflite files over {max_bytes:,} bytes are not read")
    if size < 8:
        raise TFLiteError(f"the file is {size} bytes long: too short to be a TensorFlow Lite model")
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            fields = _inspect_buffer(buf)
    except TFLiteError:
        raise
    except (OSError, ValueError) as exc:  # ValueError: mmap of a file emptied since stat
        raise TFLiteError(f"cannot read the file: {getattr(exc, 'strerror', None) or exc}") from None
    warnings = list(fields.pop("warnings"))  # type: ignore[call-overload]
    label_file = fields.pop("label_file", None)
    members, labels, zip_warnings = _zip_labels(path, label_file)  # type: ignore[arg-type]
    warnings += zip_warnings
    source: Literal["metadata", "labels.txt"] | None = "metadata" if labels else None
    if not labels and sibling_labels:
        labels = labels_beside(path)
        source = "labels.txt" if labels else None
    return TFLiteInfo(size_bytes=size, associated_files=members, labels=labels or None, labels_source=source,
                      warnings=tuple(warnings), **fields)  # type: ignore[arg-type]


def looks_like_tflite(path: str | Path) -> bool:
    """Whether the file carries the TFLite FlatBuffer identifier (bytes 4-8 are 'TFL3'); reads 8 bytes."""
    try:
        with open(path, "rb") as fh:
            return fh.read(8)[4:8] == _MAGIC
    except OSError:
        return False

"""Predicting with a TensorFlow Lite model, as it runs inside the worker process.

The caller gives float images already in the model's spatial size and value range (the worker chooses
the preprocessing on public data: [0, 1], [0, 255], ...). This module handles the rest:

- dtype: float inputs are fed as they are; integer (uint8/int8/int16) inputs are quantised with the
  input's own scale and zero point, q = round(x / scale + zero_point), clipped to the dtype's range;
  integer outputs are dequantised, (q - zero_point) * scale, so the result is float32 in any case;
- batching: the input is resized to `batch_size` images when the model allows it; whether it does is
  checked, not assumed (the first image is also run alone, and the batched row must agree), since a
  model that mixes the batch (fixed reshapes, means over axis 0) can run batched and be silently wrong;
  otherwise images go one at a time;
- the interpreter: ``ai_edge_litert.interpreter.Interpreter`` (LiteRT, the interpreter's new home) when
  it is installed, else ``tf.lite.Interpreter``; if the first cannot run the model (e.g. LiteRT lacks
  the Flex delegate that TensorFlow ops need), the other is tried.

The file is inspected statically first (`grader.formats.tflite_file`), so garbage is refused with a clear message
before any native code parses it. No labels come here: scoring is done by the grader's process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grader.formats.tflite_file import TFLiteError, inspect_tflite

Loader = Literal["auto", "litert", "tensorflow"]


class TFLiteEvalError(RuntimeError):
    """The model cannot be run on these images; the message says why and what the model expects."""


@dataclass(frozen=True)
class TFLiteOutputs:
    outputs: np.ndarray = field(repr=False)  # float32 (N, K), dequantised
    loader: str  # "tflite: ai-edge-litert 2.3.0" / "tflite: tensorflow 2.21.0 interpreter"
    batched: bool  # whether images went through in batches (else one at a time)
    input_dtype: str
    notes: tuple[str, ...] = ()


def _litert() -> tuple[Callable[..., Any], str]:
    from ai_edge_litert import interpreter as litert

    try:
        from importlib.metadata import version

        v = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - the version is for the report only
        v = "?"
    return litert.Interpreter, f"tflite: ai-edge-litert {v}"


def _tensorflow() -> tuple[Callable[..., Any], str]:
    import tensorflow as tf

    return tf.lite.Interpreter, f"tflite: tensorflow {tf.__version__} interpreter"


def _loaders(prefer: Loader) -> list[tuple[str, Callable[[], tuple[Callable[..., Any], str]]]]:
    if prefer == "litert":
        return [("ai-edge-litert", _litert)]
    if prefer == "tensorflow":
        return [("tensorflow", _tensorflow)]
    return [("ai-edge-litert", _litert), ("tensorflow", _tensorflow)]


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def open_interpreter(path: str | Path, num_threads: int = 1, prefer: Loader = "auto") -> tuple[Any, str]:
    """An interpreter with tensors allocated, and the loader's description; tries LiteRT, then TensorFlow."""
    errors: list[str] = []
    for name, get in _loaders(prefer):
        try:
            cls, description = get()
        except ImportError as exc:
            errors.append(f"{name}: not installed ({exc})")
            continue
        try:
            with warnings.catch_warnings():  # tf.lite.Interpreter warns that it moved to LiteRT
                warnings.simplefilter("ignore")
                interp = cls(model_path=str(path), num_threads=num_threads)
            interp.allocate_tensors()
            return interp, description
        except Exception as exc:  # noqa: BLE001 - every loader's failure is reported, then the next is tried
            errors.append(f"{name}: {_short(exc)}")
    raise TFLiteEvalError("no TensorFlow Lite interpreter could run the model: " + " | ".join(errors))


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype[Any]) -> np.ndarray:
    """q = round(x / scale + zero_point), clipped to the range of the integer `dtype`."""
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float64) / scale + zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """(q - zero_point) * scale, as float32."""
    return ((q.astype(np.float64) - zero_point) * scale).astype(np.float32)


def _quant_params(detail: dict[str, Any]) -> tuple[float, int] | None:
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", ()), dtype=np.float64).ravel()
    zeros = np.asarray(params.get("zero_points", ()), dtype=np.int64).ravel()
    if scales.size == 0:
        scale, zero = detail.get("quantization", (0.0, 0))
        scales, zeros = np.array([scale], np.float64), np.array([zero], np.int64)
    if scales.size != 1 or not scales[0] > 0:
        return None
    return float(scales[0]), int(zeros[0]) if zeros.size else 0


class _Runner:
    """Feeds one input, reads one output; holds the conversions so that every batch is treated alike."""

    def __init__(self, interp: Any) -> None:
        self.interp = interp
        ins, outs = interp.get_input_details(), interp.get_output_details()
        if len(ins) != 1:
            raise TFLiteEvalError(f"the model has {len(ins)} inputs; the grader feeds one image input")
        self.notes: list[str] = []
        if len(outs) > 1:
            self.notes.append(f"the model has {len(outs)} outputs; the first ({outs[0].get('name')}) is used")
        self.inp, self.out = ins[0], outs[0]
        self.in_dtype = np.dtype(self.inp["dtype"])
        if self.in_dtype.kind not in "fiu":
            raise TFLiteEvalError(f"the model's input is of type {self.in_dtype}: not an image the grader can feed")
        self.in_quant = _quant_params(self.inp) if self.in_dtype.kind in "iu" else None
        self.out_quant = _quant_params(self.out) if np.dtype(self.out["dtype"]).kind in "iu" else None
        if self.in_dtype.kind in "iu" and self.in_quant is None:
            self.notes.append(f"the {self.in_dtype} input has no quantisation parameters: values are rounded, not rescaled")
        if np.dtype(self.out["dtype"]).kind in "iu" and self.out_quant is None:
            self.notes.append(f"the {np.dtype(self.out['dtype'])} output has no quantisation parameters: used as it is")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.interp.get_input_details()[0]["shape"])

    def resize(self, batch: int, sample: tuple[int, ...] | None = None) -> None:
        """Make the input (batch, *sample) (sample: the current per-image shape by default)."""
        dims = [batch, *(sample if sample is not None else self.shape[1:])]
        self.interp.resize_tensor_input(self.inp["index"], dims, strict=False)
        self.interp.allocate_tensors()
        self.inp, self.out = self.interp.get_input_details()[0], self.interp.get_output_details()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.in_dtype.kind in "iu":
            scale, zero = self.in_quant or (1.0, 0)
            fed = quantize(x, scale, zero, self.in_dtype)
        else:
            fed = x.astype(self.in_dtype, copy=False)
        self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(fed))
        self.interp.invoke()
        y = self.interp.get_tensor(self.out["index"])
        if self.out_quant is not None:
            return dequantize(y, *self.out_quant)
        return np.asarray(y, dtype=np.float32)


def _padded(x: np.ndarray, n: int) -> np.ndarray:
    return x if len(x) == n else np.concatenate([x, np.zeros((n - len(x), *x.shape[1:]), x.dtype)])


class TFLiteModel:
    """A `.tflite` model, opened once, with the part of a Keras model that grader.worker.evaluate uses:
    `input_shape` and `output_shape` (batch None) and `predict(x, batch_size=..., verbose=0)`.

    Whether the model takes batches is found out on the first `predict` with more than one image and
    remembered; `notes` collects what the report should say (fallbacks, several outputs, ...)."""

    def __init__(self, path: str | Path, num_threads: int = 1, prefer: Loader = "auto") -> None:
        self.path, self.num_threads, self.prefer = str(path), num_threads, prefer
        self.info = inspect_tflite(path, sibling_labels=False)  # refuses garbage before the native parser sees it
        interp, self.loader = open_interpreter(path, num_threads, prefer)
        self._run = _Runner(interp)
        self.notes: list[str] = list(self._run.notes)
        shape = self._run.shape
        self._signature = tuple(int(d) for d in self._run.inp.get("shape_signature", shape))
        self._fixed = max(1, shape[0]) if len(shape) else 1  # the batch the file was saved with (1 for most)
        self._allocated = (self._fixed, shape[1:])
        self._batched: bool | None = None if self._fixed == 1 else False  # None: not tried yet
        self.input_dtype = str(self._run.in_dtype)
        sample = tuple(None if s == -1 else d for s, d in zip(self._signature[1:], shape[1:]))
        self.input_shape: tuple[int | None, ...] = (None, *sample)
        out = tuple(int(d) for d in self._run.out["shape"])
        self.output_shape: tuple[int | None, ...] = (None, *out[1:])

    def _check(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim < 2 or images.dtype.kind != "f":
            raise TFLiteEvalError(f"images must be a float array (N, H, W, C); got {images.dtype} {images.shape}")
        want = self.input_shape[1:]
        if len(want) != images.ndim - 1 or any(w is not None and w != d for w, d in zip(want, images.shape[1:])):
            size = "×".join("?" if d is None else str(d) for d in want)
            raise TFLiteEvalError(f"the model takes inputs of {size} (shape {list(self._signature)}); got "
                                  f"{'×'.join(str(d) for d in images.shape[1:])}: resize the images to the model's input size first")
        return images

    def _allocate(self, batch: int, sample: tuple[int, ...]) -> None:
        if self._allocated != (batch, sample):
            self._run.resize(batch, sample)
            self._allocated = (batch, sample)

    def _reopen(self) -> None:
        interp, _ = open_interpreter(self.path, self.num_threads, self.prefer)
        self._run = _Runner(interp)
        self._allocated = (self._fixed, self._run.shape[1:])

    def _chunk(self, run_batch: int, images: np.ndarray) -> np.ndarray:
        self._allocate(run_batch, tuple(images.shape[1:]))
        return self._run(_padded(images, run_batch))[: len(images)].reshape(len(images), -1)

    def outputs(self, images: np.ndarray, batch_size: int = 32) -> TFLiteOutputs:
        """float32 outputs (N, K) for float `images` (N, H, W, C) in the model's input size and range."""
        images = self._check(images)
        n = len(images)
        if n == 0:
            return TFLiteOutputs(np.zeros((0, 0), np.float32), self.loader, False, self.input_dtype, tuple(self.notes))
        parts: list[np.ndarray] = []
        done = 0
        if self._batched is None and batch_size > 1 and n > 1:
            chunk = min(batch_size, n)
            first = self._chunk(1, images[:1])
            try:
                y = self._chunk(chunk, images[:chunk])
                tolerance = 1e-4 + 2 * (self._run.out_quant[0] if self._run.out_quant else 0.0)
                if not np.allclose(y[0], first[0], rtol=1e-3, atol=tolerance):
                    raise TFLiteEvalError("the first image gave a different output alone than in a batch")
                self._batched, parts, done = True, [y], chunk
            except Exception as exc:  # noqa: BLE001 - any failure to batch falls back to one image at a time
                self.notes.append(f"the model does not take batches ({_short(exc)}): images went one at a time")
                self._batched, parts, done = False, [first], 1
                self._reopen()
        step = self._fixed if not self._batched else max(1, batch_size)
        if self._fixed != 1 and not any("fixed at" in note for note in self.notes):
            self.notes.append(f"the model's batch size is fixed at {self._fixed}: the last batch was padded")
        for i in range(done, n, step):
            part = images[i : i + step]
            parts.append(self._chunk(step if self._batched or self._fixed != 1 else 1, part))
        result = np.concatenate(parts).astype(np.float32, copy=False)
        return TFLiteOutputs(result, self.loader, bool(self._batched) or self._fixed > 1, self.input_dtype, tuple(self.notes))

    def predict(self, x: np.ndarray, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Keras-style: the outputs only (see `outputs`)."""
        return self.outputs(x, batch_size).outputs


def predict_tflite(path: str | Path, images: np.ndarray, batch_size: int = 32, num_threads: int = 1,
                   prefer: Loader = "auto") -> TFLiteOutputs:
    """The model's float32 outputs (N, K) for float `images` (N, H, W, C) in its input size.

    Raises TFLiteError for a file that is not a readable .tflite, TFLiteEvalError for one that cannot
    run on these images (wrong size, several inputs, no interpreter)."""
    return TFLiteModel(path, num_threads, prefer).outputs(images, batch_size)


__all__ = ["TFLiteError", "TFLiteEvalError", "TFLiteModel", "TFLiteOutputs", "dequantize", "open_interpreter",
           "predict_tflite", "quantize"]

"""Model evaluation, as it runs inside the worker process (never in the grader's own process).

The worker receives unlabelled hidden-test images and a labelled sample of the PUBLIC train split.
It loads each model, picks the input preprocessing on the public sample, predicts the hidden
images and writes the raw outputs to `.npy` files. Scoring against hidden labels happens in the
parent (`grader.scoring.metrics`), so no label of the hidden set ever reaches this process.

Loaders, tried in order, never running student code (models with Lambda layers or custom objects
are not sent here at all; see grader.facts.gather):
- Keras 3 with ``safe_mode=True``;
- tf_keras (Keras 2.x) for files saved by Keras 2 that Keras 3 misreads, e.g. a Sequential with a
  nested VGG16 (Keras 3 fails with "'list' object has no attribute 'shape'").
A file saved by Keras 2 is tried with tf_keras first, since that is the library that wrote it.
Each loader reads the file as the format grader.formats.filetype decided from its content (`WorkerModel.format`):
its `.keras` (zip) reader or its HDF5 reader is called directly, never `load_model`'s choice by name.

Device (docs/gpu.md): `run` caps the memory of the GPU it was given before anything touches it
(grader.worker.backends); a batch that runs out of device memory is halved and tried again (`Batch`); the
hidden set goes to the model in chunks bounded in bytes; and each model's hidden-set pass is recorded
(`EvaluationRun`: device, library, batch size, seconds, peak memory).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from grader.worker import adapt, backends
from grader.records.frozen import Frozen
from grader.records.evidence import EvaluationRun


_CHUNK_BYTES = 256 * 1024**2  # most adapted input held in memory at once


class WorkerModel(Frozen):
    index: int
    path: str  # absolute path of the model file (read-only input)
    keras_version: str | None = None
    runs_code: bool = False  # the model has Lambda/custom layers: load it with a loader that runs them
    input_shape: tuple[int | None, ...] | None = None  # from the static inspection, when known
    # what the file is, decided once from its content by grader.formats.filetype (the grader passes the decision it
    # inspected by): "h5" or "keras" for the Keras loaders, "tflite" for the TFLite interpreter
    # (grader.worker.tflite_eval). None (a request built by hand: benches, tests): decided here by the same function.
    format: Literal["h5", "keras", "tflite"] | None = None
    # the model's own label order, when its labels name the data set's classes in another order:
    # output column order[j] is class j of the data set (see grader.facts.gather.label_order)
    label_order: tuple[int, ...] | None = None


class Limits(Frozen):
    """Resource limits the worker sets on itself before it opens any student file (None: no limit)."""

    memory_bytes: int | None = 8 * 1024**3  # address space (RLIMIT_AS)
    cpu_seconds: int | None = None  # RLIMIT_CPU
    open_files: int = 512  # RLIMIT_NOFILE
    file_bytes: int = 1024**3  # largest file it may write (RLIMIT_FSIZE)
    # set by the grader's side, not by the process: the size of a sandbox's writable space (its
    # tmpfs mounts, grader.sandbox.isolation.bwrap_base) and the most tasks (processes and threads) it may hold
    # at once (a pids cgroup, where one can be made: grader.sandbox.cgroups)
    disk_bytes: int = 2 * 1024**3
    tasks: int = 512
    gpu_memory_fraction: float | None = None  # of its GPU's memory (grader.worker.backends.prepare); None: not capped


class WorkerRequest(Frozen):
    """What the worker gets. There is deliberately no field for hidden-test labels."""

    models: tuple[WorkerModel, ...]
    hidden_images: str  # .npy, uint8 (n, h, w) gray or (n, h, w, 3) RGB, no labels
    public_images: str  # .npy, uint8, the same shape per image, from the PUBLIC train split
    public_labels: str  # .npy, uint8 (m,), labels of that PUBLIC sample
    stats_mean: float
    stats_std: float
    out_dir: str
    batch_size: int = 256  # halved on a device out-of-memory error (Batch)
    limits: Limits = Limits()
    device: str = "cpu"  # what the grader gave this worker: "cpu" or "gpu:N" (grader.sandbox.isolation.placed)


class PublicError(Frozen):
    """A PUBLIC sample image the model got wrong with the chosen preprocessing (for the student's page)."""

    index: int  # in the public sample
    predicted: int
    confidence: float


MAX_PUBLIC_ERRORS = 12


def public_errors(probs: np.ndarray, labels: np.ndarray, limit: int = MAX_PUBLIC_ERRORS) -> tuple[PublicError, ...]:
    """Up to `limit` misclassified public images, the most confident mistake of each true class first
    (so the examples show different confusions), then the next most confident ones."""
    if probs.ndim != 2 or len(probs) != len(labels) or not probs.size or not np.isfinite(probs).all():
        return ()  # a model that outputs NaN gets its error from the grader's scoring, not examples
    predicted = np.argmax(probs, axis=1)
    conf = probs
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):  # logits: confidences by softmax
        e = np.exp(probs - probs.max(axis=1, keepdims=True))
        conf = e / e.sum(axis=1, keepdims=True)
    wrong = np.flatnonzero(predicted != labels)
    order = sorted(wrong.tolist(), key=lambda i: (-float(conf[i, predicted[i]]), i))
    first: dict[int, int] = {}
    for i in order:
        first.setdefault(int(labels[i]), i)
    picks = sorted(first.values(), key=lambda i: (-float(conf[i, predicted[i]]), i))
    picks += [i for i in order if i not in set(picks)]
    return tuple(PublicError(index=int(i), predicted=int(predicted[i]), confidence=round(float(conf[i, predicted[i]]), 4))
                 for i in picks[:limit])


class WorkerModelResult(Frozen):
    index: int
    ok: bool
    loader: str | None = None
    input_shape: tuple[int | None, ...] | None = None
    output_shape: tuple[int | None, ...] | None = None
    candidate: str | None = None
    candidates: dict[str, float] = {}  # scored on the whole public sample
    screening: dict[str, float] = {}  # every candidate on the first adapt.SCREEN_SIZE images ({} if not screened)
    description: str | None = None
    predictions: str | None = None  # file name in out_dir
    public_errors: tuple[PublicError, ...] = ()  # with the chosen candidate, on the public sample
    error: str | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    run: EvaluationRun | None = None  # device, backend, batch size, time and peak memory of the hidden-set pass


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = text.replace("\x1b[1m", "").replace("\x1b[0m", "")
    return f"{type(exc).__name__}: {text[:400]}"


def _notebook_names(tf_keras_module: Any = None) -> dict[str, Any]:
    """Names that students' Lambda functions take from their notebook's namespace (`tf.image.resize`,
    `keras.ops.repeat`, `K.repeat_elements`, `np.pi`). A saved Lambda keeps only its bytecode, so
    without these it fails with NameError when it is called; provided only when code is run."""
    import keras
    import numpy

    names: dict[str, Any] = {"np": numpy, "numpy": numpy, "keras": keras, "ops": keras.ops,
                             "K": tf_keras_module.backend if tf_keras_module is not None else keras.backend}
    try:
        import tensorflow

        names["tf"] = tensorflow
    except ImportError:  # Keras 3 on JAX or PyTorch
        pass
    return names


def _load(path: str, keras_version: str | None, runs_code: bool = False,
          kind: Literal["h5", "keras", "tflite"] | None = None) -> tuple[Any, str, list[str]]:
    """Load a model; returns (model, loader description, errors of the loaders that failed first).
    Student code runs only when `runs_code` is set, which the grader does only inside the sandbox:
    Keras 3 then loads with ``safe_mode=False``; tf_keras runs a Keras 2 file's Lambda bytecode
    whatever the flag. `kind`: grader.formats.filetype's decision ("keras": a zip, "h5": HDF5, "tflite": the
    TFLite interpreter, grader.worker.tflite_eval); taken here, by the same function, when not given."""
    if kind is None:
        from grader.formats.filetype import sniff

        kind = sniff(path)
    if kind == "tflite":
        from grader.worker.tflite_eval import TFLiteModel

        tflite = TFLiteModel(path)
        return tflite, tflite.loader, []
    errors: list[str] = []
    order = ["tf_keras", "keras"] if (keras_version or "").startswith("2.") else ["keras", "tf_keras"]
    if kind == "keras" and order[0] == "tf_keras":
        order = ["keras", "tf_keras"]
    for name in order:
        try:
            if name == "keras":
                import keras

                if runs_code:  # Keras 3 gives a loaded Lambda this module's globals, so the names go there
                    from keras.src.utils import python_utils

                    for key, value in _notebook_names().items():
                        python_utils.__dict__.setdefault(key, value)
                if kind == "keras":
                    from keras.src.saving import saving_lib

                    with open(path, "rb") as fh:  # a file object: read as a zip, whatever its name
                        model = saving_lib.load_model(fh, compile=False, safe_mode=not runs_code)
                else:
                    from keras.src.legacy.saving import legacy_h5_format

                    model = legacy_h5_format.load_model_from_hdf5(path, compile=False, safe_mode=not runs_code)
                mode = "running the model's own code" if runs_code else "safe mode"
                return model, f"keras {keras.__version__} ({mode}, {keras.backend.backend()} backend)", errors
            import tf_keras

            custom = _notebook_names(tf_keras) if runs_code else None
            if kind == "keras":  # tf_keras' zip reader (it wants the .keras name, which grader.formats.filetype ensured)
                from tf_keras.src.saving import saving_lib as tf_keras_saving

                model = tf_keras_saving.load_model(path, custom_objects=custom, compile=False)
            else:
                import h5py

                with h5py.File(path, "r") as h5:  # an open HDF5 file: read as HDF5, whatever its name
                    model = tf_keras.models.load_model(h5, compile=False, custom_objects=custom)
            return model, f"tf_keras {tf_keras.__version__} (Keras 2 loader)", errors
        except Exception as exc:  # noqa: BLE001 - every loader failure is reported, then the next is tried
            errors.append(f"{name}: {_short(exc)}")
    raise RuntimeError("no loader could read the model: " + " | ".join(errors))


def _shape(value: Any) -> tuple[int | None, ...]:
    if isinstance(value, list):
        if len(value) != 1:
            raise adapt.AdaptError(f"the model has {len(value)} inputs; the grader feeds one image input")
        value = value[0]
    return tuple(None if d is None else int(d) for d in value)


def _input_shape(model: Any, inspected: tuple[int | None, ...] | None) -> tuple[int | None, ...]:
    """The model's input shape. Keras 3 swallows an exception raised while a loaded Sequential is
    built (a Lambda's NameError or MemoryError) and leaves it unbuilt; calling it once on zeros of the
    shape read from the file brings the real error up, which is what the student needs to see."""
    try:
        return _shape(model.input_shape)
    except AttributeError:
        if inspected is None or len(inspected) < 2:
            raise
        model(np.zeros((1, *(d or 32 for d in inspected[1:])), dtype=np.float32))
        return tuple(inspected)


@dataclass
class Batch:
    """The batch size of one model's predictions: halved, and counted, each time the device runs out
    of memory on a batch (down to 1). The size that worked is kept for the model's later predictions."""

    size: int
    halvings: int = 0

    def run(self, predict: Callable[[int], Any]) -> Any:
        """`predict(batch_size)`; after a device out-of-memory error, again with half the batch."""
        while True:
            try:
                return predict(self.size)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is retried; anything else goes on up
                if self.size <= 1 or not backends.is_out_of_memory(exc):
                    raise
            # outside the except block: the error's traceback, and the tensors its frames hold, are gone
            self.size = max(1, self.size // 2)
            self.halvings += 1
            backends.release_memory()


def _chunk(per_image: int, batch_size: int) -> int:
    """Images per chunk: at most _CHUNK_BYTES of input (10,000 at 28×28; 256 at 224×224×3), a whole
    number of batches, so that only the very last batch has an odd size: XLA (JAX) and tf.function
    compile once per batch shape."""
    return max(batch_size, _CHUNK_BYTES // max(1, per_image) // batch_size * batch_size)


def _predict_rows(model: Any, x: np.ndarray, batch: Batch) -> np.ndarray:
    """`model`'s outputs on `x`, one float32 row per image, retried with smaller batches as needed."""
    y = batch.run(lambda size: model.predict(x, batch_size=size, verbose=0))
    if isinstance(y, (list, tuple)):
        y = y[0]
    return np.asarray(y, dtype=np.float32).reshape(len(x), -1)


def _concat(outputs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def _predict_on_device(model: Any, images: np.ndarray, input_shape: tuple[int | None, ...], cand: adapt.Candidate,
                       stats: adapt.Stats, batch: Batch) -> np.ndarray | None:
    """The hidden set through `model` with the adaptation as layers in front of it (grader.worker.adapt_layers),
    so that only source-sized images cross to the device; None when the front cannot be built on this
    model. The front takes float32 pixels, converted a chunk at a time: the whole set never is
    (10,000 128×128 RGB images are 2 GB as float32)."""
    from grader.worker.adapt_layers import with_front

    try:
        front = with_front(model, input_shape, cand, stats, source=images.shape[1:])
    except Exception:  # noqa: BLE001 - an unusual model: the host path still works
        return None
    chunk = _chunk(int(np.prod(images.shape[1:])) * 4, batch.size)
    return _concat([_predict_rows(front, images[start : start + chunk].astype(np.float32), batch)
                    for start in range(0, len(images), chunk)])


def _predict(model: Any, images: np.ndarray, input_shape: tuple[int | None, ...], cand: adapt.Candidate,
             stats: adapt.Stats, batch: int | Batch, on_device: bool = False) -> np.ndarray:
    """Predict in chunks so that large inputs (224×224×3) never exist for the whole set at once.
    With `on_device`, images larger than 28×28 are adapted by layers on the model's device instead.
    `batch`: a batch size, or a model's Batch (which then records any halving)."""
    batch = batch if isinstance(batch, Batch) else Batch(batch)
    if on_device and cand.geometry in ("resize", "pad"):
        y = _predict_on_device(model, images, input_shape, cand, stats, batch)
        if y is not None:
            return y
    chunk = _chunk(adapt.adapted_bytes(input_shape, source=images.shape[1:]), batch.size)
    return _concat([_predict_rows(model, adapt.adapt(images[start : start + chunk], input_shape, cand, stats), batch)
                    for start in range(0, len(images), chunk)])


def _reorder(probs: np.ndarray, order: tuple[int, ...] | None) -> np.ndarray:
    """Outputs in the data set's class order (a model whose labels.txt lists the classes otherwise)."""
    if order is None or probs.ndim != 2 or probs.shape[1] != len(order):
        return probs
    return probs[:, list(order)]


def _hidden_pass(model: Any, hidden: np.ndarray, input_shape: tuple[int | None, ...], cand: adapt.Candidate,
                 stats: adapt.Stats, batch: Batch, device: backends.DeviceInfo, on_device: bool) -> tuple[np.ndarray, EvaluationRun]:
    """The model's raw outputs on the hidden set, and how that went: device, library, batch, seconds, peak memory."""
    lib = backends.framework(model)
    if lib == "tflite":  # the TFLite interpreter runs on the CPU whatever this worker was given
        device = backends.DeviceInfo(device="cpu", name=backends.cpu_name(), backend=device.backend)
    backends.reset_peak(device, lib)
    start = time.perf_counter()
    outputs = _predict(model, hidden, input_shape, cand, stats, batch, on_device=on_device)
    seconds = time.perf_counter() - start
    return outputs, EvaluationRun(device=device.device, device_name=device.name, backend=lib, batch_size=batch.size,
                                  batch_halvings=batch.halvings, seconds=round(seconds, 3),
                                  peak_memory_bytes=backends.peak_memory(device, lib))


def evaluate_one(item: WorkerModel, hidden: np.ndarray, public_x: np.ndarray, public_y: np.ndarray,
                 stats: adapt.Stats, out_dir: Path, batch_size: int,
                 device: backends.DeviceInfo | None = None) -> WorkerModelResult:
    """One model: load, choose the preprocessing on the public sample, predict the hidden set.
    `device`: where `run` found the models run (default: the CPU)."""
    start = time.perf_counter()
    device = device or backends.DeviceInfo(device="cpu", name=backends.cpu_name(), backend=backends.keras_backend())
    warnings: list[str] = list(device.notes)
    batch = Batch(batch_size)
    try:
        model, loader, load_errors = _load(item.path, item.keras_version, item.runs_code, item.format)
        tflite = backends.framework(model) == "tflite"
        if tflite:
            warnings += list(model.notes)
        if load_errors:
            warnings.append("first loader failed, another one read the file: " + "; ".join(load_errors))
        input_shape = _input_shape(model, item.input_shape)
        output_shape = _shape(model.output_shape)
        if public_x.shape[1:] != hidden.shape[1:]:
            raise adapt.AdaptError(f"public images {public_x.shape[1:]} and hidden images {hidden.shape[1:]} differ in shape")
        every = {c.key: c for c in adapt.candidates(input_shape, source=hidden.shape[1:])}

        public_probs: dict[str, np.ndarray] = {}

        def score(keys: list[str], n: int) -> dict[str, float]:
            out = {}
            for k in keys:
                probs = _reorder(_predict(model, public_x[:n], input_shape, every[k], stats, batch), item.label_order)
                out[k] = float(np.mean(np.argmax(probs, axis=1) == public_y[:n])) if probs.size else 0.0
                if n == len(public_x):
                    public_probs[k] = probs
            return out

        screening: dict[str, float] = {}
        finalists = list(every)
        if len(every) > adapt.SCREEN_KEEP and len(public_x) >= 2 * adapt.SCREEN_SIZE:
            screening = score(finalists, adapt.SCREEN_SIZE)
            finalists = adapt.shortlist(screening)
        scores = score(finalists, len(public_x))
        key = adapt.choose(scores)
        cand = every[key]
        outputs, run = _hidden_pass(model, hidden, input_shape, cand, stats, batch, device, on_device=not tflite)
        probs = _reorder(outputs, item.label_order)
        if batch.halvings:
            warnings.append(f"the device ran out of memory with batches of {batch_size}; evaluated with batches of "
                            f"{batch.size} ({batch.halvings} halving(s))")
        name = f"predictions-{item.index}.npy"
        np.save(out_dir / name, probs, allow_pickle=False)
        return WorkerModelResult(
            index=item.index, ok=True, loader=loader, input_shape=input_shape, output_shape=output_shape,
            candidate=key, candidates=scores, screening=screening, description=adapt.describe(cand, input_shape, source=hidden.shape[1:]), predictions=name,
            public_errors=public_errors(public_probs[key], public_y) if key in public_probs else (), warnings=tuple(warnings), seconds=time.perf_counter() - start,
            run=run,
        )
    except Exception as exc:  # noqa: BLE001 - a broken model is a result, not a crash of the batch
        if batch.halvings:
            warnings.append(f"the batch was halved {batch.halvings} time(s) after the device ran out of memory, "
                            f"down to {batch.size} image(s)")
        return WorkerModelResult(index=item.index, ok=False, error=_short(exc), warnings=tuple(warnings),
                                 seconds=time.perf_counter() - start)


def apply_limits(limits: Limits) -> None:
    """Lower this process's resource limits (never raise them above what it already has)."""
    import resource

    def lower(which: int, value: int | None) -> None:
        if value is None:
            return
        soft, hard = resource.getrlimit(which)
        new_hard = value if hard == resource.RLIM_INFINITY else min(hard, value)
        resource.setrlimit(which, (min(value, new_hard), new_hard))

    lower(resource.RLIMIT_AS, limits.memory_bytes)
    lower(resource.RLIMIT_CPU, limits.cpu_seconds)
    lower(resource.RLIMIT_NOFILE, limits.open_files)
    lower(resource.RLIMIT_FSIZE, limits.file_bytes)
    lower(resource.RLIMIT_CORE, 0)


def run(request: WorkerRequest) -> None:
    apply_limits(request.limits)
    device = backends.prepare(request.device, request.limits.gpu_memory_fraction)  # before the device is first used
    out_dir = Path(request.out_dir)
    # read from disk a chunk at a time (np.load maps the file): a large hidden set (10,000 RGB images of
    # 128×128 are 0.5 GB) is not copied into every worker's memory
    hidden = np.load(request.hidden_images, mmap_mode="r", allow_pickle=False)
    public_x = np.load(request.public_images, allow_pickle=False)
    public_y = np.load(request.public_labels, allow_pickle=False)
    stats = adapt.Stats(request.stats_mean, request.stats_std)
    for item in request.models:
        result = evaluate_one(item, hidden, public_x, public_y, stats, out_dir, request.batch_size, device)
        tmp = out_dir / f"result-{item.index}.json.tmp"
        tmp.write_text(result.model_dump_json())
        tmp.replace(out_dir / f"result-{item.index}.json")


def _exit_with_parent(poll: float = 1.0) -> None:
    """Stop this worker when the grader that started it is gone (kill -9 gives it no chance to kill
    its workers): the worker runs in its own session, so nothing else would stop it."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    _exit_with_parent()
    try:
        request = WorkerRequest.model_validate_json(Path(argv[1]).read_text())
        run(request)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

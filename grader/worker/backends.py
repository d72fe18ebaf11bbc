"""What the worker asks of the deep-learning library about its device (inside the worker only):
cap the GPU memory one submission may take, name the device, read its peak memory, and recognise
that it ran out of device memory.

Keras 3 runs on TensorFlow, JAX or PyTorch (KERAS_BACKEND); a Keras 2 file loaded by tf_keras runs
on TensorFlow; a .tflite model on the TFLite interpreter (the CPU). Each is asked in its own terms,
imported only when it is the one in use, so a GPU machine without TensorFlow works alike.
"""

from __future__ import annotations

import ctypes
import gc
import os
import resource
import sys
from dataclasses import dataclass
from typing import Any

# How each library says that the device ran out of memory. By name, so that telling needs no import:
# TensorFlow raises ResourceExhaustedError ("OOM when allocating tensor ..."), on the CPU too; PyTorch
# torch.OutOfMemoryError ("CUDA out of memory. Tried to allocate ..."); JAX/XLA an XlaRuntimeError
# or JaxRuntimeError whose message starts "RESOURCE_EXHAUSTED: Out of memory while trying to allocate".
_OOM_TYPES = frozenset({"ResourceExhaustedError", "OutOfMemoryError"})
_OOM_TEXT = ("OOM when allocating", "CUDA out of memory", "RESOURCE_EXHAUSTED", "CUDA_ERROR_OUT_OF_MEMORY",
             "cudaErrorMemoryAllocation", "Out of memory while trying to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a device out-of-memory error. A host
    MemoryError is not: a smaller batch does not help a process over its address-space limit."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(t.__name__ in _OOM_TYPES for t in type(current).__mro__):
            return True
        if any(mark in str(current) for mark in _OOM_TEXT):
            return True
        current = current.__cause__ or current.__context__
    return False


def release_memory() -> None:
    """Give back what a failed batch left allocated before a smaller one is tried."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class DeviceInfo:
    """Where this worker's models run."""

    device: str  # "cpu", or the grader's name for the GPU it was given ("gpu:2") when the library uses it
    name: str | None  # the GPU's name, else the CPU's model
    backend: str  # Keras 3's backend: tensorflow, jax or torch
    notes: tuple[str, ...] = ()  # for every model's warnings: the GPU was given but not used, the cap failed


def keras_backend() -> str:
    import keras

    return str(keras.backend.backend())


def cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cuda_total_memory() -> int | None:
    """Bytes of memory of the first GPU CUDA shows this process, from the driver API (libcuda), which
    TensorFlow will use after us (cuInit is idempotent); None without a driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    dev, total = ctypes.c_int(), ctypes.c_size_t()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(dev), 0) != 0 or \
            cuda.cuDeviceTotalMem_v2(ctypes.byref(total), dev) != 0:
        return None
    return int(total.value)


def _tensorflow_gpu(fraction: float | None) -> tuple[str | None, list[str]]:
    """TensorFlow's GPU: capped at `fraction` of its memory as one logical device (growth up to the
    cap: TF_FORCE_GPU_ALLOW_GROWTH from grader.sandbox.devices.cuda_env); returns its name, or None when
    TensorFlow sees no GPU, and notes."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None, []
    notes = []
    total = _cuda_total_memory() if fraction is not None else None
    if total:
        try:
            limit = tf.config.LogicalDeviceConfiguration(memory_limit=int(total * fraction / 1024**2))  # type: ignore[operator]
            tf.config.set_logical_device_configuration(gpus[0], [limit])
        except RuntimeError as exc:  # TensorFlow had already initialised the device
            notes.append(f"the GPU memory cap was not applied: {exc}")
    elif fraction is not None:
        notes.append("the GPU memory cap was not applied: libcuda gave no total memory")
    details = tf.config.experimental.get_device_details(gpus[0])
    return str(details.get("device_name") or "GPU"), notes


def _torch_gpu(fraction: float | None) -> str | None:
    import torch

    if not torch.cuda.is_available():
        return None
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, 0)
    return str(torch.cuda.get_device_name(0))


def _jax_gpu(fraction: float | None) -> str | None:
    # read by JAX when it creates its GPU client, which is the first time a device is used: now
    if fraction is not None:
        os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{fraction:.3f}"
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    import jax

    devices = [d for d in jax.devices() if d.platform == "gpu"]
    return str(devices[0].device_kind) if devices else None


def prepare(given: str, fraction: float | None) -> DeviceInfo:
    """Before any model is loaded (the library must not have initialised the device yet): cap the
    memory of the GPU this worker was `given` ("cpu" or "gpu:N") to `fraction` of it, and say where
    models will run. A worker given a GPU that its library cannot use runs on the CPU, and says so."""
    backend = keras_backend()
    if given == "cpu":
        return DeviceInfo(device="cpu", name=cpu_name(), backend=backend)
    notes: list[str] = []
    if backend == "torch":
        name = _torch_gpu(fraction)
    elif backend == "jax":
        name = _jax_gpu(fraction)
    else:
        name, notes = _tensorflow_gpu(fraction)
    if name is None:
        return DeviceInfo(device="cpu", name=cpu_name(), backend=backend,
                          notes=(f"the grader gave this evaluation {given}, but {backend} found no usable GPU, so it ran "
                                 "on the CPU (is the CUDA build of the library installed? see docs/gpu.md)",))
    return DeviceInfo(device=given, name=name, backend=backend, notes=tuple(notes))


def framework(model: Any) -> str:
    """The library that runs `model`: tflite, tensorflow for a tf_keras model, else Keras 3's backend."""
    module = type(model).__module__
    if module.startswith("grader.worker.tflite_eval"):
        return "tflite"
    if module.startswith("tf_keras"):
        return "tensorflow"
    return keras_backend()


def reset_peak(device: DeviceInfo, lib: str) -> None:
    """Start a model's peak-memory count on the GPU (JAX keeps one peak per process: not reset)."""
    if device.device == "cpu" or lib == "tflite":
        return
    try:
        if lib == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")
        elif lib == "torch":
            import torch

            torch.cuda.reset_peak_memory_stats(0)
    except (RuntimeError, ValueError):  # e.g. a tf_keras model where TensorFlow has no GPU: no count to reset
        pass


def peak_memory(device: DeviceInfo, lib: str) -> int | None:
    """Peak bytes of device memory since `reset_peak` (GPU), or the worker's peak resident set (CPU).
    The CPU figure is the whole process's high-water mark: in a worker forked from a zygote it
    includes the zygote's pages (TensorFlow's import, ~0.5 GB), and every model of a request after
    the first reports at least the peak of those before it."""
    try:
        if device.device != "cpu" and lib == "tensorflow":
            import tensorflow as tf

            return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])
        if device.device != "cpu" and lib == "torch":
            import torch

            return int(torch.cuda.max_memory_allocated(0))
        if device.device != "cpu" and lib == "jax":
            import jax

            stats = [d for d in jax.devices() if d.platform == "gpu"][0].memory_stats() or {}
            return int(stats["peak_bytes_in_use"]) if "peak_bytes_in_use" in stats else None
    except (RuntimeError, ValueError, KeyError, IndexError):  # a library without the count
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux: KiB

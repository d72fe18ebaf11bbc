"""The GPUs a grading run evaluates on: which ones there are, which device nodes a sandbox gets for
one of them, the environment that points its worker at it, and how they are shared out between
submissions (one at a time per GPU unless the teacher says otherwise).

Numbering: ``gpu:N`` is the N-th NVIDIA GPU in PCI bus order, the order ``nvidia-smi`` lists them
(and CUDA's with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, or on a machine of identical GPUs). When the
grader's own environment sets ``CUDA_VISIBLE_DEVICES`` (a batch system, a Ray task) only the GPUs
it lists are used. The worker side (memory cap, names, peak memory) is `grader.worker.backends`.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from grader.errors import GraderError

DEVICE_HELP = "auto, cpu, gpu or gpu:N (N the GPU's number as nvidia-smi lists it, e.g. gpu:0)"
DEFAULT_GPU_MEMORY_FRACTION = 0.9  # of one GPU, for its one submission at a time; divided when it is shared
# Besides the GPU's own /dev/nvidiaN, what the CUDA user-space driver opens: the control device, the
# unified-memory devices (CUDA contexts need nvidia-uvm) and modeset (present on display drivers).
# The same list that Flatpak gives a sandboxed app with GPU access (flatpak-run.c).
CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
_DEVICE = re.compile(r"(auto|cpu|gpu)(?::(\d+))?")


def parse_device(value: str) -> str:
    """`value` of --device checked and normalised ("gpu:01" -> "gpu:1"); ValueError says what is allowed."""
    m = _DEVICE.fullmatch(value.strip().lower())
    if m is None or (m.group(2) is not None and m.group(1) != "gpu"):
        raise ValueError(f"must be {DEVICE_HELP}; got {value!r}")
    return m.group(1) if m.group(2) is None else f"gpu:{int(m.group(2))}"


@dataclass(frozen=True)
class Gpu:
    index: int  # the grader's number for it (PCI bus order, as nvidia-smi)
    minor: int  # its device node is /dev/nvidia<minor>
    uuid: str | None = None  # GPU-..., what CUDA_VISIBLE_DEVICES can name it by whatever the numbering
    name: str | None = None  # the driver's model name
    bus: str | None = None  # PCI bus id, e.g. 0000:01:00.0

    @property
    def device(self) -> str:
        return f"gpu:{self.index}"

    @property
    def node(self) -> str:
        return f"nvidia{self.minor}"


def _information(folder: Path) -> dict[str, str]:
    """/proc/driver/nvidia/gpus/<bus>/information: 'Key:  value' lines (Model, GPU UUID, Device Minor, ...)."""
    try:
        text = (folder / "information").read_text(errors="replace")
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if v.strip()}


def find_gpus(dev: Path = Path("/dev"), proc: Path = Path("/proc")) -> list[Gpu]:
    """The NVIDIA GPUs this machine lets the grader open, in PCI bus order. From the driver's
    /proc/driver/nvidia/gpus (bus id, device minor, UUID, model) where it exists, keeping those whose
    /dev node exists (a container may list more than it was given); else from the /dev nodes alone."""
    gpus: list[Gpu] = []
    listed = proc / "driver" / "nvidia" / "gpus"
    if listed.is_dir():
        for folder in sorted(listed.iterdir(), key=lambda p: p.name.lower()):
            info = _information(folder)
            minor = info.get("Device Minor", "")
            if minor.isdigit() and (dev / f"nvidia{int(minor)}").exists():
                uuid = info.get("GPU UUID", "")
                gpus.append(Gpu(index=len(gpus), minor=int(minor), uuid=uuid if uuid.startswith("GPU-") else None,
                                name=info.get("Model"), bus=folder.name.lower()))
        return gpus
    minors = sorted(int(p.name[6:]) for p in dev.glob("nvidia*") if p.name[6:].isdigit())
    return [Gpu(index=i, minor=m) for i, m in enumerate(minors)]


def visible(gpus: Sequence[Gpu], env: Mapping[str, str] = os.environ) -> list[Gpu]:
    """The GPUs that the grader's CUDA_VISIBLE_DEVICES leaves (all when it is unset). Read as CUDA
    reads it: indices or GPU UUIDs (a prefix is enough), up to the first entry that names none
    ("-1", "" hide every GPU)."""
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return list(gpus)
    out: list[Gpu] = []
    for entry in (e.strip() for e in value.split(",")):
        if entry.lstrip("-").isdigit():
            match = [g for g in gpus if g.index == int(entry)]
        elif entry.startswith("GPU-"):
            match = [g for g in gpus if g.uuid and g.uuid.startswith(entry)]
        else:  # "MIG-...", a typo: CUDA stops at it
            match = []
        if len(match) != 1:
            break
        if match[0] not in out:
            out.append(match[0])
    return out


def choose_gpus(requested: str, *, dev: Path = Path("/dev"), proc: Path = Path("/proc"),
                env: Mapping[str, str] = os.environ) -> list[Gpu]:
    """The GPUs that --device `requested` means here ([] for the CPU): auto and gpu take every
    visible GPU; gpu:N the one numbered N. GraderError when a GPU is asked for and absent."""
    requested = parse_device(requested)
    if requested == "cpu":
        return []
    gpus = visible(find_gpus(dev, proc), env)
    if requested == "auto":
        return gpus
    shown = ", ".join(g.device + (f" ({g.name})" if g.name else "") for g in gpus) or "none"
    if not gpus:
        where = f" (CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r})" if "CUDA_VISIBLE_DEVICES" in env else ""
        raise GraderError(f"--device {requested}: no NVIDIA GPU is visible on this machine{where}",
                          hint="use --device auto or cpu; a GPU needs its driver's /dev/nvidia* nodes")
    if requested == "gpu":
        return gpus
    index = int(requested.split(":")[1])
    chosen = [g for g in gpus if g.index == index]
    if not chosen:
        raise GraderError(f"--device {requested}: there is no such GPU here", hint=f"the GPUs visible: {shown}")
    return chosen


def device_name(gpus: Sequence[Gpu]) -> str:
    """How a run names where it evaluates: "cpu", "gpu:0", "gpu:0,1"."""
    return "gpu:" + ",".join(str(g.index) for g in gpus) if gpus else "cpu"


def device_binds(gpus: Sequence[Gpu], dev: Path = Path("/dev")) -> list[str]:
    """bwrap options that add the device nodes the GPUs need, and nothing else of `dev`: each GPU's
    own node and the driver's control nodes that exist. The sandbox's /dev is bwrap's minimal one
    (null, zero, random, ...); its /proc, a fresh procfs, already shows /proc/driver/nvidia."""
    if not gpus:
        return []
    args: list[str] = []
    for name in [g.node for g in gpus] + list(CONTROL_NODES):
        if (dev / name).exists():
            args += ["--dev-bind", str(dev / name), f"/dev/{name}"]
    return args


def cuda_env(gpu: Gpu | None, *, sandboxed: bool) -> dict[str, str]:
    """Environment that gives a worker exactly `gpu` (None: no GPU at all)."""
    if gpu is None:
        return {"CUDA_VISIBLE_DEVICES": "-1"}
    if gpu.uuid:  # right whatever CUDA numbers the GPUs it can see
        selected = gpu.uuid
    elif sandboxed:  # only this GPU's node is in the sandbox: CUDA can open no other one
        selected = "0"
    else:
        selected = str(gpu.index)
    return {"CUDA_VISIBLE_DEVICES": selected, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            # take device memory as it is needed, up to the cap the worker sets (grader.worker.backends)
            "TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}


class DeviceSlots:
    """Hands out the run's GPUs to concurrent evaluations, `per_gpu` at a time on each (1: one
    submission per GPU, so that one model cannot starve another's memory). Without GPUs every
    `hold` gives None (the CPU) at once. Shared by the threads of one run; it belongs to this
    machine, so it is not sent to other nodes (a Ray task makes its own with `for_device`)."""

    def __init__(self, gpus: Sequence[Gpu] = (), per_gpu: int = 1) -> None:
        if per_gpu < 1:
            raise ValueError(f"per_gpu must be at least 1; got {per_gpu}")
        self.gpus, self.per_gpu = tuple(gpus), per_gpu
        self._busy = {g.index: 0 for g in self.gpus}
        self._changed = threading.Condition()

    @classmethod
    def for_device(cls, device: str, per_gpu: int = 1, *, dev: Path = Path("/dev"), proc: Path = Path("/proc"),
                   env: Mapping[str, str] = os.environ) -> DeviceSlots:
        """Slots for a device as a run names it ("cpu", "auto", "gpu", "gpu:N" or "gpu:0,1")."""
        kind, _, numbers = device.partition(":")
        if kind != "gpu" or not numbers:
            return cls(choose_gpus(kind, dev=dev, proc=proc, env=env), per_gpu)
        gpus = []
        for n in numbers.split(","):
            gpus += choose_gpus(f"gpu:{n}", dev=dev, proc=proc, env=env)
        return cls(gpus, per_gpu)

    @property
    def device(self) -> str:
        return device_name(self.gpus)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("DeviceSlots hold this machine's GPUs and their locks: make them where the work runs "
                        "(DeviceSlots.for_device) instead of sending them")

    @contextmanager
    def hold(self, cancel: threading.Event | None = None) -> Iterator[Gpu | None]:
        """A GPU with a free slot (the least busy, then the lowest number) for the duration; waits
        for one, and raises KeyboardInterrupt when `cancel` is set while it waits."""
        if not self.gpus:
            yield None
            return
        with self._changed:
            while True:
                if cancel is not None and cancel.is_set():
                    raise KeyboardInterrupt
                free = [g for g in self.gpus if self._busy[g.index] < self.per_gpu]
                if free:
                    gpu = min(free, key=lambda g: (self._busy[g.index], g.index))
                    self._busy[gpu.index] += 1
                    break
                self._changed.wait(0.25)
        try:
            yield gpu
        finally:
            with self._changed:
                self._busy[gpu.index] -= 1
                self._changed.notify_all()

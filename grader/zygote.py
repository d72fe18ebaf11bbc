"""A pre-imported worker inside bubblewrap that forks a fresh process per submission.

Importing TensorFlow and Keras costs ~3 s, more than loading and predicting a small CNN; a fresh
sandboxed interpreter per submission spent most of its time importing (bench/isolation.py). A
zygote pays the import once per job slot and forks a child per submission, so every submission
still gets its own process, limits and seccomp filter.

The zygote runs in one bwrap sandbox per job slot (same view as `grader.sandbox`: read-only system,
Python, grader and unlabelled inputs; no network; no capabilities; read-only root) plus one writable
folder, the slot, at ``/slot``. For each submission the grader:
1. empties the slot, copies that submission's model files into a fresh, randomly named folder in it
   (so a child sees only its own submission, and nothing a previous child left behind);
2. asks the zygote to run the request; the zygote forks; the child lowers its limits, installs the
   seccomp filter (no new processes, no ptrace), sends its output to a log in its folder and runs
   `grader.evaluate.run`; the zygote waits and answers with the exit status;
3. moves the child's answer files out of the slot into the caller's scratch folder.
The zygote is not dumpable, so a child (same uid, no capabilities) cannot write its memory through
``/proc``. A child that kills the zygote or outlives its time limit has the whole slot sandbox
killed; the next submission starts a new zygote.

Protocol on the zygote's stdin/stdout: the grader writes one request path per line; the zygote
answers ``ready`` once after its imports, then ``exit <wait status>`` per request.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from grader.devices import DeviceSlots, Gpu
from grader.evaluate import WorkerRequest
from grader.sandbox import (
    WorkerOutcome, _env, _safe_name, bwrap_base, classify, describe, inner_request, log_tail, placed, run_worker_on,
    seccomp_program,
)

_READY_TIMEOUT = 180.0
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_SET_DUMPABLE = 38, 22, 2, 4


# ------------------------------------------------------------------------------------------------
# Inside the sandbox


def _install_seccomp(program: bytes) -> None:
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(program, len(program))
    prog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or \
            libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "could not install the seccomp filter")


def _child(request_path: str, program: bytes | None) -> int:
    from grader import evaluate

    request = WorkerRequest.model_validate_json(Path(request_path).read_text())
    folder = Path(request.out_dir)
    log = os.open(folder.parent / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.update(TMPDIR=str(folder.parent / "tmp"), HOME=str(folder.parent), KERAS_HOME=str(folder.parent / ".keras"))
    (folder.parent / "tmp").mkdir(exist_ok=True)
    if program is not None:
        _install_seccomp(program)
    evaluate.run(request)
    return 0


def serve() -> None:
    """The zygote's main loop (``python -m grader.zygote``)."""
    import numpy  # noqa: F401 - imported once here, shared by every forked child
    import keras  # noqa: F401

    for optional in ("tensorflow", "tf_keras"):
        try:
            __import__(optional)
        except ImportError:
            pass
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    program = seccomp_program()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        request_path = line.strip()
        if not request_path:
            continue
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                code = _child(request_path, program)
            except BaseException:  # noqa: BLE001 - the child reports through its log and exit status
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.write(f"exit {status}\n")
        out.flush()


# ------------------------------------------------------------------------------------------------
# The grader's side


class Zygote:
    """One zygote sandbox (one job slot) on one device: `gpu`, whose node alone is bound into it, or
    the CPU (None). Not thread-safe: a pool hands each one to one thread.

    The zygote imports the libraries but never touches the device (importing TensorFlow, torch or
    JAX does not initialise CUDA, and CUDA does not survive a fork once initialised): each forked
    child initialises it, after capping its memory (grader.backends)."""

    def __init__(self, inputs_dir: Path, slot: Path, gpu: Gpu | None = None, dev: Path = Path("/dev")) -> None:
        self.inputs_dir, self.slot, self.gpu, self.dev = inputs_dir, slot, gpu, dev
        self.proc: subprocess.Popen[str] | None = None

    def command(self) -> list[str]:
        """The bwrap command line of this zygote's sandbox and the program in it."""
        env = {**_env("/out", self.gpu), "HOME": "/slot", "KERAS_HOME": "/slot/.keras", "TMPDIR": "/slot",
               "MPLCONFIGDIR": "/slot"}
        args = [*bwrap_base(self.inputs_dir, env, (self.gpu,) if self.gpu is not None else (), self.dev),
                "--bind", str(self.slot), "/slot", "--chdir", "/slot", "--remount-ro", "/"]
        return [*args, sys.executable, "-s", "-m", "grader.zygote"]

    def _start(self) -> None:
        self.slot.mkdir(parents=True, exist_ok=True)
        log = open(self.slot.parent / f"{self.slot.name}-zygote.log", "ab")  # noqa: SIM115 - lives as long as the zygote
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                                     env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        log.close()
        line = self._read_line(time.monotonic() + _READY_TIMEOUT, None)
        if line != "ready":
            self.close()
            raise RuntimeError(f"the evaluation zygote did not start ({line or 'no answer'})")

    def _read_line(self, deadline: float, cancel: threading.Event | None) -> str | None:
        """One line from the zygote, or None at the deadline, on Ctrl-C (raises) or if it died."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while True:
            if cancel is not None and cancel.is_set():
                self.close()
                raise KeyboardInterrupt
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 0.25))
            if ready:
                line = self.proc.stdout.readline()
                return line.strip() if line else None

    def run(self, request: WorkerRequest, scratch: Path, *, timeout: float,
            cancel: threading.Event | None = None) -> WorkerOutcome:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None
        for entry in self.slot.iterdir():  # nothing from a previous submission remains
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        name = secrets.token_hex(8)
        folder = self.slot / name
        (folder / "models").mkdir(parents=True)
        (folder / "out").mkdir()
        inside = []
        for m in request.models:
            target = folder / "models" / _safe_name(m.index, m.path)
            shutil.copyfile(m.path, target)
            inside.append(f"/slot/{name}/models/{target.name}")
        inner = placed(inner_request(request, inside, f"/slot/{name}/out"), self.gpu)
        (folder / "request.json").write_text(inner.model_dump_json())
        start = time.perf_counter()
        kind = None
        try:
            self.proc.stdin.write(f"/slot/{name}/request.json\n")
            self.proc.stdin.flush()
            line = self._read_line(time.monotonic() + timeout, cancel)
        except (BrokenPipeError, OSError):
            line = None
        if line is None:
            kind = "timeout" if self.proc.poll() is None else None
            self.close()  # a child past its time, or a zygote that died: the next submission gets a new one
        returncode = _returncode(line)
        tail = log_tail(folder / "worker.log")
        scratch.mkdir(parents=True, exist_ok=True)
        for produced in (folder / "out").iterdir():
            if produced.is_file() and not produced.is_symlink():
                shutil.move(str(produced), scratch / produced.name)
        if kind is None:
            kind = classify(returncode, tail) if line is not None else "killed"
        return WorkerOutcome(kind=kind, returncode=returncode, seconds=time.perf_counter() - start, log_tail=tail,
                             message=describe(kind, returncode, timeout) if line is not None or kind == "timeout"
                             else "the grader's evaluation process was stopped while it evaluated this model")

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            self.proc = None


def _returncode(line: str | None) -> int | None:
    if not line or not line.startswith("exit "):
        return None
    status = int(line.split()[1])
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class ZygotePool:
    """One zygote per concurrent caller and device, started on first use and reused; closed with the run.
    Evaluations wait for a device from `slots` (by default one submission per GPU at a time; the
    run's slots when given, so that the one-off sandboxes of grader.sandbox.run_worker share them)."""

    def __init__(self, inputs_dir: Path, root: Path, device: str = "cpu", slots: DeviceSlots | None = None) -> None:
        self.inputs_dir, self.root = inputs_dir, root
        self.slots = slots if slots is not None else DeviceSlots.for_device(device)
        self._free: dict[int | None, list[Zygote]] = {}  # idle zygotes by GPU number (None: the CPU)
        self._all: list[Zygote] = []
        self._lock = threading.Lock()
        self.broken = False  # set when a zygote fails to start; then every submission gets a fresh sandbox

    def run(self, request: WorkerRequest, scratch: Path, *, timeout: float,
            cancel: threading.Event | None = None) -> WorkerOutcome:
        with self.slots.hold(cancel) as gpu:
            key = gpu.index if gpu is not None else None
            with self._lock:
                free = self._free.setdefault(key, [])
                zygote = free.pop() if free else None
                if zygote is None:
                    zygote = Zygote(self.inputs_dir, self.root / f"slot{len(self._all)}", gpu)
                    self._all.append(zygote)
            try:
                if not self.broken:
                    try:
                        return zygote.run(request, scratch, timeout=timeout, cancel=cancel)
                    except RuntimeError:  # the zygote could not start: a fresh sandbox per submission still works
                        self.broken = True
                return run_worker_on(request, scratch, gpu, timeout=timeout, isolation="bwrap", cancel=cancel)
            finally:
                with self._lock:
                    self._free[key].append(zygote)

    def close(self) -> None:
        for zygote in self._all:
            zygote.close()


if __name__ == "__main__":
    serve()

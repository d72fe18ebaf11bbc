"""A pre-imported worker inside bubblewrap that forks a fresh process per submission.

Importing TensorFlow and Keras costs ~3 s, more than loading and predicting a small CNN; a fresh
sandboxed interpreter per submission spent most of its time importing (bench/isolation.py). A
zygote pays the import once per job slot and forks a child per submission, so every submission
still gets its own process, limits and seccomp filter. A one-off sandbox (``--no-zygote``, a GPU task
on Ray) is the same thing without the imports, serving one request (`run_once`).

The zygote's sandbox (grader.sandbox.isolation.bwrap_base: read-only system, Python, grader and unlabelled
inputs; no network; no capabilities; no user namespaces inside) has exactly two places the
submission's process may write, both size-capped tmpfs mounts that start empty for every child
because the zygote empties them after each one: ``/work`` (the child's folder, its TMPDIR and HOME)
and ``/dev/shm``. The slot, where the grader puts the one submission's model files and its request,
is bound READ-ONLY at ``/slot``. Per submission:
1. the grader empties the slot, copies that submission's model files and its request into a fresh,
   randomly named folder in it and writes ``run <nonce> <folder>`` on the zygote's stdin;
2. the zygote forks; the child lowers its limits, installs the seccomp filter (no new processes, no
   ptrace), sends its output to a log in its folder under /work and runs `grader.worker.evaluate.run`;
3. the zygote reaps it, and only then answers on its stdout (grader.worker.channel frames): the nonce, the
   pid it forked and reaped, the wait status, the log's tail, whether the writable space was full,
   then the files the child wrote; then it empties /work and /dev/shm, and ends the answer saying
   whether they are empty (when not, the grader starts a new zygote for the next submission).

Why a child cannot speak for itself or for another: the zygote is PID 1 of its namespace
(``--as-pid-1``) and not dumpable, so a child (same uid, no capabilities) can open none of its
``/proc/1/fd``, ``/proc/1/mem``; the child closes its copies of the zygote's pipes before any student
code runs; PID 1 ignores every signal it does not handle, and it handles none that stop it. The
grader accepts an answer only with the nonce it sent and the pid the zygote reaped, and moves on
only once the child is gone (a child cannot fork, so nothing of it outlives it). A child past its
time gets its whole sandbox killed; the next submission starts a new zygote.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

from grader.sandbox import cgroups
from grader.worker.channel import ChannelError, read_frames, send_file, send_json, space_filled
from grader.sandbox.devices import DeviceSlots, Gpu
from grader.worker.evaluate import Limits, WorkerRequest
from grader.sandbox.isolation import (
    SEAL, WorkerOutcome, _env, _safe_name, bwrap_base, classify, describe, inner_request, log_tail, placed,
    seccomp_program,
)

_READY_TIMEOUT = 180.0
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, _PR_SET_DUMPABLE = 38, 22, 2, 4
_LOG_TAIL = 4000
_MAX_ANSWER_FILES = 64
_MAX_ANSWER_BYTES = 512 * 1024**2


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


def _child(request_path: str, program: bytes | None, folder: Path) -> int:
    from grader.worker import evaluate

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    request = WorkerRequest.model_validate_json(Path(request_path).read_text())
    log = os.open(folder / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)  # the zygote's pipes: the child keeps no copy of them
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    os.environ.update(TMPDIR=str(folder / "tmp"), HOME=str(folder), KERAS_HOME=str(folder / ".keras"))
    if program is not None:
        _install_seccomp(program)
    evaluate.run(request)
    return 0


def _empty(folder: Path) -> bool:
    """Remove everything in `folder`; True when it is empty afterwards. A child may leave folders it
    made unreadable (mode 000: the zygote has no capability to ignore that, so it gives them back
    their mode first) or nested deeper than a path or Python's recursion can follow: then this says
    False, and the grader starts a new zygote, whose writable mounts are new."""
    try:
        for root, dirs, _ in os.walk(folder):
            for name in dirs:
                with contextlib.suppress(OSError):
                    os.chmod(os.path.join(root, name), 0o700)
        for entry in folder.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return not any(folder.iterdir())
    except (OSError, RecursionError):
        return False


def serve(preload: bool = True) -> None:
    """The zygote's main loop (``python -m grader.sandbox.zygote [--once]``)."""
    ctypes.CDLL(None).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # before anything of a student exists
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if preload:
        import numpy  # noqa: F401 - imported once here, shared by every forked child
        import keras  # noqa: F401

        for optional in ("tensorflow", "tf_keras"):
            try:
                __import__(optional)
            except ImportError:
                pass
    program = seccomp_program()
    out = sys.stdout.fileno()
    send_json(out, {"ready": True})
    for raw in sys.stdin.buffer:
        parts = raw.decode("ascii", "replace").split()
        if len(parts) != 3 or parts[0] != "run":
            continue
        _, nonce, name = parts
        folder = Path("/work") / name
        (folder / "out").mkdir(parents=True)
        (folder / "tmp").mkdir()
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                code = _child(f"/slot/{name}/request.json", program, folder)
            except BaseException:  # noqa: BLE001 - the child reports through its log and exit status
                import traceback

                traceback.print_exc()
            finally:
                os._exit(code)
        reaped, status = os.waitpid(pid, 0)
        files = sorted(p for p in (folder / "out").iterdir() if p.is_file() and not p.is_symlink())[:_MAX_ANSWER_FILES]
        send_json(out, {"nonce": nonce, "pid": pid, "reaped": reaped, "status": status, "log_tail": log_tail(folder / "worker.log"),
                        "full": space_filled(("/work", "/dev/shm"))})
        for path in files:
            send_file(out, path.name, path)
        clean = _empty(Path("/work"))
        clean = _empty(Path("/dev/shm")) and clean
        send_json(out, {"nonce": nonce, "end": True, "clean": clean})


# ------------------------------------------------------------------------------------------------
# The grader's side


class Zygote:
    """One zygote sandbox (one job slot) on one device: `gpu`, whose node alone is bound into it, or
    the CPU (None). Not thread-safe: a pool hands each one to one thread. The request's limits say
    the size of the child's writable space (`disk_bytes`) and the most processes and threads the
    sandbox may hold (`tasks`: a pids cgroup, where the machine lets the grader make one; grader.sandbox.cgroups).

    The zygote imports the libraries but never touches the device (importing TensorFlow, torch or
    JAX does not initialise CUDA, and CUDA does not survive a fork once initialised): each forked
    child initialises it, after capping its memory (grader.worker.backends)."""

    def __init__(self, inputs_dir: Path, slot: Path, gpu: Gpu | None = None, dev: Path = Path("/dev"), *,
                 preload: bool = True) -> None:
        self.inputs_dir, self.slot, self.gpu, self.dev, self.preload = inputs_dir, slot, gpu, dev, preload
        self.disk_bytes, self.tasks = Limits().disk_bytes, Limits().tasks  # the first request's, when it starts
        self.proc: subprocess.Popen[bytes] | None = None
        self._stack = contextlib.ExitStack()
        self._cap: cgroups.TaskCap | None = None

    def command(self) -> list[str]:
        """The bwrap command line of this zygote's sandbox and the program in it."""
        env = {**_env("/out", self.gpu), "HOME": "/work", "KERAS_HOME": "/work/.keras", "TMPDIR": "/work",
               "MPLCONFIGDIR": "/work"}
        args = [*bwrap_base(self.inputs_dir, env, (self.gpu,) if self.gpu is not None else (), self.dev,
                            tmpfs=(("/work", self.disk_bytes),)),
                "--ro-bind", str(self.slot), "/slot", *SEAL, "--chdir", "/work"]
        return [*args, sys.executable, "-s", "-m", "grader.sandbox.zygote", *([] if self.preload else ["--once"])]

    def _start(self, limits: Limits) -> None:
        from grader.errors import GraderFault

        self.disk_bytes, self.tasks = limits.disk_bytes, limits.tasks
        self.slot.mkdir(parents=True, exist_ok=True)
        self._cap = self._stack.enter_context(cgroups.task_cap(self.tasks))
        log_path = self.slot.parent / f"{self.slot.name}-zygote.log"
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([*self._cap.prefix(), *self.command()], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                         env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        answer = self._answer(time.monotonic() + _READY_TIMEOUT, None)
        if not answer or not answer[0].get("ready"):
            lines = [line for line in _read_text(log_path).splitlines() if line.strip()]
            self.close()
            raise GraderFault("the evaluation sandbox did not start"
                              + (f": {lines[-1][:300]}" if lines else " (it said nothing)"),
                              hint="run `grade` again; if it fails the same way, run it with --sandbox none on a "
                                   "machine you trust, and report the line above")

    def _answer(self, deadline: float, cancel: threading.Event | None, files_dir: Path | None = None) -> list[Any] | None:
        """The zygote's next answer, as frames up to its end (or the ready frame); None at the
        deadline, on a broken stream or if it died (raises KeyboardInterrupt on Ctrl-C)."""
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
                break
        frames: list[Any] = []
        try:
            # an answer is a few small files (result JSON, the outputs as .npy): what the child may write
            # in its space is capped, and what the grader takes back of it is capped again
            for frame in read_frames(self.proc.stdout, files_dir or self.slot.parent / "unused",  # type: ignore[arg-type]
                                     max_file_bytes=min(self.disk_bytes, _MAX_ANSWER_BYTES),
                                     max_total_bytes=min(self.disk_bytes, _MAX_ANSWER_BYTES) + 2**26):
                frames.append(frame.document if frame.kind == "json" else frame)
                if frame.kind == "json" and (frame.document.get("end") or frame.document.get("ready")):
                    return frames
        except (ChannelError, OSError, AttributeError):
            return None
        return None

    def run(self, request: WorkerRequest, scratch: Path, *, timeout: float,
            cancel: threading.Event | None = None) -> WorkerOutcome:
        if self.proc is None or self.proc.poll() is not None:
            self._start(request.limits)
        assert self.proc is not None and self.proc.stdin is not None and self._cap is not None
        _empty(self.slot)  # nothing from a previous submission remains
        name, nonce = secrets.token_hex(8), secrets.token_hex(16)
        folder = self.slot / name
        (folder / "models").mkdir(parents=True)
        inside = []
        for m in request.models:
            target = folder / "models" / _safe_name(m.index, m.path)
            shutil.copyfile(m.path, target)
            inside.append(f"/slot/{name}/models/{target.name}")
        inner = placed(inner_request(request, inside, f"/work/{name}/out"), self.gpu)
        (folder / "request.json").write_text(inner.model_dump_json())
        refused_before = self._cap.refused()
        start = time.perf_counter()
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            self.proc.stdin.write(f"run {nonce} {name}\n".encode())
            self.proc.stdin.flush()
            frames = self._answer(time.monotonic() + timeout, cancel, scratch)
        except (BrokenPipeError, OSError):
            frames = None
        head = frames[0] if frames and isinstance(frames[0], dict) else None
        end = frames[-1] if frames and isinstance(frames[-1], dict) else {}
        if head is None or head.get("nonce") != nonce or head.get("pid") != head.get("reaped") \
                or not isinstance(head.get("status"), int) or end.get("nonce") != nonce or end.get("end") is not True:
            timed_out = frames is None and self.proc.poll() is None
            self.close()  # a child past its time, or a zygote that died: the next submission gets a new one
            for produced in scratch.iterdir():  # nothing of an answer that did not end is believed
                if produced.is_file():
                    produced.unlink()
            kind = "timeout" if timed_out else "killed"
            return WorkerOutcome(kind=kind, returncode=None, seconds=time.perf_counter() - start, log_tail="",
                                 message=describe(kind, None, timeout) if timed_out
                                 else "the grader's evaluation process was stopped while it evaluated this model")
        if end.get("clean") is not True:  # something of this child could not be removed: no later child may find it
            self.close()
        status = head["status"]
        returncode = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        tail = str(head.get("log_tail", ""))[-_LOG_TAIL:]
        kind = classify(returncode, tail)
        message = describe(kind, returncode, timeout)
        if head.get("full"):
            kind, message = "disk_full", describe("disk_full", returncode, timeout, disk_bytes=self.disk_bytes)
        elif self._cap.refused() > refused_before:
            kind, message = "too_many_tasks", describe("too_many_tasks", returncode, timeout, tasks=self.tasks)
        return WorkerOutcome(kind=kind, returncode=returncode, seconds=time.perf_counter() - start, log_tail=tail,
                             message=message)

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            for pipe in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(OSError):
                    if pipe is not None:
                        pipe.close()
            self.proc = None
        self._stack.close()
        self._cap = None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def run_once(request: WorkerRequest, scratch: Path, gpu: Gpu | None, *, timeout: float,
             cancel: threading.Event | None = None) -> WorkerOutcome:
    """One request in a one-off sandbox: a zygote that imports nothing before it forks."""
    zygote = Zygote(_inputs_dir(request), scratch.parent / f"{scratch.name}-slot", gpu, preload=False)
    try:
        return zygote.run(request, scratch, timeout=timeout, cancel=cancel)
    finally:
        zygote.close()
        shutil.rmtree(zygote.slot, ignore_errors=True)


def _inputs_dir(request: WorkerRequest) -> Path:
    from grader.sandbox.isolation import inputs_dir_of

    return inputs_dir_of(request)


class ZygotePool:
    """One zygote per concurrent caller and device, started on first use and reused; closed with the run.
    Evaluations wait for a device from `slots` (by default one submission per GPU at a time; the
    run's slots when given, so that the one-off sandboxes of grader.sandbox.isolation.run_worker share them)."""

    def __init__(self, inputs_dir: Path, root: Path, device: str = "cpu", slots: DeviceSlots | None = None) -> None:
        self.inputs_dir, self.root = inputs_dir, root
        self.slots = slots if slots is not None else DeviceSlots.for_device(device)
        self._free: dict[int | None, list[Zygote]] = {}  # idle zygotes by GPU number (None: the CPU)
        self._all: list[Zygote] = []
        self._lock = threading.Lock()

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
                return zygote.run(request, scratch, timeout=timeout, cancel=cancel)
            finally:
                with self._lock:
                    self._free[key].append(zygote)

    def close(self) -> None:
        for zygote in self._all:
            zygote.close()


if __name__ == "__main__":
    serve(preload="--once" not in sys.argv)

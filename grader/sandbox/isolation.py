"""Running the evaluation worker, the one process that opens student model files with a deep-learning
library (and, for models with `Lambda` layers or custom objects, runs student code).

Isolation (`detect_isolation`):
- ``bwrap`` (bubblewrap, Linux): a fresh user, mount, PID, network, IPC and UTS namespace. The worker
  sees the system's libraries and the Python installation read-only, the grader package, the model
  files of ONE submission (each bound read-only at ``/models/``), the unlabelled inputs read-only at
  ``/inputs`` and its own scratch folder at ``/out`` (the only writable place besides an empty
  ``/tmp``). It does not see the user's home, the hidden-test folder, the other submissions or the
  report folder, has no network, no capabilities, and a seccomp filter refuses fork/vfork/clone of
  new processes (threads are allowed), ptrace and cross-process memory access. On a GPU it also
  gets that GPU's device node and the NVIDIA driver's control nodes, nothing else of /dev
  (grader.sandbox.devices, docs/gpu.md).
- ``none``: a plain subprocess, same interface, with the same resource limits but without any of the
  above; every report then says "not sandboxed" and models that carry code are not run.

Both ways the worker sets its own resource limits before it reads any file (address space, CPU time,
open files, size of a written file, no core dumps), its environment is scrubbed, and the grader
kills it (and its whole process group) at the wall-time limit or on Ctrl-C. The worker's answer is
files in the scratch folder that the grader validates (JSON with a size cap, `.npy` without pickle);
hidden-test labels are never given to it (see grader.facts.gather).
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from grader.records.frozen import Frozen
from grader.sandbox.devices import DeviceSlots, Gpu, cuda_env, device_binds
from grader.worker.evaluate import WorkerRequest

Isolation = Literal["bwrap", "none"]
OutcomeKind = Literal["ok", "error", "timeout", "out_of_memory", "killed", "disk_full", "too_many_tasks"]

NOT_SANDBOXED_NOTE = ("NOT SANDBOXED: bubblewrap (bwrap) is not usable here, so models are loaded in a plain "
                      "subprocess with resource limits only; models whose layers carry code were not run")
SANDBOXED_NOTE = "sandboxed: models were loaded in bubblewrap (no network, read-only inputs, one submission visible)"
_LOG_TAIL = 4000
_ENV_KEEP = ("LANG", "LC_ALL", "TZ", "KERAS_BACKEND",
             # where the GPU libraries are and how the backends may use the device (no secrets in these)
             "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION",
             "XLA_PYTHON_CLIENT_PREALLOCATE", "JAX_PLATFORMS", "TF_FORCE_GPU_ALLOW_GROWTH")
_SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


class IsolationInfo(Frozen):
    kind: Isolation
    note: str  # one line for the run summary and every report
    detail: str = ""  # why bwrap is not used, when it is not


class WorkerOutcome(Frozen):
    kind: OutcomeKind
    returncode: int | None
    seconds: float
    log_tail: str
    message: str = ""  # what happened, in words for a student

    @property
    def timed_out(self) -> bool:
        return self.kind == "timeout"


# ------------------------------------------------------------------------------------------------
# Detection


def detect_isolation(want: Literal["auto", "bwrap", "none"] = "auto") -> IsolationInfo:
    """Which isolation this machine gives. `auto`: bubblewrap when it can create namespaces here, else
    none (loudly, quoting bwrap's own error). A sandbox that bwrap can make but in which the grader's
    own Python does not start (an interpreter path the sandbox cannot see) is a grader fault, never a
    reason to drop isolation."""
    if want == "none":
        return IsolationInfo(kind="none", note=NOT_SANDBOXED_NOTE, detail="--sandbox none was given")
    problem = bwrap_problem()
    if problem is None:
        python_problem = sandbox_python_problem()
        if python_problem is not None:
            from grader.errors import GraderFault

            raise GraderFault(f"the sandbox cannot start the grader's Python: {python_problem}",
                              hint=_python_hint(python_problem))
        return IsolationInfo(kind="bwrap", note=SANDBOXED_NOTE)
    if want == "bwrap":
        from grader.errors import GraderError

        raise GraderError(f"--sandbox bwrap: {problem}",
                          hint="install bubblewrap 0.8 or later (Debian/Ubuntu: apt-get install bubblewrap) and allow "
                               "user namespaces, or use --sandbox auto")
    return IsolationInfo(kind="none", note=f"{NOT_SANDBOXED_NOTE} ({problem})", detail=problem)


_NEEDED_OPTIONS = ("--size", "--disable-userns", "--as-pid-1")


def bwrap_problem() -> str | None:
    """Why bubblewrap itself cannot sandbox here, or None when it can: a real probe that creates the
    namespaces the sandboxes use, with only the system mounted."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bwrap is not installed"
    if platform.system() != "Linux":
        return "bubblewrap needs Linux"
    try:
        usage = subprocess.run([exe, "--help"], capture_output=True, timeout=30, text=True).stdout
        missing = [o for o in _NEEDED_OPTIONS if o not in usage]
        if missing:
            return f"this bwrap is too old (no {', '.join(missing)}): the grader needs bubblewrap 0.8 or later"
        probe = subprocess.run([exe, *_NAMESPACES, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
                               capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    if probe.returncode != 0:
        return "bwrap cannot create namespaces here: " + probe.stderr.decode(errors="replace").strip()[:300]
    return None


def sandbox_python_problem() -> str | None:
    """Why the grader's Python does not start in a sandbox mounted exactly as the real ones are
    (None: it starts and imports the worker)."""
    env = _env("/out")
    args = [*bwrap_base(None, env, tmpfs=(("/tmp", 64 * 1024**2), ("/out", 64 * 1024**2))), *SEAL, "--chdir", "/out",
            sys.executable, "-s", "-c", "import grader.worker.evaluate, grader.worker.notebook_run, grader.sandbox.zygote"]
    try:
        probe = subprocess.run(args, capture_output=True, timeout=120, stdin=subprocess.DEVNULL,
                               env={"PATH": os.environ.get("PATH", _SANDBOX_PATH)})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the probe could not run: {exc}"
    if probe.returncode != 0:
        lines = [line for line in probe.stderr.decode(errors="replace").strip().splitlines() if line.strip()]
        return (lines[-1] if lines else f"exit status {probe.returncode}")[:300]
    return None


def _python_hint(problem: str) -> str:
    where = Path(sys.executable)
    if "No such file" in problem or "execvp" in problem:
        return (f"the sandbox mounts the system, the Python installation ({sys.prefix}) and the grader; "
                f"{where} is not reachable inside it: install the grader in a virtual environment outside "
                "/proc, /dev and /sys (a home folder, /opt or /tmp all work), then run it again")
    return "run `grade` again with --traceback; if it persists, report it with the line above"


# ------------------------------------------------------------------------------------------------
# What the sandbox sees


def _python_roots() -> list[Path]:
    """Folders the worker's Python needs: the installation (and a virtualenv's), and site-packages
    that live elsewhere (user site, PYTHONPATH), resolved."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent}
    for entry in sys.path:
        if entry and ("site-packages" in entry or "dist-packages" in entry) and Path(entry).is_dir():
            roots.add(Path(entry).resolve())
    out: list[Path] = []
    for root in sorted(roots, key=lambda p: len(p.parts)):
        if not any(root.is_relative_to(kept) for kept in out) and root.exists():
            out.append(root)
    return out


_SYSTEM = ("usr", "lib", "lib64", "lib32", "bin", "sbin")


def _as_seen_links() -> list[tuple[str, str]]:
    """(target, link) for each folder on the way to the interpreter as the grader was started that is
    a symbolic link (``~/venv -> /data/venv``): the sandbox gets the same link, so the interpreter
    path (and the virtualenv found from it) means the same inside."""
    links: list[tuple[str, str]] = []
    for start in (Path(sys.executable).parent, Path(sys.prefix)):
        path = Path(os.path.abspath(start))
        for depth in range(1, len(path.parts) + 1):
            here = Path(*path.parts[:depth])
            if here.is_symlink() and not any(here.is_relative_to(f"/{name}") for name in _SYSTEM):
                pair = (str(here.resolve()), str(here))
                if pair not in links:
                    links.append(pair)
                break
    return links


def _system_binds() -> list[str]:
    args: list[str] = []
    for name in _SYSTEM:
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "passwd", "group"):
        path = Path("/etc") / name
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for root in _python_roots():
        if not any(root.is_relative_to(f"/{name}") for name in _SYSTEM):
            args += ["--ro-bind", str(root), str(root)]
    for target, link in _as_seen_links():
        args += ["--symlink", target, link]
    return args


def _safe_name(index: int, path: str) -> str:
    name = Path(path).name
    keep = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)[-80:]
    return f"{index}-{keep or 'model'}"


def _library_binds() -> list[str]:
    """Folders of LD_LIBRARY_PATH outside the system and Python binds, read-only: where a machine
    keeps its CUDA libraries when they are not under /usr (an HPC module, /opt/cuda/lib64)."""
    bound = [Path("/") / name for name in ("usr", "lib", "lib64", "lib32", "bin", "sbin")] + _python_roots()
    args: list[str] = []
    for entry in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        path = Path(entry).resolve() if entry else None
        if path is not None and path.is_dir() and not any(path.is_relative_to(b) for b in bound) and str(path) not in args:
            args += ["--ro-bind", str(path), str(path)]
    return args


# New user, mount, PID, network, IPC, UTS and cgroup namespaces; no user namespace may be made inside
# (--disable-userns); the program bwrap runs is PID 1 itself (--as-pid-1), so no dumpable bwrap
# process inside holds its pipes, and its processes cannot signal it (PID 1 of a namespace gets only
# the signals it handles).
_NAMESPACES = ["--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--as-pid-1"]
# Last options of every sandbox: nothing writable but its size-capped tmpfs mounts (bwrap's root and
# /dev are tmpfs mounts without a size, so they are made read-only once everything is mounted)
SEAL = ["--remount-ro", "/dev", "--remount-ro", "/"]
SHM_SHARE = 4  # /dev/shm holds a quarter of a sandbox's writable budget


def bwrap_base(inputs_dir: Path | None, env: dict[str, str], gpus: Sequence[Gpu] = (), dev: Path = Path("/dev"),
               tmpfs: Sequence[tuple[str, int]] = ()) -> list[str]:
    """The bwrap options every sandbox shares: new namespaces, no capabilities, the read-only system,
    Python, grader package (at /grader-lib, found through PYTHONPATH whether installed editable or
    not) and unlabelled inputs (at /inputs; none for a notebook), and exactly `env` as the
    environment. Writable places are only the `tmpfs` mounts (path, bytes) and a /dev/shm of a
    quarter of the largest one, mounted first, so that read-only binds may sit inside them (a
    virtualenv under /tmp). With `gpus`, their device nodes in `dev` (grader.sandbox.devices.device_binds:
    nothing else of /dev) and the CUDA libraries named by LD_LIBRARY_PATH. The caller adds its own
    binds and the program, and ends the options with `SEAL`."""
    largest = max((size for _, size in tmpfs), default=64 * 1024**2)
    args = ["bwrap", *_NAMESPACES, "--proc", "/proc", "--dev", "/dev",
            "--size", str(max(16 * 1024**2, largest // SHM_SHARE)), "--tmpfs", "/dev/shm"]
    for path, size in tmpfs:
        args += ["--size", str(size), "--tmpfs", path]
    args += [*_system_binds(), *device_binds(gpus, dev), *(_library_binds() if gpus else []),
             "--ro-bind", str(Path(__file__).resolve().parents[1]), "/grader-lib/grader", "--clearenv"]
    if inputs_dir is not None:
        args += ["--ro-bind", str(inputs_dir), "/inputs"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


def inputs_dir_of(request: WorkerRequest) -> Path:
    folders = {Path(p).resolve().parent for p in (request.hidden_images, request.public_images, request.public_labels)}
    if len(folders) != 1:
        raise ValueError("worker inputs must live in one folder")
    return folders.pop()


def inner_request(request: WorkerRequest, model_paths: list[str], out_dir: str) -> WorkerRequest:
    """`request` as the sandboxed worker sees it: models and output where they are bound inside."""
    return request.model_copy(update={
        "models": tuple(m.model_copy(update={"path": path}) for m, path in zip(request.models, model_paths, strict=True)),
        "out_dir": out_dir,
        "hidden_images": f"/inputs/{Path(request.hidden_images).name}",
        "public_images": f"/inputs/{Path(request.public_images).name}",
        "public_labels": f"/inputs/{Path(request.public_labels).name}",
    })


def placed(request: WorkerRequest, gpu: Gpu | None) -> WorkerRequest:
    """`request` told which device its worker was given (the worker records it, grader.worker.backends)."""
    return request.model_copy(update={"device": gpu.device if gpu is not None else "cpu"})


def _env(home: str, gpu: Gpu | None = None) -> dict[str, str]:
    """The worker's whole environment: nothing else of the grader's (tokens, GITHUB_* secrets) is passed.
    It sees `gpu` and no other (None: no GPU)."""
    inside = home == "/out"
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update(HOME=home, TMPDIR="/tmp" if inside else home, TF_CPP_MIN_LOG_LEVEL="3", KERAS_HOME=f"{home}/.keras",
               PYTHONDONTWRITEBYTECODE="1", MPLCONFIGDIR=home, PYTHONNOUSERSITE="1",
               PATH=_SANDBOX_PATH if inside else os.environ.get("PATH", _SANDBOX_PATH))
    if inside:
        env["PYTHONPATH"] = "/grader-lib"
    elif "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    env.update(cuda_env(gpu, sandboxed=inside))
    return env


# ------------------------------------------------------------------------------------------------
# seccomp: no new processes (threads are fine), no ptrace, no cross-process memory access


_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# name -> syscall number per architecture (aarch64 has no fork/vfork syscalls)
_SYSCALLS = {
    "x86_64": {"fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "ptrace": 101, "process_vm_readv": 310,
               "process_vm_writev": 311},
    "aarch64": {"clone": 220, "clone3": 435, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271},
}
_CLONE_THREAD = 0x00010000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
_X32_BIT = 0x40000000


def seccomp_program(machine: str | None = None, *, allow_processes: bool = False) -> bytes | None:
    """A classic-BPF seccomp filter (as bwrap's --seccomp reads it), or None for an unknown CPU.

    clone3 answers ENOSYS so that glibc falls back to clone, whose flags a classic filter can read:
    clone with CLONE_THREAD (a thread) is allowed, any other clone (a process) gets EPERM, and so do
    fork, vfork, ptrace and process_vm_readv/writev. Another architecture's syscalls (a 32-bit ABI)
    are refused outright.

    `allow_processes` is the notebook policy: a notebook needs a kernel process (and students' cells
    may start processes), so new processes are allowed there and counted by the runner instead
    (grader.worker.notebook_run); ptrace, process_vm_* and foreign ABIs are still refused.
    """
    machine = machine or platform.machine()
    if machine not in _AUDIT_ARCH:
        return None
    nr = dict(_SYSCALLS[machine])
    if allow_processes:
        for name in ("fork", "vfork", "clone", "clone3"):
            nr.pop(name, None)
    LD_W_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    code: list[tuple[int, int, str | None, str | None]] = []  # (opcode, k, jump-if-true, jump-if-false)
    labels: dict[str, int] = {}

    def op(opcode: int, k: int, jt: str | None = None, jf: str | None = None) -> None:
        code.append((opcode, k, jt, jf))

    op(LD_W_ABS, 4)  # seccomp_data.arch
    op(JEQ, _AUDIT_ARCH[machine], None, "eperm")
    op(LD_W_ABS, 0)  # seccomp_data.nr
    if machine == "x86_64":
        op(JGE, _X32_BIT, "eperm", None)  # the x32 ABI: same arch value, numbers with bit 30 set
    for name, number in nr.items():
        if name not in ("clone", "clone3"):
            op(JEQ, number, "eperm", None)
    if "clone" in nr:
        op(JEQ, nr["clone3"], "enosys", None)
        op(JEQ, nr["clone"], None, "allow")
        op(LD_W_ABS, 16)  # low 32 bits of seccomp_data.args[0]: clone's flags (little-endian)
        op(JSET, _CLONE_THREAD, "allow", "eperm")
    labels["allow"] = len(code)
    op(RET, _RET_ALLOW)
    labels["eperm"] = len(code)
    op(RET, _RET_ERRNO | _EPERM)
    labels["enosys"] = len(code)
    op(RET, _RET_ERRNO | _ENOSYS)

    def offset(i: int, label: str | None) -> int:
        return 0 if label is None else labels[label] - (i + 1)

    return b"".join(struct.pack("<HBBI", opcode, offset(i, jt), offset(i, jf), k)
                    for i, (opcode, k, jt, jf) in enumerate(code))


# ------------------------------------------------------------------------------------------------
# Running


def run_worker(request: WorkerRequest, scratch: Path, *, timeout: float, device: str = "cpu",
               isolation: Isolation = "none", cancel: threading.Event | None = None,
               slots: DeviceSlots | None = None) -> WorkerOutcome:
    """Run `grader.worker.evaluate` on `request` and wait at most `timeout` seconds (or until `cancel` is set).
    On a GPU from `slots` (the run's, shared by its threads: it waits for a free one, and the wait is
    not part of `timeout`); without slots, on `device` ("cpu", "gpu:N"), not shared with anyone."""
    with (slots if slots is not None else DeviceSlots.for_device(device)).hold(cancel) as gpu:
        return run_worker_on(request, scratch, gpu, timeout=timeout, isolation=isolation, cancel=cancel)


def run_worker_on(request: WorkerRequest, scratch: Path, gpu: Gpu | None, *, timeout: float,
                  isolation: Isolation = "none", cancel: threading.Event | None = None) -> WorkerOutcome:
    """`run_worker` on `gpu` (None: the CPU), which the caller holds."""
    if isolation == "bwrap":  # a one-off sandbox: the zygote's, without its imports (one code path)
        from grader.sandbox.zygote import run_once

        return run_once(request, scratch, gpu, timeout=timeout, cancel=cancel)
    scratch.mkdir(parents=True, exist_ok=True)
    request = placed(request, gpu)
    request_path = scratch / "request.json"
    log_path = scratch.parent / f"{scratch.name}.log"  # outside the worker's writable folder
    request_path.write_text(request.model_dump_json())
    command = [sys.executable, "-m", "grader.worker.evaluate", str(request_path)]
    return run_sandboxed(command, scratch, _env(str(scratch), gpu), log_path, timeout=timeout, cancel=cancel)


def run_sandboxed(command: list[str], cwd: Path, env: dict[str, str], log_path: Path, *, timeout: float,
                  cancel: threading.Event | None = None, seccomp: bytes | None = None, pass_fds: tuple[int, ...] = (),
                  after_start: Callable[[], None] | None = None) -> WorkerOutcome:
    """Start `command` (a bwrap command line, or a plain one) in its own session with its output in
    `log_path`; wait at most `timeout` seconds or until `cancel` is set (then it is killed, with its
    whole process group, and KeyboardInterrupt is raised). A `seccomp` program is handed to bwrap as
    ``--seccomp FD`` (inserted before the program to run, which follows the last bwrap option).
    `pass_fds` are handed to the command; `after_start` runs once it has started (to close the
    grader's copy of a pipe's write end)."""
    seccomp_file = None
    if seccomp is not None:
        seccomp_file = tempfile.TemporaryFile()
        seccomp_file.write(seccomp)
        seccomp_file.seek(0)
        fd = seccomp_file.fileno()
        at = command.index(sys.executable)
        command = [*command[:at], "--seccomp", str(fd), *command[at:]]
        pass_fds = (*pass_fds, fd)
    start = time.perf_counter()
    kind: OutcomeKind | None = None
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds)
            if after_start is not None:
                after_start()
            deadline = time.monotonic() + timeout
            try:
                while True:
                    try:
                        proc.wait(timeout=0.25)
                        break
                    except subprocess.TimeoutExpired:
                        if cancel is not None and cancel.is_set():
                            _kill(proc)
                            raise KeyboardInterrupt from None
                        if time.monotonic() > deadline:
                            kind = "timeout"
                            _kill(proc)
                            break
            except BaseException:
                _kill(proc)
                raise
    finally:
        if seccomp_file is not None:
            seccomp_file.close()
    tail = log_tail(log_path)
    rc = proc.returncode
    if kind is None:
        kind = classify(rc, tail)
    return WorkerOutcome(kind=kind, returncode=rc, seconds=time.perf_counter() - start, log_tail=tail,
                         message=describe(kind, rc, timeout))


def log_tail(path: Path) -> str:
    """The last few KB of a worker's log ("" when there is none), for the report."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, path.stat().st_size - _LOG_TAIL))
            return fh.read().decode("utf-8", "replace")
    except OSError:
        return ""


# The last one: under the address-space limit (RLIMIT_AS) TensorFlow cannot reserve the stacks of its
# thread pool and aborts ("Check failed: ... Thread tf_Compute creation via pthread_create() failed",
# then SIGABRT). Seen in about half of the memory-hog runs of tests/test_sandbox.py, reported as
# "killed" until this mark; it is the memory limit all the same.
_OOM_MARKS = ("MemoryError", "ResourceExhaustedError", "std::bad_alloc", "Cannot allocate memory", "out of memory",
              "OOM when allocating", "via pthread_create() failed")


def classify(returncode: int | None, log_tail: str) -> OutcomeKind:
    """ok / error / out_of_memory / killed from how the worker ended (a timeout is known by the caller)."""
    if any(mark in log_tail for mark in _OOM_MARKS):
        return "out_of_memory"
    if returncode == 0:
        return "ok"
    if returncode is not None and (returncode < 0 or returncode >= 128):
        return "killed"
    return "error"


def describe(kind: OutcomeKind, returncode: int | None, timeout: float, *, disk_bytes: int = 0, tasks: int = 0) -> str:
    if kind == "disk_full":
        return (f"the process wrote more than {_size(disk_bytes)}, the limit for the files one submission may write "
                "while it is graded")
    if kind == "too_many_tasks":
        return f"the process started more than {tasks} processes or threads at once, the limit for one submission"
    if kind == "timeout":
        return f"evaluation did not finish within {timeout:.0f} s, the time limit for it"
    if kind == "out_of_memory":
        return "evaluation ran out of memory (the grader limits how much one submission may use)"
    if kind == "killed":
        sig = -returncode if returncode is not None and returncode < 0 else (returncode or 0) - 128
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        what = {"SIGSEGV": "the library crashed (segmentation fault) on this model",
                "SIGABRT": "the library aborted on this model", "SIGKILL": "the process was killed",
                "SIGXCPU": "it used more CPU time than allowed", "SIGXFSZ": "it wrote a file larger than allowed"}
        return f"the process evaluating this model stopped with {name}: {what.get(name, 'it was stopped by a signal')}"
    if kind == "error":
        return f"the process evaluating this model stopped with exit status {returncode}"
    return ""


def _size(n: int) -> str:
    return f"{n / 1024**3:g} GB" if n >= 1024**3 else f"{n / 1024**2:g} MB"


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()

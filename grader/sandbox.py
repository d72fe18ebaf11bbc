"""Running the evaluation worker in a separate process.

This is the single door to code that reads student model files with a deep-learning library. For
now it is a plain subprocess with a scrubbed environment, a private scratch directory as working
directory and home, and a wall-time limit; it is NOT yet a sandbox (no namespaces, no read-only
mounts), and every report says so. The sandbox issue hardens this module without changing its
interface: the request carries no labels, and the result is JSON and `.npy` files read without
pickle.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from grader._frozen import Frozen
from grader.evaluate import WorkerRequest

SANDBOX_NOTE = "not sandboxed: models are loaded in a separate process with a time limit, but without namespace isolation"
_LOG_TAIL = 4000
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "KERAS_BACKEND")


class WorkerOutcome(Frozen):
    returncode: int | None
    timed_out: bool
    seconds: float
    log_tail: str


def _env(scratch: Path, device: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update(HOME=str(scratch), TMPDIR=str(scratch), TF_CPP_MIN_LOG_LEVEL="3", KERAS_HOME=str(scratch / ".keras"),
               PYTHONDONTWRITEBYTECODE="1", MPLCONFIGDIR=str(scratch))
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = "-1"
    return env


def run_worker(request: WorkerRequest, scratch: Path, *, timeout: float, device: str = "cpu",
               cancel: threading.Event | None = None) -> WorkerOutcome:
    """Run `grader.evaluate` on `request` and wait at most `timeout` seconds (or until `cancel` is set)."""
    scratch.mkdir(parents=True, exist_ok=True)
    request_path = scratch / "request.json"
    request_path.write_text(request.model_dump_json())
    log_path = scratch / "worker.log"
    start = time.perf_counter()
    timed_out = False
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "grader.evaluate", str(request_path)],
            cwd=scratch, env=_env(scratch, device), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
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
                        timed_out = True
                        _kill(proc)
                        break
        except BaseException:
            _kill(proc)
            raise
    with open(log_path, "rb") as fh:
        fh.seek(max(0, log_path.stat().st_size - _LOG_TAIL))
        tail = fh.read().decode("utf-8", "replace")
    return WorkerOutcome(returncode=proc.returncode, timed_out=timed_out, seconds=time.perf_counter() - start,
                         log_tail=tail)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()

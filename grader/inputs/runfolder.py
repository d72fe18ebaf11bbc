"""A grading run's private scratch folder (``$TMPDIR/grader-run-*``), which nothing outlives.

The folder holds what a run must put on disk: the workers' inputs and, for an encrypted bundle, the
decrypted hidden-test files (grader.inputs.bundle keeps the label files themselves in memory). Three things
make sure none of it stays behind, whatever way the run ends:

- the run removes it when it ends (the pipeline's ``finally``);
- a guardian, a tiny process of its own session started with the folder, removes it as soon as
  the run's process is gone: it waits on a pipe that only the run holds, and the kernel closes that
  pipe when the run dies, kill -9 included;
- every run first sweeps the folders of runs whose process is gone (the folder names its owner:
  pid and start time, so a reused pid is not taken for the owner), in case the guardian was killed
  too (a whole cgroup killed, a power cut).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "grader-run-"
OWNER = ".owner"
STALE_UNOWNED_SECONDS = 600  # a folder without an owner (a grader older than this module) is swept after this

# The guardian: blocks reading its stdin (a pipe whose other end only the run holds); at end of file
# (the run closed it, or the kernel did when the run died) it removes the folder. Standard library
# only, no site packages (-I -S), so that it starts in a few milliseconds.
_GUARD = r"""
import os, shutil, sys
try:
    while os.read(0, 65536):
        pass
except OSError:
    pass
shutil.rmtree(sys.argv[1], ignore_errors=True)
"""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not our folder's owner anyway
        return True
    return started is None or _start_time(pid) in (None, started)


@dataclass
class RunFolder:
    """The folder and its guardian. `close` removes the folder, then lets the guardian go."""

    path: Path
    guardian: subprocess.Popen[bytes] | None

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.guardian is not None:
            with contextlib.suppress(OSError):
                self.guardian.stdin.close()  # type: ignore[union-attr]
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.guardian.wait(timeout=10)
            self.guardian = None


def make_run_folder(base: Path | None = None) -> RunFolder:
    """A new private folder (0700) under `base` (default: the temporary folder), its owner recorded
    in it and a guardian watching over it."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
    pid = os.getpid()
    (path / OWNER).write_text(json.dumps({"pid": pid, "started": _start_time(pid), "host": socket.gethostname()}))
    try:
        guardian: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, str(path)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True, cwd="/")
    except OSError:  # no guardian: the sweep at the next start still removes the folder
        guardian = None
    return RunFolder(path, guardian)


def sweep_stale(base: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the run folders under `base` (default: the temporary folder) whose run is gone: the
    owner it names is not running (or is another process with the same pid), or it names none and is
    older than STALE_UNOWNED_SECONDS. Only this user's folders, on this host; returns those removed."""
    root = Path(base) if base is not None else Path(tempfile.gettempdir())
    now = time.time() if now is None else now
    host, uid = socket.gethostname(), os.getuid()
    removed = []
    try:
        candidates = [p for p in root.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return []
    for folder in candidates:
        try:
            info = folder.lstat()
            if not folder.is_dir() or folder.is_symlink() or info.st_uid != uid:
                continue
            try:
                owner = json.loads((folder / OWNER).read_text())
                stale = owner.get("host") == host and not _alive(int(owner["pid"]), owner.get("started"))
            except FileNotFoundError:
                stale = now - info.st_mtime > STALE_UNOWNED_SECONDS
            except (ValueError, KeyError, TypeError):
                stale = now - info.st_mtime > STALE_UNOWNED_SECONDS
        except OSError:
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed

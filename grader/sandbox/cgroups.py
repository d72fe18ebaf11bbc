"""A cap on the tasks (processes and threads) of one sandbox: a pids cgroup per sandbox.

RLIMIT_NPROC cannot do it: the grader usually runs as root, whose processes the kernel does not
count, and seccomp cannot count threads. A pids cgroup can, when the grader may make one: a
writable cgroup v1 ``pids`` hierarchy, or a cgroup v2 folder whose subtree has the ``pids``
controller (a delegated one, or the root of a v2 mount). `GRADER_PIDS_CGROUP` names the folder to
make sandboxes' cgroups in; otherwise the mounts in /proc/self/mountinfo are searched. Where none can
be made, sandboxes are not capped this way and the run's summary says so (`status_note`).

Each sandbox gets its own cgroup ``<parent>/grader-<random>`` with ``pids.max``; its bwrap is moved
into it by a tiny shell prefix before it execs (so everything it starts is inside from the first
instruction); ``pids.events`` counts the tasks the cap refused; the cgroup is emptied and
removed when the sandbox ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENV = "GRADER_PIDS_CGROUP"


@dataclass(frozen=True)
class TaskCap:
    """The cgroup of one running sandbox (None folder: not capped)."""

    folder: Path | None
    limit: int

    def prefix(self) -> list[str]:
        """Put before a command line: moves the process into the cgroup, then execs the command."""
        if self.folder is None:
            return []
        return ["/bin/sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(self.folder)]

    def refused(self) -> int:
        """How many tasks the cap has refused so far (compare before and after a child)."""
        if self.folder is None:
            return 0
        try:
            for line in (self.folder / "pids.events").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "max":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0


def _writable_parent(folder: Path) -> bool:
    return (folder / "cgroup.procs").exists() and os.access(folder, os.W_OK)


def _v2_ready(folder: Path) -> bool:
    """A cgroup v2 folder whose children can get the pids controller (enabled here when it may be)."""
    try:
        if "pids" in (folder / "cgroup.subtree_control").read_text().split():
            return True
        if "pids" not in (folder / "cgroup.controllers").read_text().split():
            return False
        if (folder / "cgroup.procs").read_text().strip() and (folder / "cgroup.type").exists():
            return False  # a non-root cgroup with processes cannot enable controllers for its children
        (folder / "cgroup.subtree_control").write_text("+pids")
        return True
    except OSError:
        return False


def _candidates() -> Iterator[Path]:
    own: dict[str, str] = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else ["" if number == "0" else controllers]:
                own[name] = path
    except (OSError, ValueError):
        return
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    for line in mounts:
        fields = line.split()
        if " - " not in line:
            continue
        post = line.split(" - ", 1)[1].split()
        fstype, options = post[0], post[2] if len(post) > 2 else ""
        root, point = fields[3], fields[4]
        if fstype == "cgroup" and "pids" in options.split(","):
            path = own.get("pids", "/")
        elif fstype == "cgroup2":
            path = own.get("", "/")
        else:
            continue
        relative = os.path.relpath(path, root) if path.startswith(root) else None
        if relative is not None:
            yield Path(point) / relative if relative != "." else Path(point)


@functools.lru_cache(maxsize=1)
def find_parent() -> Path | None:
    """Where this machine lets the grader make pids cgroups, or None (a fact about the machine, so
    looked up once per process)."""
    named = os.environ.get(ENV)
    folders = [Path(named)] if named else list(_candidates())
    for folder in folders:
        if not _writable_parent(folder):
            continue
        if (folder / "pids.max").exists() or (folder / "tasks").exists() or _v2_ready(folder):  # v1 pids, or v2
            _sweep(folder)
            return folder
    return None


def _sweep(parent: Path) -> None:
    """Remove the cgroups of graders that are gone (killed with -9 before they could): empty ones only."""
    for folder in parent.glob("grader-*-*"):
        try:
            pid = int(folder.name.split("-")[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                folder.rmdir()
        except (ValueError, OSError):
            continue


def status_note() -> str:
    parent = find_parent()
    if parent is None:
        return ("tasks per sandbox not capped: no pids cgroup can be made here (mount a cgroup pids hierarchy, "
                f"or name a writable one with ${ENV})")
    return f"tasks per sandbox capped by a pids cgroup under {parent}"


@contextlib.contextmanager
def task_cap(limit: int) -> Iterator[TaskCap]:
    """A fresh pids cgroup capped at `limit` tasks for one sandbox, removed afterwards (with anything
    still in it killed)."""
    parent = find_parent()
    if parent is None:
        yield TaskCap(None, limit)
        return
    folder = parent / f"grader-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        folder.mkdir()
        (folder / "pids.max").write_text(str(limit))
    except OSError:
        with contextlib.suppress(OSError):
            folder.rmdir()
        yield TaskCap(None, limit)
        return
    try:
        yield TaskCap(folder, limit)
    finally:
        _remove(folder)


def _remove(folder: Path) -> None:
    for _ in range(50):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            folder.rmdir()
            return
        except OSError:
            time.sleep(0.05)

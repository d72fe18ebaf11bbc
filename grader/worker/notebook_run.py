"""Executing one student notebook, as it runs inside the notebook sandbox (never in the grader's process).

The grader (`grader.sandbox.notebook_sandbox`) prepares a copy of the submission's folder, the notebook with its
Colab-only lines neutralised (`neutralise`, a pure function run in the grader's process), a Keras
dataset cache holding PUBLIC data only, and a `NotebookRequest`; then it starts
``python -m grader.worker.notebook_run request.json`` in bubblewrap. This module:

- runs the notebook's cells as written with nbclient on the ``python3`` kernel of the grader's own
  environment; nothing is injected, nothing of the grader is imported in the kernel (its PYTHONPATH
  holds only the `google.colab` stand-in);
- gives each cell ``min(cell timeout, time left for the whole notebook)``, so a hanging cell ends the
  run with everything before it kept;
- copies the submission (read-only at ``/submission``) into ``/content``, a size-capped tmpfs, so the
  notebook may write beside its files but never on the host's disk;
- sends what it observes on its channel (grader.worker.channel: a pipe only it holds; it is PID 1 of the
  sandbox and not dumpable, so the kernel and its children can neither open it through /proc, nor
  write the records, nor signal the runner): ``started``, one record per executed cell as it goes (a
  run killed from outside keeps them), the result, then the model files the notebook wrote, after
  every other process of the sandbox is gone. A run whose runner died sends no result: it is never
  "completed";
- caps the text each cell may output (the rest is dropped while it streams, not after), and, inside
  the sandbox's PID namespace, stops the run when the notebook starts more than `max_processes`
  processes (a fork bomb).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import threading
import time
import traceback
from pathlib import Path
from collections.abc import Callable
from typing import Any, Literal

from grader.records.frozen import Frozen
from grader.worker.evaluate import Limits

RunnerStatus = Literal["completed", "error", "timeout", "killed", "out_of_memory"]

# `GRADER_EXECUTING=1` is set in the kernel's environment: a teacher's starter notebook can read it to
# train briefly when graded, e.g. ``EPOCHS = 1 if os.environ.get("GRADER_EXECUTING") else 30``.
EXECUTING_ENV = "GRADER_EXECUTING"


class NotebookRequest(Frozen):
    """What the runner gets (paths as it sees them inside the sandbox)."""

    notebook: str  # the prepared (neutralised) notebook
    workdir: str  # the kernel's working directory: the notebook's folder in the copy of the submission
    source_dir: str  # the submission's folder (read-only)
    content_dir: str  # where the runner copies it, the notebook's writable folder
    writable: tuple[str, ...] = ()  # the sandbox's writable places, checked for a filled one at the end
    cell_timeout: float = 600.0
    timeout: float = 1800.0  # the whole notebook
    allow_errors: bool = False
    max_output_chars: int = 20_000  # text one cell may output
    max_processes: int = 64  # counted only inside a PID namespace (`count_processes`)
    count_processes: bool = False
    kernel_env: dict[str, str] = {}
    limits: Limits = Limits()


class CellRecord(Frozen):
    """One executed code cell, as the runner writes it to cells.jsonl."""

    index: int
    status: Literal["ok", "error", "timeout"]
    seconds: float
    outputs: list[dict[str, Any]] = []
    error: str | None = None


class RunnerResult(Frozen):
    status: RunnerStatus
    message: str = ""
    cells_run: int = 0
    failed_cell: int | None = None
    seconds: float = 0.0
    peak_memory_mb: float | None = None
    disk_full: bool = False


# ------------------------------------------------------------------------------------------------
# Colab-only lines (pure; run by the grader before the sandbox starts)

_SHELL_MAGICS = ("pip", "conda", "tensorflow_version", "load_ext tensorboard", "tensorboard", "sx", "system")
_SHELL_CELL_MAGICS = ("bash", "sh", "shell", "script", "system", "writefile")


def neutralise(source: str, cell: int) -> tuple[str, list[str]]:
    """`source` with the lines that cannot run in the sandbox replaced by ``pass`` (same indentation,
    same line count), and one note per line replaced, for the report."""
    lines = source.split("\n")
    first = lines[0].strip() if lines else ""
    if first.startswith("%%") and first[2:].split(" ", 1)[0] in _SHELL_CELL_MAGICS:
        note = f"cell {cell}: `{first[:80]}` cell not run (shell cells need a network and a machine the grader does not give)"
        return "\n".join("pass" if i == 0 else "" for i in range(len(lines))), [note]
    out, notes = [], []
    for number, line in enumerate(lines, 1):
        stripped = line.lstrip()
        indent = line[: len(line) - len(stripped)]
        reason = None
        if stripped.startswith("!"):
            reason = "shell command not run (no network: packages come from the grader's environment)"
        elif stripped.startswith("%") and not stripped.startswith("%%"):
            magic = stripped[1:]
            if any(magic == m or magic.startswith(m + " ") for m in _SHELL_MAGICS):
                reason = "Colab/shell magic not run"
        elif re.match(r"[\w.]+\s*=\s*!", stripped):  # files = !ls
            reason = "shell command not run"
        if reason:
            out.append(f"{indent}pass")
            notes.append(f"cell {cell} line {number}: `{stripped[:80]}`: {reason}")
        else:
            out.append(line)
    if "google.colab" in source:
        notes.append(f"cell {cell}: google.colab is a stand-in here: drive.mount() makes an empty /content/drive/MyDrive "
                     "folder (your Drive files are not there), files.upload() fails, files.download() does nothing")
    return "\n".join(out), notes


COLAB_STUB = {
    "google/colab/__init__.py": '''"""A stand-in for google.colab, put there by the grader (there is no Colab in the grader's sandbox)."""
from google.colab import drive, files, output, patches  # noqa: F401
''',
    "google/colab/drive.py": '''import os


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    os.makedirs(os.path.join(mountpoint, "MyDrive"), exist_ok=True)
    print(f"[grader] drive.mount({mountpoint!r}): an empty folder; Google Drive is not reachable from the grader")


def flush_and_unmount(timeout_ms=None):
    pass
''',
    "google/colab/files.py": '''def upload(*args, **kwargs):
    raise RuntimeError("files.upload() needs a person at a browser; the grader cannot upload files. "
                       "Put the files your notebook reads in your submission folder instead.")


def download(filename):
    print(f"[grader] files.download({filename!r}) skipped")
''',
    "google/colab/output.py": '''def enable_custom_widget_manager(*args, **kwargs):
    pass


def clear(*args, **kwargs):
    pass
''',
    "google/colab/patches.py": '''def cv2_imshow(image):
    print("[grader] cv2_imshow skipped")
''',
}


def write_colab_stub(folder: Path) -> None:
    """The google.colab stand-in, as a namespace package part (no google/__init__.py: protobuf's
    `google` package must still import)."""
    for rel, text in COLAB_STUB.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ------------------------------------------------------------------------------------------------
# Inside the sandbox


def _short_error(content: dict[str, Any]) -> str:
    ename, evalue = content.get("ename", "Error"), content.get("evalue", "")
    trace = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in content.get("traceback", [])]
    tail = "\n".join(trace)[-1500:]
    return f"{ename}: {evalue}"[:500] + (f"\n{tail}" if tail else "")


def _text_size(out: Any) -> int:
    if out.get("output_type") == "stream":
        return len(out.get("text", ""))
    data = out.get("data", {})
    return len(str(data.get("text/plain", ""))) + (200 if len(data) > 1 else 0)


_RAW_PER_VISIBLE = 500  # raw stream text allowed per character of the cap: 10 MB at the default, about half an hour of a Keras progress bar


class _Screen:
    """Counts the characters a stream shows once carriage returns and backspaces have done their
    work, as a terminal (or Jupyter) would show them: a redrawn progress line counts once."""

    def __init__(self) -> None:
        self.done = 0  # characters of finished lines
        self.line = 0  # length of the line being drawn
        self.raw = 0

    def feed(self, text: str) -> None:
        self.raw += len(text)
        for part in re.split(r"(\n|\r|\x08+)", text):
            if part == "\n":
                self.done += self.line + 1
                self.line = 0
            elif part == "\r":
                self.line = 0
            elif part.startswith("\x08"):
                self.line = max(0, self.line - len(part))
            else:
                self.line += len(part)

    @property
    def visible(self) -> int:
        return self.done + self.line


def _count_processes() -> int:
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


def _enforce_process_limit(limit: int, tripped: threading.Event) -> None:
    """Inside a PID namespace, /proc lists only the sandbox's processes: too many, and all are killed."""
    try:
        if _count_processes() > limit:
            tripped.set()
            os.kill(-1, 9)  # every process this one may signal, in its namespace; not itself
    except OSError:
        pass


def _watch_processes(limit: int, stop: threading.Event, tripped: threading.Event) -> None:
    """Poll while cells run; `run` also checks after every cell, so a cell quicker than a poll is caught."""
    while not stop.wait(0.2):
        _enforce_process_limit(limit, tripped)


def run(request: NotebookRequest, emit: Callable[[dict[str, Any]], None]) -> RunnerResult:
    """Execute the notebook; `emit` gets each executed cell's record (a CellRecord as JSON) as it ends."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(request.notebook, as_version=4)
    deadline = time.monotonic() + request.timeout
    started: dict[int, float] = {}
    sizes: dict[int, int] = {}
    screens: dict[int, _Screen] = {}
    state: dict[str, Any] = {"cells_run": 0, "failed": None, "whole_timeout": False}
    stop, tripped = threading.Event(), threading.Event()

    class _Client(NotebookClient):  # type: ignore[misc]
        def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
            if msg["msg_type"] in ("stream", "execute_result", "display_data", "update_display_data"):
                used = sizes.get(cell_index, 0)
                if used > request.max_output_chars:
                    return None  # dropped while it streams: a cell printing forever cannot fill memory
                if msg["msg_type"] == "stream":
                    text = msg["content"].get("text", "")
                    screen = screens.setdefault(cell_index, _Screen())
                    screen.feed(text)
                    # what the cell shows once progress bars have redrawn themselves (Keras redraws its
                    # line ~20 times a second with \r or \b), with a cap on the raw text too
                    sizes[cell_index] = max(screen.visible, screen.raw // _RAW_PER_VISIBLE)
                else:
                    sizes[cell_index] = used + _text_size(msg.get("content", {}))
                if sizes[cell_index] > request.max_output_chars:
                    note = nbformat.v4.new_output("stream", name="stderr",
                                                  text=f"\n[grader] output of this cell cut at {request.max_output_chars} characters\n")
                    outs.append(note)
                    return note
            return super().output(outs, msg, display_id, cell_index)

    def cell_timeout(_source: str) -> int:
        left = deadline - time.monotonic()
        if left <= request.cell_timeout:
            state["whole_timeout"] = True
        return max(1, int(min(request.cell_timeout, left)))

    def on_start(cell: Any, cell_index: int) -> None:
        started[cell_index] = time.monotonic()
        state["whole_timeout"] = False

    def record(cell: Any, cell_index: int, status: str, error: str | None = None) -> None:
        state["cells_run"] += 1
        outputs = [dict(o) for o in cell.get("outputs", [])]
        rec = CellRecord(index=cell_index, status=status, seconds=round(time.monotonic() - started.get(cell_index, time.monotonic()), 3),
                         outputs=json.loads(json.dumps(outputs, default=str)), error=error)
        emit({"cell": json.loads(rec.model_dump_json())})

    def on_executed(cell: Any, cell_index: int, execute_reply: dict[str, Any]) -> None:
        if request.count_processes:
            _enforce_process_limit(request.max_processes, tripped)
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            if state["failed"] is None:
                state["failed"] = cell_index
            record(cell, cell_index, "error", _short_error(content))
        else:
            record(cell, cell_index, "ok")

    client = _Client(nb, timeout_func=cell_timeout, allow_errors=request.allow_errors, kernel_name="python3",
                     resources={"metadata": {"path": request.workdir}}, record_timing=False,
                     on_cell_start=on_start, on_cell_executed=on_executed, iopub_timeout=10, shutdown_kernel="immediate")
    if request.count_processes:
        threading.Thread(target=_watch_processes, args=(request.max_processes, stop, tripped), daemon=True).start()
    t0 = time.monotonic()
    status: RunnerStatus = "completed"
    message = ""
    try:
        client.execute()
    except CellTimeoutError:
        index = max(started) if started else None
        if index is not None:
            record(nb.cells[index], index, "timeout", "the cell did not finish in time")
        state["failed"] = index
        status = "timeout"
        message = (f"the notebook did not finish within {request.timeout:.0f} s, its time limit (cell {index} was running)"
                   if state["whole_timeout"] else f"cell {index} did not finish within {request.cell_timeout:.0f} s, the time limit per cell")
    except CellExecutionError:
        status = "error"
        message = f"cell {state['failed']} raised an error, so the cells after it were not run"
    except DeadKernelError:
        index = max(started) if started else None
        state["failed"] = index
        status = "killed"
        message = f"the kernel died while it ran cell {index} (out of memory, or the process was killed)"
    finally:
        stop.set()
    if tripped.is_set():
        status, message = "killed", f"the notebook started more than {request.max_processes} processes and was stopped"
    elif status == "completed" and state["failed"] is not None:
        status, message = "error", f"cell {state['failed']} raised an error (the rubric lets the notebook go on after errors)"
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the kernel, in MB
    if status == "killed" and "MemoryError" in "".join(str(c.get("outputs", "")) for c in nb.cells[-3:]):
        status = "out_of_memory"
    return RunnerResult(status=status, message=message, cells_run=state["cells_run"], failed_cell=state["failed"],
                        seconds=round(time.monotonic() - t0, 3), peak_memory_mb=round(peak, 1) if peak else None)


MAX_COPY_BYTES = 2 * 1024**3  # of a submission's folder copied for its notebook; larger files are left out
MAX_ARTIFACTS = 10
MODEL_SUFFIXES = (".h5", ".hdf5", ".keras", ".tflite")  # as grader.inputs.discover's (not imported: the runner stays small)


def copy_tree(src: Path, dest: Path, budget: int = MAX_COPY_BYTES) -> list[str]:
    """Copy a submission's regular files (no symbolic links, no hidden folders, nothing over the size
    budget); returns the files left out."""
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        rel = Path(dirpath).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            path = Path(dirpath) / name
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                continue
            if info.st_size > budget:
                skipped.append((rel / name).as_posix())
                continue
            budget -= info.st_size
            shutil.copyfile(path, dest / rel / name)
    return skipped


def model_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if d not in (".ipynb_checkpoints",)]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix.lower() in MODEL_SUFFIXES:
                info = path.lstat()
                if stat.S_ISREG(info.st_mode):
                    found[path.relative_to(root).as_posix()] = (info.st_size, info.st_mtime_ns)
    return found


def _guard_runner() -> None:
    """Make this process unreachable for the notebook's processes (same uid, no capabilities): not
    dumpable (no /proc/1/fd, /proc/1/mem), and, being PID 1, deaf to every signal it does not handle;
    Python's SIGINT handler would be one (a no-op handler is not enough: nbclient's event loop then
    loses the kernel), so SIGINT is ignored, as PID 1 ignores the rest."""
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: list[str]) -> int:
    from grader.worker.channel import send_file, send_json, space_filled
    from grader.worker.evaluate import _exit_with_parent, apply_limits

    channel = int(argv[argv.index("--channel") + 1])
    os.set_inheritable(channel, False)  # the kernel and its children never hold the runner's channel
    sandboxed = os.getpid() == 1
    if sandboxed:
        _guard_runner()
    else:
        _exit_with_parent()
    send_json(channel, {"started": True})
    request = NotebookRequest.model_validate_json(Path(argv[1]).read_text())
    apply_limits(request.limits)
    content = Path(request.content_dir)
    skipped = copy_tree(Path(request.source_dir), content, min(MAX_COPY_BYTES, request.limits.disk_bytes))
    if skipped:
        send_json(channel, {"note": f"files too large to copy beside the notebook: {', '.join(skipped[:5])}"})
    before = model_snapshot(content)
    os.environ.update(request.kernel_env)
    os.environ.pop("PYTHONPATH", None)  # the runner found the grader here; the kernel gets only the stand-ins
    if "PYTHONPATH" in request.kernel_env:
        os.environ["PYTHONPATH"] = request.kernel_env["PYTHONPATH"]
    os.chdir(request.workdir)
    try:
        result = run(request, lambda record: send_json(channel, record))
    except Exception as exc:  # noqa: BLE001 - the runner's own failure, reported as the notebook's result
        traceback.print_exc()
        result = RunnerResult(status="error", message=f"the notebook could not be run: {type(exc).__name__}: {str(exc)[:300]}")
    if sandboxed:
        import signal

        try:  # nothing the notebook started may change its files while they are read
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
    if space_filled(request.writable):
        limit = request.limits.disk_bytes
        result = result.model_copy(update={
            "status": "error" if result.status == "completed" else result.status, "disk_full": True,
            "message": (f"your notebook wrote more than {limit / 1024**3:g} GB, the limit for the files a notebook may "
                        "write while it is graded" + (f"; {result.message}" if result.message else ""))})
    send_json(channel, {"result": json.loads(result.model_dump_json())})
    after = model_snapshot(content)
    changed = [rel for rel, info in sorted(after.items()) if before.get(rel) != info][:MAX_ARTIFACTS]
    for number, rel in enumerate(changed):
        name = f"{number:02d}{Path(rel).suffix.lower()}"
        send_json(channel, {"artifact": rel, "name": name})
        send_file(channel, name, content / rel)
    send_json(channel, {"end": True})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Executing a submitted notebook in the notebook sandbox, from the grader's side.

Per notebook the grader:
1. writes the notebook with its Colab-only lines neutralised (`grader.worker.notebook_run.neutralise`; each
   replaced line is listed in the report), the `google.colab` stand-in, and the request;
2. starts ``python -m grader.worker.notebook_run`` in bubblewrap: new namespaces, no network (loopback only,
   for the kernel's own sockets), read-only system and Python, the submission's folder read-only at
   ``/submission``, which the runner copies into ``/content`` (Colab's working folder), a private
   home whose Keras dataset cache holds PUBLIC data only (`grader.inputs.datasets.write_keras_cache`), no
   hidden images and no labels at all. Its only writable places are size-capped tmpfs mounts
   (``/content`` at the limit's size, home, ``/tmp`` and ``/dev/shm`` at a quarter each): a notebook
   never writes to the host's disk. A seccomp filter refuses ptrace and cross-process memory access
   (processes are allowed: the kernel is one; the runner counts them, and a pids cgroup caps them
   where the machine has one); resource limits per process; a wall-time limit;
3. listens on the runner's channel (grader.worker.channel; only the runner holds it, see
   grader.worker.notebook_run): the cell records as they come (the cells run before a hang or a crash are
   kept), the result (none when the runner died: then the run is not "completed"), and the model
   files the notebook created or rewrote, which are evaluated like submitted models, labelled as
   produced by the notebook. A sandbox that never said it started is a grader fault.

Without bubblewrap a notebook is arbitrary code with the grader's rights, so it is not run unless the
teacher passes ``--allow-unsandboxed-code`` (then it runs in a plain subprocess with the same limits).
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from grader.sandbox import cgroups
from grader.worker.channel import ChannelError, read_frames
from grader.worker.evaluate import Limits
from grader.records.evidence import CellRun, NotebookRun
from grader.worker.notebook_run import (
    EXECUTING_ENV, MAX_ARTIFACTS, CellRecord, NotebookRequest, RunnerResult, neutralise, write_colab_stub,
)
from grader.facts.notebooks import claims_from_cells, histories_from_cells, outputs_text
from grader.inputs.rubric import NotebookPolicy
from grader.sandbox.isolation import SEAL, SHM_SHARE, Isolation, _env, bwrap_base, log_tail, run_sandboxed, seccomp_program

MAX_RECORDS_BYTES = 64 * 1024**2  # cell records as read back
_NETWORK_MARKS = ("URL fetch failure", "Network is unreachable", "Name or service not known", "Temporary failure in name resolution",
                  "urlopen error", "ConnectionError", "Max retries exceeded")
_START_MARGIN = 90.0  # seconds for the sandbox and kernel to start and stop, on top of the notebook's limit


@dataclass(frozen=True)
class NotebookContext:
    """What every notebook run of a grading run shares."""

    policy: NotebookPolicy
    isolation: Isolation
    keras_cache: Path | None  # folder holding <dataset>/ as Keras caches it (public data only)
    limits: Limits
    allow_unsandboxed_code: bool = False
    cancel: threading.Event | None = None
    # the teacher's official application weights (hidden_tests/reference-weights/): bound read-only as
    # Keras's model cache, so that VGG16(weights="imagenet") finds its file without a network
    reference_weights: Path | None = None


@dataclass(frozen=True)
class Artifact:
    """A model file a notebook wrote while the grader ran it."""

    label: str  # "hw10.ipynb→cnn.h5"
    real: Path
    size: int
    notebook: str


@dataclass
class _Heard:
    """What the runner said on its channel."""

    started: bool = False
    records: list[CellRecord] = field(default_factory=list)
    result: RunnerResult | None = None
    artifacts: list[tuple[str, Path, int]] = field(default_factory=list)  # (path in the submission, received file, size)
    notes: list[str] = field(default_factory=list)
    ended: bool = False
    broken: str = ""


def _listen(stream: BinaryIO, files_dir: Path, limits: Limits, heard: _Heard) -> None:
    """Read the runner's frames (in a thread, while it runs); trusts nothing: sizes capped, records
    validated, a bad frame ends the listening with what came before it."""
    pending: str | None = None
    try:
        for frame in read_frames(stream, files_dir, max_file_bytes=limits.disk_bytes,
                                 max_total_bytes=limits.disk_bytes + MAX_RECORDS_BYTES):
            doc = frame.document if frame.kind == "json" else None
            if frame.kind == "file":
                if pending is not None and len(heard.artifacts) < MAX_ARTIFACTS:
                    heard.artifacts.append((pending, frame.path, frame.size))  # type: ignore[arg-type]
                pending = None
            elif not isinstance(doc, dict):
                break
            elif doc.get("started"):
                heard.started = True
            elif "cell" in doc:
                heard.records.append(CellRecord.model_validate(doc["cell"]))
            elif "result" in doc:
                heard.result = RunnerResult.model_validate(doc["result"])
            elif "artifact" in doc:
                pending = str(doc["artifact"])[:500]
            elif "note" in doc:
                heard.notes.append(str(doc["note"])[:500])
            elif doc.get("end"):
                heard.ended = True
    except (ChannelError, ValueError, OSError) as exc:
        heard.broken = str(exc)[:300]


def not_run(message: str) -> NotebookRun:
    return NotebookRun(status="not_run", message=message)


def execute_notebook(notebook: Path, label: str, submission_root: Path, scratch: Path,
                     ctx: NotebookContext) -> tuple[NotebookRun, list[Artifact]]:
    """Run one notebook as the rubric says; never raises for a bad notebook."""
    import nbformat

    if ctx.isolation != "bwrap" and not ctx.allow_unsandboxed_code:
        return not_run("not executed: running a notebook runs its code, and this grading run had no sandbox "
                       "(bubblewrap); your teacher can run it on a machine with the sandbox"), []
    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception as exc:  # noqa: BLE001 - invalid JSON after a hand edit, an unknown format...
        return NotebookRun(status="error", message=f"not executed: the file is not a readable notebook "
                                                   f"({type(exc).__name__}: {str(exc)[:200]})"), []
    notes: list[str] = []
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") == "code":
            cell["source"], cell_notes = neutralise(cell.get("source", ""), index)
            notes += cell_notes
    job = scratch / "job"
    (job / "stubs").mkdir(parents=True, exist_ok=True)
    nb_rel = notebook.relative_to(submission_root) if notebook.is_relative_to(submission_root) else Path(notebook.name)
    nbformat.write(nb, job / "notebook.ipynb")
    write_colab_stub(job / "stubs")
    policy = ctx.policy
    sandboxed = ctx.isolation == "bwrap"
    limits = ctx.limits
    quarter = max(64 * 1024**2, limits.disk_bytes // SHM_SHARE)
    if sandboxed:
        inside = {"content": "/content", "home": "/home/student", "job": "/job", "source": "/submission"}
    else:
        for name in ("content", "home"):
            (scratch / name).mkdir(parents=True, exist_ok=True)
        inside = {"content": str(scratch / "content"), "home": str(scratch / "home"), "job": str(job),
                  "source": str(submission_root)}
    home_in = inside["home"]
    kernel_env = {EXECUTING_ENV: "1", "PYTHONPATH": f"{inside['job']}/stubs", "MPLBACKEND": "Agg",
                  "HOME": home_in, "KERAS_HOME": f"{home_in}/.keras", "IPYTHONDIR": f"{home_in}/.ipython",
                  "JUPYTER_RUNTIME_DIR": f"{home_in}/.runtime", "MPLCONFIGDIR": f"{home_in}/.config/matplotlib",
                  "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    writable = (("/content", limits.disk_bytes), ("/home/student", quarter), ("/tmp", quarter))
    request = NotebookRequest(
        notebook=f"{inside['job']}/notebook.ipynb", workdir=f"{inside['content']}/{nb_rel.parent.as_posix()}".rstrip("/."),
        source_dir=inside["source"], content_dir=inside["content"],
        writable=(*(path for path, _ in writable), "/dev/shm") if sandboxed else (),
        cell_timeout=policy.cell_timeout, timeout=policy.timeout, allow_errors=policy.allow_errors,
        max_output_chars=policy.max_output_chars, max_processes=policy.max_processes, count_processes=sandboxed,
        kernel_env=kernel_env, limits=limits,
    )
    (job / "request.json").write_text(request.model_dump_json())
    env = {**_env(home_in), **kernel_env, "PYTHONPATH": "/grader-lib" if sandboxed else _grader_path()}
    read_end, write_end = os.pipe()
    if sandboxed:
        args = [*bwrap_base(None, env, tmpfs=writable), "--ro-bind", str(submission_root), "/submission",
                "--ro-bind", str(job), "/job"]
        if ctx.keras_cache is not None:
            args += ["--ro-bind", str(ctx.keras_cache), "/home/student/.keras/datasets"]
        if ctx.reference_weights is not None:
            args += ["--ro-bind", str(ctx.reference_weights), "/home/student/.keras/models"]
        args += [*SEAL, "--chdir", "/content"]
        command = [*args, sys.executable, "-s", "-m", "grader.worker.notebook_run", "/job/request.json", "--channel", str(write_end)]
        outer_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        seccomp = seccomp_program(allow_processes=True)
    else:
        (scratch / "home" / ".keras").mkdir(parents=True, exist_ok=True)
        for name, folder in (("datasets", ctx.keras_cache), ("models", ctx.reference_weights)):
            if folder is not None:
                (scratch / "home" / ".keras" / name).symlink_to(folder, target_is_directory=True)
        command = [sys.executable, "-m", "grader.worker.notebook_run", str(job / "request.json"), "--channel", str(write_end)]
        outer_env, seccomp = env, None
    heard = _Heard()
    open_ends = [write_end]

    def close_write_end() -> None:  # once: a second close could close another thread's new file
        while open_ends:
            os.close(open_ends.pop())

    with os.fdopen(read_end, "rb") as stream:
        listener = threading.Thread(target=_listen, args=(stream, scratch / "artifacts", limits, heard), daemon=True)
        listener.start()
        try:
            with cgroups.task_cap(limits.tasks) as cap:
                outcome = run_sandboxed([*cap.prefix(), *command], job, outer_env, scratch / "runner.log",
                                        timeout=policy.timeout + _START_MARGIN, cancel=ctx.cancel, seccomp=seccomp,
                                        pass_fds=(write_end,), after_start=close_write_end)
                too_many = cap.refused() > 0
        finally:
            close_write_end()
            listener.join(timeout=60)
    if not heard.started:
        from grader.errors import GraderFault

        lines = [line for line in log_tail(scratch / "runner.log").splitlines() if line.strip()]
        raise GraderFault("the notebook sandbox did not start" + (f": {lines[-1][:300]}" if lines else ""),
                          hint="run `grade` again; if it fails the same way, report the line above")
    notes += heard.notes
    records, result = heard.records, heard.result
    cells = tuple(CellRun(index=r.index, status=r.status, seconds=r.seconds, outputs=outputs_text(r.outputs),
                          error=r.error) for r in records)
    sources = {i: "".join(c.get("source", "")) for i, c in enumerate(nb.cells)}
    claims = claims_from_cells([(c.index, sources.get(c.index, ""), c.outputs) for c in cells], "executed")
    # from the whole outputs: `CellRun.outputs` keeps only the end of a long training log
    histories = histories_from_cells([(r.index, outputs_text(r.outputs, limit=None)) for r in records], "executed")
    if result is not None:
        status, message, failed = result.status, result.message, result.failed_cell
    else:  # killed from outside (wall time, memory), or the runner died: what it had sent is kept, and it did not complete
        status = {"timeout": "timeout", "out_of_memory": "out_of_memory"}.get(outcome.kind, "killed")
        failed = cells[-1].index + 1 if cells else None
        message = {"timeout": f"the notebook was stopped after {policy.timeout + _START_MARGIN:.0f} s, its time limit",
                   "out_of_memory": "the notebook ran out of memory"}.get(outcome.kind, outcome.message or "the notebook's process was stopped")
    if too_many and status != "completed":
        message += f" (it started more than {limits.tasks} processes or threads at once, the limit for one notebook)"
    failing = next((c for c in cells if c.index == failed and c.error), None)
    if failing is not None and any(mark in failing.error for mark in _NETWORK_MARKS):  # type: ignore[operator]
        message += (". The grader runs notebooks without a network: downloads fail (pretrained weights, data sets other "
                    "than Fashion-MNIST, pip installs). Put the files your notebook needs in your submission folder; "
                    "your teacher can provide the official pretrained weights to the grader")
    artifacts = [Artifact(label=f"{label}→{rel}", real=path, size=size, notebook=label)
                 for rel, path, size in (heard.artifacts if heard.ended else [])]
    run = NotebookRun(
        status=status, message=message, seconds=round(outcome.seconds, 2), cells_run=len(cells), failed_cell=failed,
        cells=cells, neutralised=tuple(notes), artifacts=tuple(a.label.split("→", 1)[1] for a in artifacts), claims=claims,
        histories=histories,
        peak_memory_mb=result.peak_memory_mb if result else None,
        log_tail="" if status == "completed" else _clean_tail(log_tail(scratch / "runner.log")),
    )
    return run, artifacts


def _grader_path() -> str:
    return str(Path(__file__).resolve().parents[2])


def _clean_tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and "WARNING: All log messages" not in line]
    return "\n".join(lines[-15:])[-3000:]

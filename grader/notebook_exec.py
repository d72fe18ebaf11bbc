"""Executing a submitted notebook in the notebook sandbox, from the grader's side.

Per notebook the grader:
1. copies the submission's folder into a private scratch folder (the notebook's files beside it:
   CSVs it reads, a model it loads) and snapshots which model files are there;
2. writes the notebook with its Colab-only lines neutralised (`grader.notebook_run.neutralise`; each
   replaced line is listed in the report), the `google.colab` stand-in, and the request;
3. starts ``python -m grader.notebook_run`` in bubblewrap: new namespaces, no network (loopback only,
   for the kernel's own sockets), read-only system and Python, the copy of the submission at
   ``/content`` (Colab's working folder, writable), a private home whose Keras dataset cache holds
   PUBLIC data only (`grader.datasets.write_keras_cache`), no hidden images and no labels at all;
   a seccomp filter refusing ptrace and cross-process memory access (processes are allowed: the
   kernel is one; the runner counts them); resource limits per process; a wall-time limit;
4. reads back what the runner wrote (size-capped JSON, validated), also when it was killed: the cells
   run before a hang or a crash are kept;
5. collects the model files the notebook wrote (new or changed ``.h5``/``.keras`` files, Drive's
   ``/content/drive/MyDrive`` included): they are evaluated like submitted models, labelled as
   produced by the notebook.

Without bubblewrap a notebook is arbitrary code with the grader's rights, so it is not run unless the
teacher passes ``--allow-unsandboxed-code`` (then it runs in a plain subprocess with the same limits).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from grader.discover import MODEL_SUFFIXES
from grader.evaluate import Limits
from grader.evidence import CellRun, NotebookRun
from grader.notebook_run import EXECUTING_ENV, CellRecord, NotebookRequest, RunnerResult, neutralise, write_colab_stub
from grader.notebooks import claims_from_cells, histories_from_cells, outputs_text
from grader.rubric import NotebookPolicy
from grader.sandbox import Isolation, _env, _system_binds, bwrap_base, log_tail, run_sandboxed, seccomp_program

MAX_COPY_BYTES = 2 * 1024**3  # of a submission's folder copied for its notebook; larger files are left out
MAX_RECORDS_BYTES = 64 * 1024**2  # cells.jsonl as read back
MAX_ARTIFACTS = 10
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


def _copy_tree(src: Path, dest: Path) -> list[str]:
    """Copy a submission's regular files (no symbolic links, nothing over the size budget)."""
    skipped: list[str] = []
    budget = MAX_COPY_BYTES
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


def _model_snapshot(root: Path) -> dict[str, tuple[int, int]]:
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


def _read_records(path: Path) -> list[CellRecord]:
    records: list[CellRecord] = []
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > MAX_RECORDS_BYTES:
            return records
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                records.append(CellRecord.model_validate_json(line))
            except ValueError:
                break  # a torn last line (killed mid-write) or garbage: keep what came before
    except OSError:
        pass
    return records


def _read_result(path: Path) -> RunnerResult | None:
    try:
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 1024**2:
            return RunnerResult.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        pass
    return None


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
    content, home, out, job = (scratch / name for name in ("content", "home", "out", "job"))
    for folder in (home, out, job / "stubs"):
        folder.mkdir(parents=True, exist_ok=True)
    skipped = _copy_tree(submission_root, content)
    if skipped:
        notes.append(f"files too large to copy beside the notebook: {', '.join(skipped[:5])}")
    nb_rel = notebook.relative_to(submission_root) if notebook.is_relative_to(submission_root) else Path(notebook.name)
    before = _model_snapshot(content)
    nbformat.write(nb, job / "notebook.ipynb")
    write_colab_stub(job / "stubs")
    policy = ctx.policy
    sandboxed = ctx.isolation == "bwrap"
    inside = {"content": "/content", "home": "/home/student", "out": "/out", "job": "/job"} if sandboxed else \
        {"content": str(content), "home": str(home), "out": str(out), "job": str(job)}
    home_in = inside["home"]
    kernel_env = {EXECUTING_ENV: "1", "PYTHONPATH": f"{inside['job']}/stubs", "MPLBACKEND": "Agg",
                  "HOME": home_in, "KERAS_HOME": f"{home_in}/.keras", "IPYTHONDIR": f"{home_in}/.ipython",
                  "JUPYTER_RUNTIME_DIR": f"{home_in}/.runtime", "MPLCONFIGDIR": f"{home_in}/.config/matplotlib",
                  "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    request = NotebookRequest(
        notebook=f"{inside['job']}/notebook.ipynb", workdir=f"{inside['content']}/{nb_rel.parent.as_posix()}".rstrip("/."),
        out_dir=inside["out"], cell_timeout=policy.cell_timeout, timeout=policy.timeout, allow_errors=policy.allow_errors,
        max_output_chars=policy.max_output_chars, max_processes=policy.max_processes, count_processes=sandboxed,
        kernel_env=kernel_env, limits=ctx.limits,
    )
    (job / "request.json").write_text(request.model_dump_json())
    env = {**_env(home_in), **kernel_env, "PYTHONPATH": "/grader-lib" if sandboxed else _grader_path()}
    if sandboxed:
        args = [*bwrap_base(None, env), "--tmpfs", "/tmp", "--bind", str(content), "/content", "--bind", str(home), "/home/student",
                "--bind", str(out), "/out", "--ro-bind", str(job), "/job"]
        if ctx.keras_cache is not None:
            args += ["--ro-bind", str(ctx.keras_cache), "/home/student/.keras/datasets"]
        if ctx.reference_weights is not None:
            args += ["--ro-bind", str(ctx.reference_weights), "/home/student/.keras/models"]
        args += ["--chdir", request.workdir]
        command = [*args, sys.executable, "-s", "-m", "grader.notebook_run", "/job/request.json"]
        outer_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        seccomp = seccomp_program(allow_processes=True)
    else:
        (home / ".keras").mkdir(parents=True, exist_ok=True)
        for name, folder in (("datasets", ctx.keras_cache), ("models", ctx.reference_weights)):
            if folder is not None:
                (home / ".keras" / name).symlink_to(folder, target_is_directory=True)
        command = [sys.executable, "-m", "grader.notebook_run", str(job / "request.json")]
        outer_env, seccomp = env, None
    outcome = run_sandboxed(command, job, outer_env, scratch / "runner.log", timeout=policy.timeout + _START_MARGIN,
                            cancel=ctx.cancel, seccomp=seccomp)
    records = _read_records(out / "cells.jsonl")
    result = _read_result(out / "result.json")
    cells = tuple(CellRun(index=r.index, status=r.status, seconds=r.seconds, outputs=outputs_text(r.outputs),
                          error=r.error) for r in records)
    sources = {i: "".join(c.get("source", "")) for i, c in enumerate(nb.cells)}
    claims = claims_from_cells([(c.index, sources.get(c.index, ""), c.outputs) for c in cells], "executed")
    # from the whole outputs: `CellRun.outputs` keeps only the end of a long training log
    histories = histories_from_cells([(r.index, outputs_text(r.outputs, limit=None)) for r in records], "executed")
    if result is not None:
        status, message, failed = result.status, result.message, result.failed_cell
    else:  # killed from outside (wall time, memory) or the runner died: what it had written is kept
        status = {"timeout": "timeout", "out_of_memory": "out_of_memory"}.get(outcome.kind, "killed")
        failed = cells[-1].index + 1 if cells else None
        message = {"timeout": f"the notebook was stopped after {policy.timeout + _START_MARGIN:.0f} s, its time limit",
                   "out_of_memory": "the notebook ran out of memory"}.get(outcome.kind, outcome.message or "the notebook's process was stopped")
    failing = next((c for c in cells if c.index == failed and c.error), None)
    if failing is not None and any(mark in failing.error for mark in _NETWORK_MARKS):  # type: ignore[operator]
        message += (". The grader runs notebooks without a network: downloads fail (pretrained weights, data sets other "
                    "than Fashion-MNIST, pip installs). Put the files your notebook needs in your submission folder; "
                    "your teacher can provide the official pretrained weights to the grader")
    artifacts = _artifacts(content, before, label)
    run = NotebookRun(
        status=status, message=message, seconds=round(outcome.seconds, 2), cells_run=len(cells), failed_cell=failed,
        cells=cells, neutralised=tuple(notes), artifacts=tuple(a.label.split("→", 1)[1] for a in artifacts), claims=claims,
        histories=histories,
        peak_memory_mb=result.peak_memory_mb if result else None,
        log_tail="" if status == "completed" else _clean_tail(log_tail(scratch / "runner.log")),
    )
    return run, artifacts


def _grader_path() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _clean_tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and "WARNING: All log messages" not in line]
    return "\n".join(lines[-15:])[-3000:]


def _artifacts(content: Path, before: dict[str, tuple[int, int]], label: str) -> list[Artifact]:
    """Model files the notebook created or rewrote, largest-first cut at MAX_ARTIFACTS."""
    after = _model_snapshot(content)
    changed = [rel for rel, info in sorted(after.items()) if before.get(rel) != info]
    return [Artifact(label=f"{label}→{rel}", real=content / rel, size=after[rel][0], notebook=label)
            for rel in changed[:MAX_ARTIFACTS]]

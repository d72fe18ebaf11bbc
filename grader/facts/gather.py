"""Gathering the evidence of one submission: files, static architecture, notebooks, Kaggle lists,
and the raw hidden-set outputs of every model that can be evaluated.

The worker process (`grader.sandbox.isolation.run_worker`) sees `PublicInputs` only: hidden images
without labels, in a secret order, and a labelled sample of the PUBLIC train split. This module
holds no label either: `gather_unscored` returns the evidence and every evaluated model's raw
outputs (`grader.records.evidence.Gathered`), and `grader.scoring.scorer.score_gathered` turns them
into metrics where the labels are (the grader's own process, the Ray driver), so that gathering can
run away from them (a Ray worker node, grader.sandbox.executors).
"""

from __future__ import annotations

import base64
import io
import math
import re
import errno
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from grader._version import __version__
from grader.worker.adapt import SCREEN_SIZE, Stats
from grader.sandbox.devices import DeviceSlots
from grader.inputs.discover import SubmissionFile, Submission, extract_models, file_sha256, list_files
from grader.worker.evaluate import MAX_PUBLIC_ERRORS, Limits, WorkerModel, WorkerModelResult, WorkerRequest
from grader.errors import GraderFault
from grader.records.evidence import (
    Gathered,
    MAX_REPORTED_SECONDS,
    AppCall,
    Architecture,
    Evidence,
    KaggleEvidence,
    ModelEvidence,
    NotebookEvidence,
    Preprocessing,
    PublicExample,
    clean_text,
)
from grader.formats.filetype import FileKindError, sniff
from grader.facts.fingerprints import code_fingerprints, weights_fingerprint
from grader.facts.keras_file import InspectError, inspect_model_file
from grader.formats.tflite_file import TFLiteError, inspect_tflite
from grader.facts.kaggle import looks_like_kaggle, read_kaggle
from grader.sandbox.notebook_sandbox import NotebookContext, execute_notebook
from grader.facts.notebooks import matches_globs, read_notebook
from grader.facts.precheck import precheck
from grader.facts.pretrained import decide_pretrained
from grader.sandbox.isolation import Isolation, WorkerOutcome, classify, describe, run_worker

MAX_PREDICTION_BYTES = 512 * 1024**2
MAX_RESULT_BYTES = 1024**2  # a worker's JSON answer for one model
# Part of the evidence cache key: bump it whenever a change here, in the worker or in the inputs
# would give different evidence for the same files, so that cached evidence is not reused across it.
GATHER_FORMAT = "7"  # 2: class-interleaved public sample, screened preprocessing candidates; 3: notebooks executed;
# 4: fingerprints for similarity, public-split mistakes, training histories; 5: .tflite, confidence score;
# 6: the evaluation's device, backend, batch size and peak memory (ModelEvidence.run)
# 7: one content-decided file kind (grader.formats.filetype); TFOpLambda / unknown classes count as code


@dataclass(frozen=True)
class PublicInputs:
    """Everything a worker may read. Built from the hidden IMAGES and the PUBLIC train split."""

    hidden_images: Path
    public_images: Path
    public_labels: Path
    stats: Stats
    dataset: str
    hidden_sha256: str
    hidden_count: int
    public_count: int
    class_names: tuple[str, ...] = ()  # public: the data set's classes, in label order


class WorkerPool(Protocol):
    """Pre-imported sandboxed workers: grader.sandbox.zygote.ZygotePool, or a Ray node's (grader.sandbox.executors.RemoteZygotes)."""

    def run(self, request: WorkerRequest, scratch: Path, *, timeout: float,
            cancel: threading.Event | None = None) -> WorkerOutcome: ...


@dataclass(frozen=True)
class GatherOptions:
    scratch_root: Path | None = None
    device: str = "cpu"
    timeout_per_model: float = 1800.0
    batch_size: int = 256
    reference_weights: Path | None = None  # folder with official application weights (e.g. VGG16 notop)
    cancel: threading.Event | None = None  # set by the caller on Ctrl-C: running workers are killed
    isolation: Isolation = "none"
    limits: Limits = Limits()
    allow_unsandboxed_code: bool = False  # run Lambda/custom layers even without a sandbox (teacher's choice)
    zygotes: WorkerPool | None = None  # pre-imported sandboxed workers; None: a fresh worker per submission
    notebooks: NotebookContext | None = None  # set when the rubric says to execute notebooks
    expects_models: bool = True  # False: the rubric grades no model file (no "no model file" problem then)
    device_slots: DeviceSlots | None = None  # the run's GPUs, one submission at a time per GPU (grader.sandbox.devices)

    @property
    def runs_code(self) -> bool:
        return self.isolation == "bwrap" or self.allow_unsandboxed_code


def _reference_for(arch: Architecture, folder: Path | None) -> Path | None:
    if folder is None or not arch.bases or not folder.is_dir():
        return None
    name = arch.bases[0].name.replace("_", "")
    for candidate in sorted(folder.glob("*.h5")):
        if candidate.name.lower().replace("_", "").startswith(name):
            return candidate
    return None


def _inspect(f: SubmissionFile, calls: tuple[AppCall, ...], options: GatherOptions) -> ModelEvidence:
    sha = file_sha256(f.real)
    try:  # the one decision of what the file is (by content); precheck, inspection and the loader follow it
        kind = sniff(f.real, f.label)
    except FileKindError as exc:
        return ModelEvidence(path=f.label, size_bytes=f.size, sha256=sha, status="error", error=str(exc))
    if kind == "tflite":
        return _inspect_tflite(f, sha)
    refused = precheck(f.real, f.label, kind)  # before inspection too: h5py would follow an external link
    if refused:
        return ModelEvidence(path=f.label, size_bytes=f.size, sha256=sha, status="error", error="; ".join(refused[:3]))
    try:
        arch = inspect_model_file(f.real, kind)
    except InspectError as exc:
        return ModelEvidence(path=f.label, size_bytes=f.size, sha256=sha, status="error", error=str(exc))
    fingerprint = weights_fingerprint(f.real, kind)
    pretrained = decide_pretrained(arch, notebook_calls=calls, reference_weights=_reference_for(arch, options.reference_weights),
                                   model_path=f.real)
    if arch.code_layers and not options.runs_code:
        return ModelEvidence(
            path=f.label, size_bytes=f.size, sha256=sha, status="needs_sandbox", architecture=arch, pretrained=pretrained,
            weights_fingerprint=fingerprint,
            error=f"the model contains layers that carry code ({', '.join(arch.code_layers)}); loading it runs that "
                  "code, and this grading run had no sandbox (bubblewrap), so the model was only inspected, not "
                  "evaluated; your teacher can grade it on a machine with the sandbox",
        )
    return ModelEvidence(path=f.label, size_bytes=f.size, sha256=sha, status="inspected", architecture=arch, pretrained=pretrained,
                         weights_fingerprint=fingerprint)


def _inspect_tflite(f: SubmissionFile, sha: str) -> ModelEvidence:
    """A TensorFlow Lite model, read from its FlatBuffer (no interpreter, no student code)."""
    try:
        info = inspect_tflite(f.real)
    except TFLiteError as exc:
        return ModelEvidence(path=f.label, size_bytes=f.size, sha256=sha, status="error",
                             error=f"not a readable TensorFlow Lite model: {exc}; convert it again with "
                                   "tf.lite.TFLiteConverter and hand in the .tflite file it writes")
    activation = {"SOFTMAX": "softmax", "LOGISTIC": "sigmoid"}.get(info.last_op or "")
    arch = Architecture(format="tflite", model_class="TFLite (Model Maker)" if info.model_maker else "TFLite",
                        input_shape=info.input_shape, output_units=info.output_shape[-1] if info.output_shape else None,
                        output_activation=activation)
    return ModelEvidence(path=f.label, size_bytes=f.size, sha256=sha, status="inspected", architecture=arch, tflite=info,
                         warnings=tuple(info.warnings))


def _evaluate(models: list[tuple[ModelEvidence, SubmissionFile]], inputs: PublicInputs,
              options: GatherOptions, scratch: Path) -> tuple[dict[int, ModelEvidence], dict[int, np.ndarray], list[str]]:
    """Run the worker on the loadable models; a worker that dies costs only the model it was on.
    Returns the models' evidence, the raw outputs of those evaluated, and problems for the submission."""
    done: dict[int, ModelEvidence] = {}
    outputs: dict[int, np.ndarray] = {}
    problems: list[str] = []
    pending = list(range(len(models)))
    attempt = 0
    while pending:
        attempt += 1
        out = scratch / f"run{attempt}"
        out.mkdir(parents=True)
        request = WorkerRequest(
            models=tuple(_worker_model(i, *models[i], inputs.class_names) for i in pending),
            hidden_images=str(inputs.hidden_images), public_images=str(inputs.public_images),
            public_labels=str(inputs.public_labels), stats_mean=inputs.stats.mean, stats_std=inputs.stats.std,
            out_dir=str(out), batch_size=options.batch_size, limits=options.limits,
        )
        timeout = options.timeout_per_model * len(pending)
        if options.zygotes is not None:
            outcome = options.zygotes.run(request, out, timeout=timeout, cancel=options.cancel)
        else:
            outcome = run_worker(request, out, timeout=timeout, device=options.device, isolation=options.isolation,
                                 cancel=options.cancel, slots=options.device_slots)
        finished = []
        for i in pending:
            result = _read_result(out / f"result-{i}.json")
            if isinstance(result, str):  # garbage where the answer should be: that model's error
                done[i] = models[i][0].model_copy(update={"status": "error", "error": result})
                finished.append(i)
            elif result is not None:
                done[i], raw = _with_result(models[i][0], result, out, inputs, options)
                if raw is not None:
                    outputs[i] = raw
                finished.append(i)
        if outcome.kind in ("disk_full", "too_many_tasks"):  # the limit it hit says more than the error it raised
            for i in finished:
                if done[i].status == "error":
                    done[i] = done[i].model_copy(update={"outcome": outcome.kind,
                                                         "error": f"{outcome.message}: {done[i].error}"})
        rest = [i for i in pending if i not in finished]
        if not rest:
            break
        culprit = rest[0]  # the worker goes in order: the first model without an answer is the one it died on
        why = outcome.message or f"the process evaluating this model stopped ({outcome.kind})"
        tail = [line for line in outcome.log_tail.strip().splitlines() if line.strip()][-3:]
        done[culprit] = models[culprit][0].model_copy(update={
            "status": "error", "error": why + (". Last lines of its log: " + " | ".join(tail) if tail else ""),
            "outcome": outcome.kind if outcome.kind != "ok" else "error"})
        problems.append(f"{models[culprit][0].path}: {why}")
        pending = rest[1:]
    return done, outputs, problems


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def label_order(model_labels: tuple[str, ...] | None, class_names: tuple[str, ...]) -> tuple[tuple[int, ...] | None, str | None]:
    """How a model's own labels (a TFLite model's metadata or labels.txt) map to the data set's
    classes: (order, note). `order[j]` is the model's output for class j; None when the model's order
    is the data set's, or when its labels do not name the same classes (then the note says so and the
    outputs are read in order)."""
    if not model_labels:
        return None, None
    ours = [_squash(c) for c in class_names]
    theirs = [_squash(c) for c in model_labels]
    if theirs == ours:
        return None, None
    if sorted(theirs) == sorted(ours) and len(set(ours)) == len(ours):
        order = tuple(theirs.index(c) for c in ours)
        return order, (f"the model's labels list the classes in another order ({', '.join(model_labels)}); "
                       "the grader reordered its outputs to the data set's classes")
    return None, (f"the model's labels ({', '.join(model_labels[:12])}) are not the data set's classes "
                  f"({', '.join(class_names)}); its outputs were read in the data set's order")


def _worker_model(index: int, model: ModelEvidence, f: SubmissionFile, class_names: tuple[str, ...] = ()) -> WorkerModel:
    arch = model.architecture
    order, _ = label_order(model.tflite.labels if model.tflite else None, class_names)
    return WorkerModel(index=index, path=str(f.real), keras_version=arch.keras_version if arch else None,
                       runs_code=bool(arch and arch.code_layers), input_shape=arch.input_shape if arch else None,
                       format=arch.format if arch is not None else None, label_order=order)


def _read_result(path: Path) -> WorkerModelResult | str | None:
    """The worker's answer for one model: None when there is none, a message when it is not valid."""
    try:
        if not path.is_file() or path.is_symlink():
            return None
        if path.stat().st_size > MAX_RESULT_BYTES:
            return "the evaluation's answer was too large to be genuine; the model may interfere with the grader"
        return WorkerModelResult.model_validate_json(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"the evaluation's answer could not be read ({type(exc).__name__}); the model may interfere with the grader"


def _thumbnail(image: np.ndarray) -> str:
    """A base64 PNG of one PUBLIC image, for the student's page (28×28 grayscale: about 500 bytes)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.astype(np.uint8))).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _public_examples(result: WorkerModelResult, inputs: PublicInputs, num_classes: int) -> tuple[PublicExample, ...]:
    """The worker's misclassified public images, checked (the worker is untrusted) and with thumbnails."""
    if not result.public_errors:
        return ()
    try:
        images = np.load(inputs.public_images, mmap_mode="r", allow_pickle=False)
        labels = np.load(inputs.public_labels, allow_pickle=False)
    except (OSError, ValueError):
        return ()
    out = []
    for e in result.public_errors[:MAX_PUBLIC_ERRORS]:
        if not (0 <= e.index < len(labels) and 0 <= e.predicted < num_classes) or int(labels[e.index]) == e.predicted:
            continue
        out.append(PublicExample(index=e.index, label=int(labels[e.index]), predicted=e.predicted,
                                 confidence=min(1.0, max(0.0, e.confidence)), png=_thumbnail(np.asarray(images[e.index]))))
    return tuple(out)


def _given_devices(options: GatherOptions) -> dict[str, str | None]:
    """The devices this run gives its workers, with the grader's own name for each: "cpu" (the
    machine's CPU model) and every GPU of the run ("gpu:N", its driver's model name)."""
    from grader.worker.backends import cpu_name

    given: dict[str, str | None] = {"cpu": cpu_name()}
    kind, _, numbers = options.device.partition(":")
    if kind == "gpu":
        given.update({f"gpu:{n.strip()}": None for n in numbers.split(",") if n.strip().isdigit()})
    for gpu in options.device_slots.gpus if options.device_slots is not None else ():
        given[gpu.device] = gpu.name
    return given


_KEY = re.compile(r"^[a-z0-9_-]{1,32}/[a-z0-9_-]{1,32}$")  # a preprocessing candidate: geometry/scale


def _worker_facts(result: WorkerModelResult, options: GatherOptions) -> WorkerModelResult | str:
    """What the worker says about its own run, checked before anything of it is shown or used: the
    worker runs the submission's code in its process, so each of these may be written by the
    submission. Numbers out of range, a device the grader did not give, or a chosen preprocessing
    that was not among those scored make the answer refused (the message says which); text is capped
    and stripped of control characters; the device's name becomes the grader's own."""
    if not (math.isfinite(result.seconds) and 0 <= result.seconds <= MAX_REPORTED_SECONDS):
        return f"it reported {result.seconds!r} seconds"
    for what, scores in (("candidates", result.candidates), ("screening", result.screening)):
        if len(scores) > 256 or any(not _KEY.match(k) or not (math.isfinite(v) and 0 <= v <= 1) for k, v in scores.items()):
            return f"its {what} are not accuracies of preprocessing candidates"
    shapes = [s for s in (result.input_shape, result.output_shape) if s is not None]
    if any(len(s) > 8 or any(d is not None and not 0 <= d <= 1 << 20 for d in s) for s in shapes):
        return "it reported an impossible input or output shape"
    if result.ok and result.predictions is not None and (result.candidate not in result.candidates or result.input_shape is None):
        return "the preprocessing it chose was not among those it scored"
    run = result.run
    if run is not None:
        given = _given_devices(options)
        if run.device not in given:
            return f"it reported running on {run.device!r}, a device this run did not give it ({', '.join(given)})"
        if run.batch_size > options.batch_size:
            return f"it reported batches of {run.batch_size}, more than the {options.batch_size} it was given"
        if run.seconds > result.seconds + 1.0:
            return "it reported a hidden-set pass longer than its whole evaluation"
        run = run.model_copy(update={"device_name": given[run.device] and clean_text(given[run.device] or "", 120)})
    return result.model_copy(update={
        "run": run,
        "loader": clean_text(result.loader, 200) if result.loader is not None else None,
        "description": clean_text(result.description, 400) if result.description is not None else None,
        "error": clean_text(result.error, 2000, lines=True) if result.error is not None else None,
        "warnings": tuple(clean_text(w, 1000, lines=True) for w in result.warnings[:20]),
    })


def _with_result(model: ModelEvidence, result: WorkerModelResult, out: Path,
                 inputs: PublicInputs, options: GatherOptions | None = None) -> tuple[ModelEvidence, np.ndarray | None]:
    """The worker's answer for one model, checked (the worker is untrusted): the evidence, unscored,
    and the raw outputs when it was evaluated."""
    checked = _worker_facts(result, options or GatherOptions())
    if isinstance(checked, str):
        return model.model_copy(update={
            "status": "error", "outcome": "error",
            "error": f"the evaluation's answer was refused: {checked}; the model may interfere with the grader"}), None
    result = checked
    _, label_note = label_order(model.tflite.labels if model.tflite else None, inputs.class_names)
    update: dict[str, object] = {"seconds": round(result.seconds, 3), "run": result.run,
                                 "warnings": model.warnings + result.warnings + ((label_note,) if label_note else ())}
    if not result.ok or result.predictions is None:
        if result.error and classify(1, result.error) == "out_of_memory":
            return model.model_copy(update={**update, "status": "error", "outcome": "out_of_memory",
                                            "error": f"{describe('out_of_memory', 1, 0)}: {result.error}"}), None
        return model.model_copy(update={**update, "status": "error", "error": f"could not be evaluated: {result.error}"}), None
    path = out / Path(result.predictions).name
    try:
        if path.stat().st_size > MAX_PREDICTION_BYTES:
            raise ValueError("prediction file too large")
        outputs = np.load(path, allow_pickle=False)
        if outputs.dtype.kind != "f":
            raise ValueError(f"predictions have dtype {outputs.dtype}")
        if outputs.ndim != 2 or len(outputs) != inputs.hidden_count:
            raise ValueError(f"predictions have shape {outputs.shape}, expected ({inputs.hidden_count}, classes)")
        outputs = outputs.astype(np.float32, copy=False)
    except (ValueError, OSError) as exc:
        return model.model_copy(update={**update, "status": "error", "loader": result.loader, "error": str(exc)}), None
    assert result.input_shape is not None and result.candidate is not None
    geometry, scale = result.candidate.split("/", 1)
    prep = Preprocessing(scale=scale, geometry=geometry, input_shape=result.input_shape, description=result.description or "",
                         candidates=result.candidates, public_sample_size=inputs.public_count, screening=result.screening,
                         screening_sample_size=SCREEN_SIZE if result.screening else 0)
    return model.model_copy(update={**update, "status": "evaluated", "loader": result.loader,
                                    "preprocessing": prep,
                                    "public_errors": _public_examples(result, inputs, len(inputs.class_names))}), outputs


def _execute_notebooks(submission: Submission, files: list[SubmissionFile], static: list[NotebookEvidence],
                       ctx: NotebookContext, scratch: Path) -> tuple[list[NotebookEvidence], list[tuple[SubmissionFile, str]]]:
    """Run the notebooks the rubric selects; returns the notebooks' evidence with `run` filled in, and
    the model files they wrote (with the notebook that wrote each)."""
    out: list[NotebookEvidence] = []
    produced: list[tuple[SubmissionFile, str]] = []
    by_label = {f.label: f for f in files if f.kind == "notebook"}
    root = Path(submission.root)
    for i, nb in enumerate(static):
        f = by_label.get(nb.path)
        if f is None or not matches_globs(nb.path, ctx.policy.select):
            out.append(nb)
            continue
        nb_root = root if f.real.is_relative_to(root) else f.real.parent  # a notebook from a zip runs beside its members
        run, artifacts = execute_notebook(f.real, f.label, nb_root, scratch / f"{i:02d}", ctx)
        out.append(nb.model_copy(update={"run": run}))
        produced += [(SubmissionFile(a.label, a.real, "model", a.size), a.notebook) for a in artifacts]
    return out, produced


def with_fingerprints(nb: NotebookEvidence) -> NotebookEvidence:
    """The notebook with the fingerprints of its code cells (grader.judging.similarity compares them)."""
    sources = [c.source for c in nb.content if c.cell_type == "code"]
    return nb.model_copy(update={"code_fingerprints": code_fingerprints(sources)}) if sources else nb


def grader_fault_line(exc: BaseException) -> str:
    """One line for the teacher: what failed in the grader or the machine, and the fix. Everything
    that escapes gathering is this: a student's broken file is evidence, never an exception."""
    if isinstance(exc, GraderFault):
        return f"grader fault: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return (f"grader fault: the disk is full ({exc.filename or 'in the scratch folder'}): free space "
                "in the temporary folder ($TMPDIR) and grade again")
    return (f"grader fault: {type(exc).__name__}: {str(exc)[:300]} (run `grade` again with --traceback; if it "
            "happens again, report it)")


def gather_unscored(submission: Submission, inputs: PublicInputs, options: GatherOptions, content_hash: str = "") -> Gathered:
    """All evidence about one submission, without the hidden labels: evaluated models carry raw
    outputs, not metrics (`score_gathered` adds them). Never raises for a bad submission."""
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=f"grader-{submission.student[:20]}-", dir=options.scratch_root))
    errors: list[str] = []
    try:
        files, warnings = list_files(submission)
        errors += warnings
        expanded: list[SubmissionFile] = []
        for f in files:
            if f.kind == "archive":
                members, zip_warnings = extract_models(f, scratch / "unzipped" / f"{len(expanded):03d}")
                expanded += members
                errors += zip_warnings
        every = files + expanded
        notebooks: list[NotebookEvidence] = [with_fingerprints(read_notebook(f.real, f.label)) for f in every if f.kind == "notebook"]
        produced: list[tuple[SubmissionFile, str]] = []
        if options.notebooks is not None and options.notebooks.policy.execute:
            notebooks, produced = _execute_notebooks(submission, every, notebooks, options.notebooks, scratch / "notebooks")
        calls = tuple(c for nb in notebooks for c in nb.app_calls)
        kaggle: KaggleEvidence | None = None
        for f in every:
            if f.kind == "csv" and looks_like_kaggle(f.real):
                kaggle = read_kaggle(f.real, f.label)
                break
        model_files = [f for f in every if f.kind == "model"]
        inspected = [(_inspect(f, calls, options), f) for f in model_files]
        inspected += [(_inspect(f, calls, options).model_copy(update={"produced_by": nb}), f) for f, nb in produced]
        loadable = [(m, f) for m, f in inspected if m.status == "inspected"]
        evaluated, raw, problems = _evaluate(loadable, inputs, options, scratch / "work") if loadable else ({}, {}, [])
        errors += problems
        by_label = {loadable[i][0].path: m for i, m in evaluated.items()}
        outputs = {loadable[i][0].path: a for i, a in raw.items()}
        models = tuple(by_label.get(m.path, m) for m, _ in inspected)
        if not model_files and not produced and options.expects_models:
            errors.append("no model file (.h5, .hdf5, .keras, .tflite, or inside a .zip) in the submission")
        return Gathered(Evidence(
            student=submission.student, status="gathered", files=tuple(f.info() for f in every), models=models,
            notebooks=tuple(notebooks), kaggle=kaggle, errors=tuple(errors), dataset=inputs.dataset,
            content_hash=content_hash, grader_version=__version__, sandboxed=options.isolation == "bwrap",
            seconds=round(time.perf_counter() - start, 3),
        ), outputs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - the grader's fault must not stop the class, nor be the student's
        return Gathered(Evidence(student=submission.student, status="grader_fault",
                                 errors=tuple(errors) + (grader_fault_line(exc),),
                                 dataset=inputs.dataset, content_hash=content_hash, grader_version=__version__,
                                 seconds=round(time.perf_counter() - start, 3)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

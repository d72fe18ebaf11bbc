"""`grade(...)`: rubric + submissions + hidden test set -> Results -> report files.

    rubric ─┐
    submissions/ ─> discover ─> gather (worker per submission) ─> judge ─> Results ─> sinks
    hidden set ───┘ (images to workers, labels to the Scorer)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.sandbox import cgroups
from grader.inputs import datasets
from grader.atomic import write_fault
from grader._version import __version__
from grader.worker.adapt import Stats
from grader.facts.cache import EvidenceCache, cache_key
from grader.sandbox.devices import DeviceSlots, choose_gpus, device_name
from grader.inputs.discover import Submission, content_hash, discover, list_files
from grader.errors import GraderError
from grader.records.evidence import CompetitionEvidence, Evidence
from grader.sandbox.executors import LocalExecutor, RayExecutor, RaySession
from grader.facts.gather import GATHER_FORMAT, GatherOptions, PublicInputs, gather_unscored, with_fingerprints
from grader.scoring.scorer import Scorer, score_gathered
from grader.judging.judge import expects_models, judge
from grader.scoring.competition import MAX_BYTES as MAX_PREDICTION_BYTES
from grader.scoring.competition import CompetitionError, Ledger, deselect, ids_problem, select, submit
from grader.facts.kaggle import looks_like_kaggle
from grader.facts.notebooks import matches_globs, read_notebook
from grader.report import ReportOptions, write_reports
from grader.report.strings import load_strings
from grader.records.results import Results, RunInfo
from grader.inputs.rubric import CompetitionPolicy, Rubric
from grader.inputs.bundle import KEY_ENV, is_bundle, open_bundle
from grader.inputs.runfolder import make_run_folder, sweep_stale
from grader.worker.evaluate import Limits
from grader.sandbox.notebook_sandbox import NotebookContext
from grader.sandbox.isolation import detect_isolation
from grader.sandbox.zygote import ZygotePool
from grader.settings import Settings

Progress = Callable[[str, str, int, int], None]  # (event, student, done, total)


@dataclass(frozen=True)
class GradeOutcome:
    results: Results
    written: list[Path]
    cached: int
    gathered: int


def _device(requested: str) -> str:
    """Where this machine evaluates for --device `requested`: "cpu", "gpu:0", "gpu:0,1" (grader.sandbox.devices)."""
    return device_name(choose_gpus(requested))


def _public_sample(images: np.ndarray, labels: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, class-balanced sample of the PUBLIC train split (same sample on every run), with
    the classes interleaved so that every prefix of it is class-balanced too (screening uses one)."""
    rng = np.random.default_rng(20240601)
    classes = np.unique(labels)
    per_class = max(1, min(size // len(classes), *(int(np.sum(labels == c)) for c in classes)))
    picks = np.stack([rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes], axis=1)
    picks = picks.reshape(-1)  # row i holds the i-th pick of every class
    return images[picks], labels[picks]


@dataclass(frozen=True)
class FoundSplit:
    """Where a split was found (what the pipeline needs of datasets.SplitFiles for any kind of data set)."""

    directory: Path
    source: str
    files: datasets.SplitFiles | None = None  # an IDX split's files


def _image_split(rubric: Rubric, settings: Settings, which: str) -> Path:
    """The folder of an image-folder split (`which`: test or train). Looked for in: --hidden-tests
    (test) or --public-data (train), each either the split's own folder or one holding test/ and
    train/; for train also beside the hidden one; then $GRADER_HIDDEN_TESTS; then hidden_tests/<dataset>/
    (its test/ and train/, or, for the hidden split, the folder itself when it has no test/)."""
    explicit = settings.hidden_tests if which == "test" else settings.public_data
    env = os.environ.get("GRADER_HIDDEN_TESTS")
    bases: list[tuple[Path, bool]] = [(explicit, True)] if explicit is not None else []
    if which == "train" and settings.hidden_tests is not None:
        bases.append((settings.hidden_tests, False))
    # a folder without test/ and train/ in it is the hidden split itself (hidden_tests/<dataset>/<class>/...)
    if env:
        bases.append((Path(env), which == "test"))
    bases.append((settings.project_root / "hidden_tests" / rubric.dataset, which == "test"))
    flag = "--hidden-tests" if which == "test" else "--public-data"
    for base, itself in bases:
        for candidate in (base / which, base / rubric.dataset / which):
            if candidate.is_dir():
                return candidate
        if itself and base.is_dir():
            return base
        if base == explicit:  # asked for by name: not found there is an error, not a reason to look elsewhere
            raise datasets.DatasetError(f"{flag} {explicit}: no such folder of images",
                                        hint=f"give the folder of the {which} images (a folder per class, or a labels.csv)")
    raise datasets.DatasetError(
        f"no {'hidden test' if which == 'test' else 'public train'} images for {rubric.dataset!r}: looked in {flag}, "
        f"$GRADER_HIDDEN_TESTS and {settings.project_root / 'hidden_tests' / rubric.dataset / which}",
        hint=f"put them in hidden_tests/{rubric.dataset}/{which}/ (a folder per class, or a labels.csv), or pass {flag} DIR")


def _prepare_images(rubric: Rubric, settings: Settings, scratch: Path) -> tuple[PublicInputs, Scorer, FoundSplit, FoundSplit]:
    """An image-folder data set: every image decoded and resized to the rubric's size (a broken
    hidden image fails the run: a silent skip would change everybody's score)."""
    from grader.inputs.image_folder import load_image_folder

    policy = rubric.images
    assert policy is not None
    size = (policy.size[0], policy.size[1])
    gray = policy.color == "gray"
    hidden_dir, public_dir = _image_split(rubric, settings, "test"), _image_split(rubric, settings, "train")
    hidden = load_image_folder(hidden_dir, size=size, class_names=policy.classes, grayscale=gray, csv_name=policy.csv)
    names = hidden.info.class_names
    if rubric.competition is not None:  # students see the ids of a competition's test images
        problem = ids_problem(hidden.info.files, hidden.labels.tolist(), names, by_folder=hidden.info.layout == "folders")
        if problem:
            raise datasets.DatasetError(
                f"{hidden_dir}: {problem}",
                hint="put the test images in one folder with a labels.csv (filename,label) whose file names say "
                     "nothing of the class (numbers or random names), and hand out those names")
    public = load_image_folder(public_dir, size=size, class_names=names, grayscale=gray, on_error="skip")
    sample_x, sample_y = _public_sample(public.images, public.labels, settings.public_sample)
    scaled = public.images.astype(np.float32) / 255.0
    inputs, order = _write_inputs(rubric, scratch, hidden.images, sample_x, sample_y,
                                  Stats(mean=float(scaled.mean()), std=float(scaled.std())), hidden.info.sha256, tuple(names))
    scorer = Scorer(labels=hidden.labels.astype(np.int64), class_names=tuple(names), ids=tuple(hidden.info.files), order=order)
    return inputs, scorer, FoundSplit(hidden_dir, "image folder"), FoundSplit(public_dir, "image folder")


def _secret_order(n: int) -> np.ndarray:
    """A permutation of range(n) from the operating system's randomness, new for every run. Workers get
    the hidden images in this order, so that a row's index says nothing about its label (an image
    folder is in class order; a public split's order is public); only the Scorer holds it."""
    return np.random.default_rng(secrets.randbits(128)).permutation(n)


def _write_inputs(rubric: Rubric, scratch: Path, hidden_x: np.ndarray, sample_x: np.ndarray, sample_y: np.ndarray,
                  stats: Stats, sha256: str, class_names: tuple[str, ...]) -> tuple[PublicInputs, np.ndarray]:
    """What workers may read, written to `scratch`; and the secret order of the hidden images in it
    (for the Scorer only: it is written nowhere)."""
    scratch.mkdir(parents=True, exist_ok=True)
    paths = {name: scratch / f"{name}.npy" for name in ("hidden_images", "public_images", "public_labels")}
    order = _secret_order(len(hidden_x))
    np.save(paths["hidden_images"], hidden_x[order], allow_pickle=False)
    np.save(paths["public_images"], sample_x, allow_pickle=False)
    np.save(paths["public_labels"], sample_y, allow_pickle=False)
    return PublicInputs(
        hidden_images=paths["hidden_images"], public_images=paths["public_images"], public_labels=paths["public_labels"],
        stats=stats, dataset=rubric.dataset, hidden_sha256=sha256, hidden_count=len(hidden_x), public_count=len(sample_x),
        class_names=tuple(class_names),
    ), order


def prepare_inputs(rubric: Rubric, settings: Settings, scratch: Path) -> tuple[PublicInputs, Scorer, FoundSplit, FoundSplit]:
    """Resolve and load the hidden split and the public split; write what workers may read.
    Returns the inputs, the scorer, and where the hidden and the public split were found."""
    if rubric.images is not None:
        return _prepare_images(rubric, settings, scratch)
    spec = datasets.get_dataset(rubric.dataset)
    common = dict(env=os.environ, project_root=settings.project_root, download=settings.download,
                  verify=settings.verify_checksums)
    hidden_files = datasets.resolve_split(spec, "test", explicit_dir=settings.hidden_tests, **common)
    public_files = datasets.resolve_split(spec, "train", explicit_dir=_public_dir(spec, settings), **common)
    hidden_x, hidden_y = datasets.load_split(hidden_files)
    public_x, public_y = datasets.load_split(public_files)
    sample_x, sample_y = _public_sample(public_x, public_y, settings.public_sample)
    scaled = public_x.astype(np.float32) / 255.0
    stats = Stats(mean=float(scaled.mean()), std=float(scaled.std()))
    inputs, order = _write_inputs(rubric, scratch, hidden_x, sample_x, sample_y, stats, hidden_files.sha256, tuple(spec.class_names))
    return (inputs, Scorer(labels=hidden_y, class_names=tuple(spec.class_names), order=order),
            FoundSplit(hidden_files.directory, hidden_files.source, hidden_files),
            FoundSplit(public_files.directory, public_files.source, public_files))


def _public_dir(spec: datasets.DatasetSpec, settings: Settings) -> Path | None:
    """--public-data, else the hidden-tests folder when it also holds the train files, else the usual search."""
    if settings.public_data is not None:
        return settings.public_data
    if settings.hidden_tests is not None:
        for folder in (settings.hidden_tests, settings.hidden_tests / spec.name):
            if (folder / spec.train.images).is_file() and (folder / spec.train.labels).is_file():
                return folder
    return None


def _assignment_text(rubric: Rubric, settings: Settings) -> str:
    for folder in (Path(rubric.path).resolve().parent.parent, settings.project_root):
        readme = folder / "assignments" / rubric.assignment / "README.md"
        if readme.is_file():
            return readme.read_text(encoding="utf-8")[:20000]
    return ""


def _check_writable(out: Path) -> None:
    probe = out / ".grader-write-test"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("ok")
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the machine's problem, not a usage error: exit 1
            raise write_fault(exc, out, "the reports") from None
        raise GraderError(f"cannot write reports to {out}: {exc.strerror or exc}", hint="pass --out DIR with a folder you can write") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


def grade(path: str | Path, rubric: Rubric, settings: Settings, progress: Progress | None = None) -> GradeOutcome:
    """Grade every submission under `path` with `rubric`; write the reports; return the results."""
    started = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    t0 = time.perf_counter()
    out = settings.out or Path("reports") / rubric.assignment
    _check_writable(out)
    report = ReportOptions(strings=load_strings(settings.report_strings))
    submissions = discover(path, list(settings.only) or None, single=settings.single)
    if not submissions:
        raise GraderError(f"{path}: no submissions found", hint="the folder should hold one sub-folder per student")
    ray_session = RaySession.start(settings) if settings.executor == "ray" else None
    device = ray_session.device(settings.device) if ray_session is not None else _device(settings.device)
    sweep_stale()  # run folders of runs that died (kill -9, power cut): they may hold decrypted hidden files
    run_folder = make_run_folder()  # removed at the end, or by its guardian if this process dies
    scratch = run_folder.path
    in_memory = contextlib.ExitStack()  # a bundle's label files, kept in memory only (grader.inputs.bundle)
    zygotes: ZygotePool | None = None
    bundle_note = ""
    notify = progress or (lambda *args: None)
    try:
        if settings.hidden_tests is not None and settings.hidden_tests.is_file() and is_bundle(settings.hidden_tests):
            # decrypted into this run's private scratch (its labels into memory): never bound into a sandbox
            opened = open_bundle(settings.hidden_tests, os.environ.get(KEY_ENV), scratch / "hidden", memory=in_memory)
            bundle_note = f"encrypted bundle {settings.hidden_tests.name}"
            settings = settings.model_copy(update={"hidden_tests": opened})
        inputs, scorer, hidden_files, public_files = prepare_inputs(rubric, settings, scratch / "inputs")
        cache = EvidenceCache(out / ".evidence" if settings.cache else None)
        cancel = threading.Event()
        isolation = detect_isolation(settings.sandbox)
        # The run's GPUs, each given to `gpu_share` evaluations at a time (a sandbox gets its GPU's device
        # nodes, grader.sandbox.devices); with Ray, each node's own (grader.sandbox.executors).
        slots = DeviceSlots.for_device(device, per_gpu=settings.gpu_share) if ray_session is None else DeviceSlots()
        # No address-space limit on a GPU: the CUDA driver maps the device's memory into the process's
        # address space, and any RLIMIT_AS a model could live with makes it fail with MemoryError. The
        # GPU's memory is capped instead, per submission.
        limits = Limits(memory_bytes=None if device != "cpu" else int(settings.memory_limit_gb * 1024**3),
                        cpu_seconds=int(settings.timeout_per_model * (os.cpu_count() or 1)) + 60,
                        gpu_memory_fraction=settings.gpu_fraction() if device != "cpu" else None,
                        disk_bytes=int((settings.disk_limit_gb or rubric.sandbox.disk_gb) * 1024**3),
                        tasks=settings.max_tasks or rubric.sandbox.max_tasks)
        zygotes = (ZygotePool(inputs.hidden_images.parent, scratch / "slots", device, slots)
                   if isolation.kind == "bwrap" and settings.zygote and ray_session is None else None)
        notebooks = None
        if rubric.notebooks.execute:
            assert public_files.files is not None  # the rubric refuses notebooks.execute with an image folder
            keras_cache = datasets.write_keras_cache(datasets.get_dataset(rubric.dataset), public_files.files, scratch / "keras-datasets")
            notebooks = NotebookContext(policy=rubric.notebooks, isolation=isolation.kind, keras_cache=keras_cache,
                                        reference_weights=_reference_dir(settings, hidden_files.directory),
                                        limits=limits, allow_unsandboxed_code=settings.allow_unsandboxed_code, cancel=cancel)
        options = GatherOptions(cancel=cancel, notebooks=notebooks, scratch_root=scratch, device=device, timeout_per_model=settings.timeout_per_model,
                                isolation=isolation.kind, limits=limits, allow_unsandboxed_code=settings.allow_unsandboxed_code,
                                zygotes=zygotes, expects_models=expects_models(rubric),
                                batch_size=settings.batch_size, device_slots=slots,
                                reference_weights=_reference_dir(settings, hidden_files.directory))
        settings_key = (f"{inputs.hidden_sha256}|{settings.public_sample}|{rubric.dataset}|{__version__}|{GATHER_FORMAT}|"
                        f"{options.runs_code}|{settings.memory_limit_gb}|{limits.disk_bytes}|{limits.tasks}|{os.environ.get('KERAS_BACKEND', 'tensorflow')}|{device.split(':')[0]}|"
                        f"{rubric.notebooks.model_dump_json() if rubric.notebooks.execute else 'static'}|"
                        f"{rubric.images.model_dump_json() if rubric.images else 'idx'}|{options.expects_models}")
        evidences: list[Evidence] = []
        counts = {"cached": 0, "gathered": 0}
        keys: dict[str, str] = {}
        todo: list[tuple[Submission, str]] = []
        for sub, digest in _content_hashes(submissions, settings.jobs):
            keys[sub.student] = cache_key(digest, settings_key)
            hit = cache.get(sub.student, keys[sub.student])
            if hit is None:
                todo.append((sub, digest))
                continue
            evidences.append(hit)
            counts["cached"] += 1
            notify("done", sub.student, len(evidences), len(submissions))
        if ray_session is not None:
            executor: LocalExecutor | RayExecutor = ray_session.executor(
                inputs, device, isolation.kind, options, rubric.notebooks if rubric.notebooks.execute else None,
                zygote=settings.zygote)
        else:
            executor = LocalExecutor(settings.jobs, lambda sub, digest: gather_unscored(sub, inputs, options, content_hash=digest), cancel)
        # each submission is scored here (the hidden labels never leave this process) and cached as
        # soon as it is done: a crash or Ctrl-C loses only the submissions still running
        for done in executor.run(todo, lambda sub: notify("start", sub.student, len(evidences), len(submissions))):
            evidence = score_gathered(done.gathered, scorer)
            # a submission the cluster lost, or one the grader itself failed on, is tried again by the next run
            if not done.lost and evidence.status != "grader_fault":
                cache.put(done.submission.student, keys[done.submission.student], evidence)
                counts["gathered"] += 1
            evidences.append(evidence)
            notify("done", done.submission.student, len(evidences), len(submissions))
        run = RunInfo(
            grader_version=__version__, started=started, rubric_path=rubric.path, dataset=rubric.dataset,
            hidden_source=bundle_note or f"{hidden_files.source}: {hidden_files.directory}", hidden_sha256=inputs.hidden_sha256,
            hidden_size=inputs.hidden_count, device=device, sandboxed=isolation.kind == "bwrap",
            sandbox_note=isolation.note + (f"; {cgroups.status_note()}" if isolation.kind == "bwrap" else ""),
            seconds=round(time.perf_counter() - t0, 2),
        )
        if rubric.competition is not None:
            evidences = _competition(rubric, submissions, evidences, scorer, settings.ledger or out / "competition-ledger.jsonl",
                                     _dt.datetime.fromisoformat(started))
        results = judge(rubric, evidences, run=run, assignment_text=_assignment_text(rubric, settings),
                        starter_fingerprints=_starter_fingerprints(rubric, settings))
        written = write_reports(results, out, settings.formats, report)
        return GradeOutcome(results=results, written=written, cached=counts["cached"], gathered=counts["gathered"])
    finally:
        if zygotes is not None:
            zygotes.close()
        if ray_session is not None:
            ray_session.close()
        run_folder.close()
        in_memory.close()


def _content_hashes(submissions: list[Submission], jobs: int) -> list[tuple[Submission, str]]:
    """Each submission with the sha256 of its files (its identity for the evidence cache), hashed in
    `jobs` threads (hashlib lets go of the GIL)."""
    def one(sub: Submission) -> tuple[Submission, str]:
        files, _ = list_files(sub)
        return sub, content_hash(files)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, submissions))


def _competition(rubric: Rubric, submissions: list[Submission], evidences: list[Evidence], scorer: Scorer,
                 ledger_path: Path, now: _dt.datetime) -> list[Evidence]:
    """Hand every prediction file of every submission to the competition's ledger (the same file
    twice counts once; limits and the deadline are the ledger's), then give each student's evidence
    their records. Runs in the grader's process: it needs the hidden labels."""
    policy = rubric.competition
    assert policy is not None
    try:
        ledger = Ledger(ledger_path)
        ids = scorer.image_ids()
        labels_by_id = dict(zip(ids, (int(v) for v in scorer.labels)))
        found: dict[str, list[str]] = {}
        notes: dict[str, list[str]] = {}
        for sub in submissions:
            files, _ = list_files(sub)
            for f in files:
                if f.kind != "csv" or not matches_globs(f.label, policy.files) or looks_like_kaggle(f.real):
                    continue
                with open(f.real, "rb") as fh:
                    content = fh.read(MAX_PREDICTION_BYTES + 1)  # read_predictions says when it is too large
                submit(ledger, policy, sub.student, f.label, content, now, ids, labels_by_id, scorer.class_names)
                found.setdefault(sub.student, []).append(f.label)
            selection = next((f for f in files if f.label.rsplit("/", 1)[-1] == policy.selection_file), None)
            if selection is not None:
                notes[sub.student] = _apply_selection(ledger, policy, sub.student, selection.real, now)
        records = ledger.records()
    except (OSError, CompetitionError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):  # the machine's problem: exit 1
            raise write_fault(exc, ledger_path.parent, "the competition ledger") from None
        raise GraderError(f"competition ledger {ledger_path}: {exc}",
                          hint="the ledger keeps every submission and its limits: restore it, or pass --ledger FILE") from None
    return [e.model_copy(update={"competition": CompetitionEvidence(
        records=tuple(r for r in records if r.student == e.student), files=tuple(found.get(e.student, ())),
        notes=tuple(notes.get(e.student, ())))}) for e in evidences]


def _apply_selection(ledger: Ledger, policy: CompetitionPolicy, student: str, path: Path, now: _dt.datetime) -> list[str]:
    """Make the ledger's selection what the student's selection file says (file names, one a line):
    listed scored files are selected (their latest version), others deselected. Returns notes."""
    try:
        wanted = [line.strip() for line in path.read_text(encoding="utf-8-sig", errors="replace")[:10_000].splitlines()
                  if line.strip() and not line.lstrip().startswith("#")]
    except OSError as exc:
        return [f"{policy.selection_file} could not be read: {exc}"]
    scored = [r for r in ledger.records() if r.student == student and r.status == "scored"]
    latest = {}
    for r in sorted(scored, key=lambda r: r.submitted_at):
        latest[r.file_name.rsplit("/", 1)[-1]] = r
    chosen = {latest[n].sha256 for n in wanted if n in latest}
    notes = [f"{policy.selection_file} names {n}, which is not a scored prediction file" for n in wanted if n not in latest]
    try:
        for r in scored:
            if r.selected and r.sha256 not in chosen:
                deselect(ledger, policy, student, r.sha256, now)
        for sha in sorted(chosen):
            select(ledger, policy, student, sha, now)
    except CompetitionError as exc:
        notes.append(f"the selection in {policy.selection_file} was not applied: {exc}")
    return notes


def _starter_fingerprints(rubric: Rubric, settings: Settings) -> frozenset[int]:
    """Code the teacher handed out (notebooks in assignments/<id>/): shared by everyone, so never
    evidence of copying. Removed from the notebook similarity comparison."""
    folder = settings.project_root / "assignments" / rubric.assignment
    found: set[int] = set()
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        found.update(with_fingerprints(read_notebook(path, path.name)).code_fingerprints)
    return frozenset(found)


def _reference_dir(settings: Settings, hidden_dir: Path) -> Path | None:
    for candidate in (hidden_dir.parent / "reference-weights", settings.project_root / "hidden_tests" / "reference-weights"):
        if candidate.is_dir():
            return candidate
    return None

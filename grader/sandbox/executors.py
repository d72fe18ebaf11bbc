"""Where submissions are gathered: threads on this machine (`local`), or tasks on a Ray cluster (`ray`).

Either way the executor runs `grader.facts.gather.gather_unscored` (no hidden label is needed there) and
yields each submission's `Gathered` as soon as it is done; the pipeline scores it with the hidden
labels in its own process and writes it to the evidence cache at once, so a crash or Ctrl-C loses
only the submissions still running, and a re-run resumes from the cache.

Ray (`RayExecutor`, docs/cluster.md):
- one task per submission, asking for one CPU (two when its notebooks are executed) and one GPU when
  models are evaluated on GPUs; Ray retries a task whose worker or node was lost (`max_retries`);
- the task runs the same sandbox on the node that runs it; the hidden labels never leave the driver
  (only `PublicInputs` do: unlabelled hidden images and a labelled sample of the PUBLIC split);
- what every task reads (the public inputs, the public data for notebooks, the reference weights) is
  put in Ray's object store once and unpacked once per node (`NodeFolder`), not sent per submission;
- a submission's files are packed by the driver (only the files `list_files` returns) and unpacked
  in the task's scratch, so the nodes need no shared file system;
- on the CPU, each node has one `NodeZygotes` actor for the run (created by the driver, so it dies
  with it), which keeps pre-imported sandboxed workers (grader.sandbox.zygote): a task forks its evaluation
  from one instead of importing TensorFlow again (about 8 s per submission on the CI machine).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import io
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader._version import __version__
from grader.sandbox.devices import DeviceSlots
from grader.inputs.discover import Submission, list_files
from grader.errors import GraderError
from grader.worker.evaluate import Limits, WorkerRequest
from grader.records.evidence import Evidence
from grader.facts.gather import GatherOptions, PublicInputs, gather_unscored
from grader.records.evidence import Gathered
from grader.inputs.rubric import NotebookPolicy
from grader.sandbox.isolation import Isolation, WorkerOutcome, bwrap_problem, run_worker
from grader.settings import Settings

Work = Callable[[Submission, str], Gathered]  # (submission, content hash) -> its evidence, unscored


@dataclass(frozen=True)
class Done:
    """One finished submission. `lost`: the executor could not run it (a lost node, after its
    retries): the evidence then says so and must not be cached, so that a re-run tries again."""

    submission: Submission
    gathered: Gathered
    where: str  # "local", "ray (node 10.0.0.5)"
    lost: bool = False


def stamped(gathered: Gathered, where: str) -> Gathered:
    """The evidence says where it was gathered."""
    return Gathered(gathered.evidence.model_copy(update={"executor": where}), gathered.outputs)


class LocalExecutor:
    """`--jobs` submissions at once in threads of this process (each gathers in its own sandboxed workers)."""

    name = "local"

    def __init__(self, jobs: int, work: Work, cancel: threading.Event) -> None:
        self.jobs, self.work, self.cancel = jobs, work, cancel

    def run(self, todo: list[tuple[Submission, str]], started: Callable[[Submission], None]) -> Iterator[Done]:
        def one(sub: Submission, digest: str) -> Gathered:
            started(sub)
            return self.work(sub, digest)

        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            futures: dict[Future[Gathered], Submission] = {pool.submit(one, s, d): s for s, d in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield Done(futures[future], stamped(future.result(), "local"), "local")
        except BaseException:
            self.cancel.set()  # running workers are killed; finished evidence is already in the cache
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)


# ------------------------------------------------------------------------------------------------
# Folders every task reads, once per node


@dataclass(frozen=True)
class NodeFolder:
    """A folder of the driver's, in Ray's object store as one tar. `ref` is a one-item list so that
    Ray hands the task the reference, not the bytes: the task fetches them only when its node does
    not have the folder yet."""

    sha256: str
    ref: list[Any]
    name: str  # for messages: "inputs", "keras-datasets", "reference-weights"


def pack_files(files: list[tuple[str, Path]]) -> bytes:
    """An uncompressed tar of (name in the tar, file) pairs: regular files only, in the given order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in files:
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            with open(path, "rb") as fh:
                tar.addfile(info, fh)
    return buffer.getvalue()


def pack_folder(folder: Path) -> bytes:
    return pack_files([(p.relative_to(folder).as_posix(), p) for p in sorted(folder.rglob("*"))
                       if p.is_file() and not p.is_symlink()])


def unpack(data: bytes, dest: Path) -> None:
    """Unpack one of our own tars (the `data` filter refuses absolute names, `..` and links anyway)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        tar.extractall(dest, filter="data")


def node_root() -> Path:
    """Where a node keeps the folders it has unpacked (private to this user)."""
    root = Path(tempfile.gettempdir()) / f"grader-node-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


STALE_SECONDS = 24 * 3600  # a node forgets a folder no task has used for a day


def _remove_stale(root: Path, keep: str, now: float | None = None) -> None:
    """Forget folders (a past run's hidden images, say) that no task has used for STALE_SECONDS.
    A folder in use is touched by every task that uses it, so it is never stale while a run goes on."""
    now = time.time() if now is None else now
    for task in root.glob("grader-task-*"):  # left by a task whose worker was killed
        try:
            if now - task.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(task, ignore_errors=True)
        except OSError:
            continue
    for marker in root.glob("*/.complete"):
        folder = marker.parent
        try:
            if folder.name != keep and now - marker.stat().st_mtime > STALE_SECONDS:
                marker.unlink()
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def materialize(folder: NodeFolder, fetch: Callable[[Any], bytes], root: Path) -> Path:
    """The folder on this node: unpacked by the first task that needs it (others wait on a lock),
    reused by every later task. Returns its path."""
    target = root / folder.sha256
    done = target / ".complete"
    if done.exists():
        done.touch()  # in use: not stale
        return target
    with open(root / f"{folder.sha256}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return target
        _remove_stale(root, keep=folder.sha256)
        partial = root / f"{folder.sha256}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        data = fetch(folder.ref[0])
        if hashlib.sha256(data).hexdigest() != folder.sha256:
            raise RuntimeError(f"the {folder.name} folder arrived damaged on {socket.gethostname()}")
        unpack(data, partial)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
        done.write_text("ok")
    return target


# ------------------------------------------------------------------------------------------------
# The task that runs on a node


@dataclass(frozen=True)
class NodeOptions:
    """What a task needs to rebuild `GatherOptions` on its node (picklable: no events, no pools)."""

    inputs: PublicInputs  # as on the driver; its paths are replaced by the node's copy
    inputs_folder: NodeFolder
    device: str
    isolation: Isolation
    limits: Limits
    timeout_per_model: float
    batch_size: int
    allow_unsandboxed_code: bool
    expects_models: bool
    notebook_policy: NotebookPolicy | None = None  # set when the rubric executes notebooks
    keras_cache: NodeFolder | None = None
    reference_weights: NodeFolder | None = None
    zygotes: str | None = None  # name prefix of the run's NodeZygotes actors (None: a fresh sandbox per submission)
    grader_version: str = __version__


def _node_inputs(inputs: PublicInputs, folder: Path) -> PublicInputs:
    return dataclasses.replace(inputs, hidden_images=folder / inputs.hidden_images.name,
                               public_images=folder / inputs.public_images.name,
                               public_labels=folder / inputs.public_labels.name)


def gather_on_node(student: str, files: bytes, warnings: tuple[str, ...], digest: str,
                   opts: NodeOptions) -> tuple[str, dict[str, Any], str]:
    """Gather one submission on this node: unpack it, gather it in the sandbox, return
    (evidence as JSON, raw outputs by model path, where it ran). Runs in a Ray worker process."""
    import ray

    from grader.sandbox.notebook_sandbox import NotebookContext

    if opts.grader_version != __version__:
        raise RuntimeError(f"grader {__version__} is installed on {socket.gethostname()}, the driver runs "
                           f"{opts.grader_version}: install the same version on every node")
    if opts.isolation == "bwrap" and (problem := bwrap_problem()) is not None:
        raise RuntimeError(f"the sandbox does not work on node {socket.gethostname()}: {problem}; install bubblewrap "
                           "on every node (docs/cluster.md)")
    root = node_root()
    fetch = ray.get
    inputs = _node_inputs(opts.inputs, materialize(opts.inputs_folder, fetch, root))
    keras_cache = materialize(opts.keras_cache, fetch, root) if opts.keras_cache else None
    reference = materialize(opts.reference_weights, fetch, root) if opts.reference_weights else None
    device = opts.device
    ids = [int(i) for i in ray.get_gpu_ids()]
    if device.startswith("gpu") and ids:
        device = f"gpu:{ids[0]}"  # the GPU Ray gave this task
    if device.startswith("gpu"):  # a node that declares a GPU it cannot open: the node's fault, not the submission's
        try:
            DeviceSlots.for_device(device)
        except GraderError as exc:
            raise RuntimeError(f"node {socket.gethostname()} was given {device} but cannot use it: {exc}") from None
    scratch = Path(tempfile.mkdtemp(prefix=f"grader-task-{student[:20]}-", dir=root))
    try:
        sub_root = scratch / "submission"
        unpack(files, sub_root)
        notebooks = (NotebookContext(policy=opts.notebook_policy, isolation=opts.isolation, keras_cache=keras_cache,
                                     reference_weights=reference, limits=opts.limits,
                                     allow_unsandboxed_code=opts.allow_unsandboxed_code)
                     if opts.notebook_policy is not None else None)
        options = GatherOptions(scratch_root=scratch, device=device, timeout_per_model=opts.timeout_per_model,
                                batch_size=opts.batch_size, reference_weights=reference, isolation=opts.isolation,
                                limits=opts.limits, allow_unsandboxed_code=opts.allow_unsandboxed_code,
                                notebooks=notebooks, expects_models=opts.expects_models,
                                zygotes=RemoteZygotes.on_this_node(opts.zygotes) if opts.zygotes else None)
        gathered = gather_unscored(Submission(student=student, root=str(sub_root)), inputs, options, content_hash=digest)
        where = f"ray (node {ray.util.get_node_ip_address()})"
        evidence = gathered.evidence
        if warnings:  # what list_files said on the driver (symbolic links skipped, ...)
            evidence = evidence.model_copy(update={"errors": tuple(warnings) + evidence.errors})
        return evidence.model_dump_json(), dict(gathered.outputs), where
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class NodeZygotes:
    """A Ray actor: one node's pre-imported sandboxed workers for one run (a grader.sandbox.zygote.ZygotePool
    on the CPU), shared by the tasks on that node. It asks for no CPU of its own: the tasks that use
    it hold theirs while they wait for it."""

    def __init__(self, inputs_folder: NodeFolder, run_id: str, cpus: int) -> None:
        self.inputs_folder, self.run_id = inputs_folder, run_id
        self._pool: Any = None
        self._lock = threading.Lock()
        # At most one evaluation per CPU of the node. Ray hands a task's CPU back while the task waits
        # in ray.get (here: for this actor), and starts more tasks on the node than it has CPUs;
        # without this bound each would fork a zygote of its own and they would all share the cores.
        self._running = threading.BoundedSemaphore(max(1, cpus))

    def _get(self) -> Any:
        import ray

        from grader.sandbox.zygote import ZygotePool

        with self._lock:
            if self._pool is None:
                root = node_root()
                inputs = materialize(self.inputs_folder, ray.get, root)
                self._pool = ZygotePool(inputs, root / f"zygotes-{self.run_id}", "cpu")
            return self._pool

    def run(self, request_json: str, scratch: str, timeout: float) -> str:
        with self._running:  # the wait for a free CPU does not count towards `timeout`
            outcome = self._get().run(WorkerRequest.model_validate_json(request_json), Path(scratch), timeout=timeout)
        return str(outcome.model_dump_json())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            shutil.rmtree(node_root() / f"zygotes-{self.run_id}", ignore_errors=True)


class RemoteZygotes:
    """The task's side of its node's NodeZygotes (a grader.facts.gather.WorkerPool). If the actor is gone,
    the evaluation runs in a fresh sandbox instead: slower, never lost."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    @classmethod
    def on_this_node(cls, prefix: str) -> RemoteZygotes | None:
        import ray

        try:
            return cls(ray.get_actor(f"{prefix}-{ray.get_runtime_context().get_node_id()}"))
        except ValueError:  # a node that joined after the run started has none
            return None

    def run(self, request: WorkerRequest, scratch: Path, *, timeout: float,
            cancel: threading.Event | None = None) -> WorkerOutcome:
        import ray

        try:
            answer = ray.get(self.actor.run.remote(request.model_dump_json(), str(scratch), timeout))
            return WorkerOutcome.model_validate_json(answer)
        except ray.exceptions.RayError:
            return run_worker(request, scratch, timeout=timeout, device="cpu", isolation="bwrap", cancel=cancel)


# ------------------------------------------------------------------------------------------------
# The driver's side


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GraderError("--executor ray: Ray is not installed", hint="pip install 'grader[cluster]' (or pip install ray)") from None
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a cluster address nothing answers at (Ray itself keeps retrying for minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise GraderError(f"--ray-address {address}: not auto or HOST:PORT", hint="e.g. --ray-address 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise GraderError(f"--ray-address {address}: cannot connect to a Ray cluster: {exc.strerror or exc}",
                          hint="start one with `ray start --head` (docs/cluster.md), or pass its HOST:PORT") from None


def connect(address: str | None, num_cpus: int | None = None) -> tuple[Any, bool]:
    """Ray, initialised: an existing connection is reused; `address` None starts a Ray on this machine,
    "auto" or HOST:PORT joins a running cluster. Returns (ray, whether this call started it)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    if address not in (None, "auto"):
        _probe(address)
    try:
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": False}
        if address is None:
            kwargs["num_cpus"] = num_cpus
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise GraderError(f"--ray-address {address}: cannot connect to a Ray cluster: {' '.join(str(exc).split())[:300]}",
                          hint="start one with `ray start --head` (docs/cluster.md), or pass its HOST:PORT") from None
    return ray, True


def cluster_gpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("GPU", 0.0))


def largest_node_cpus(ray: Any) -> float:
    alive = [n for n in ray.nodes() if n.get("Alive")]
    return max((float(n.get("Resources", {}).get("CPU", 0.0)) for n in alive), default=0.0)


def _lost(sub: Submission, digest: str, exc: BaseException, version: str = __version__) -> Gathered:
    text = " ".join(str(exc).split())[:500]
    return Gathered(Evidence(student=sub.student, status="failed", content_hash=digest, grader_version=version,
                             errors=(f"the cluster could not grade this submission ({type(exc).__name__}: {text}); "
                                     "grade it again: the others are kept",)))


class RayExecutor:
    """One Ray task per submission; results are yielded as they finish. At most `in_flight` tasks are
    submitted at once, so that the driver never holds every submission's files in memory."""

    name = "ray"

    def __init__(self, ray: Any, opts: NodeOptions, *, num_gpus: float = 0.0, notebook_cpus: float = 2.0,
                 max_retries: int = 2, in_flight: int | None = None) -> None:
        self.ray, self.opts = ray, opts
        self.num_gpus = num_gpus
        cpus = largest_node_cpus(ray) or 1.0
        self.cpus = min(notebook_cpus, cpus) if opts.notebook_policy is not None else 1.0
        self.max_retries = max_retries
        total = float(ray.cluster_resources().get("CPU", 1.0))
        self.in_flight = in_flight or max(2, int(2 * total))
        self._task = ray.remote(gather_on_node)
        self._opts = ray.put(opts)  # once, not with every task

    def run(self, todo: list[tuple[Submission, str]], started: Callable[[Submission], None]) -> Iterator[Done]:
        ray = self.ray
        queue = list(todo)
        running: dict[Any, tuple[Submission, str]] = {}
        task = self._task.options(num_cpus=self.cpus, num_gpus=self.num_gpus, max_retries=self.max_retries,
                                  retry_exceptions=False)
        try:
            while queue or running:
                while queue and len(running) < self.in_flight:
                    sub, digest = queue.pop(0)
                    files, warnings = list_files(sub)
                    payload = pack_files([(f.label, f.real) for f in files])
                    running[task.remote(sub.student, payload, tuple(warnings), digest, self._opts)] = (sub, digest)
                    started(sub)
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    sub, digest = running.pop(ref)
                    try:
                        evidence_json, outputs, where = ray.get(ref)
                        gathered = Gathered(Evidence.model_validate_json(evidence_json), outputs)
                        yield Done(sub, stamped(gathered, where), where)
                    except ray.exceptions.RayError as exc:  # lost after its retries, or the node's grader failed
                        cause = getattr(exc, "cause", None) or exc
                        yield Done(sub, _lost(sub, digest, cause), "ray", lost=True)
        except BaseException:
            for ref in running:
                ray.cancel(ref, force=True)  # the task's sandboxed workers die with it
            raise


class RaySession:
    """The driver's connection to Ray for one grading run (closed at its end if the run started it)."""

    def __init__(self, ray: Any, started: bool) -> None:
        self.ray, self.started = ray, started
        self.actors: list[Any] = []

    @classmethod
    def start(cls, settings: Settings) -> RaySession:
        """Joins `settings.ray_address`, or starts a Ray on this machine with `settings.jobs` CPUs."""
        local = settings.ray_address is None
        return cls(*connect(settings.ray_address, num_cpus=settings.jobs if local else None))

    def device(self, requested: str) -> str:
        """Where models run: on the cluster's GPUs, not this machine's (the driver may have none)."""
        if requested == "cpu":
            return "cpu"
        if requested.startswith("gpu:"):
            raise GraderError(f"--device {requested}: with --executor ray, Ray gives each task its GPU",
                              hint="use --device gpu (or auto)")
        gpus = cluster_gpus(self.ray)
        if requested == "gpu" and not gpus:
            raise GraderError("--device gpu: the Ray cluster has no GPU", hint="add GPU nodes, or use --device auto or cpu")
        return "gpu" if gpus else "cpu"

    def _folder(self, path: Path, name: str) -> NodeFolder:
        data = pack_folder(path)
        return NodeFolder(sha256=hashlib.sha256(data).hexdigest(), ref=[self.ray.put(data)], name=name)

    def _zygotes(self, inputs_folder: NodeFolder) -> str:
        """One NodeZygotes actor on every node alive now, owned by this driver (they die with it);
        returns the prefix of their names (the node id completes each)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        prefix = f"grader-zygotes-{os.getpid()}-{os.urandom(4).hex()}"
        actor = self.ray.remote(NodeZygotes)
        for node in self.ray.nodes():
            if node.get("Alive"):
                self.actors.append(actor.options(
                    name=f"{prefix}-{node['NodeID']}", num_cpus=0, max_concurrency=256, max_restarts=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
                ).remote(inputs_folder, prefix.removeprefix("grader-zygotes-"), int(node.get("Resources", {}).get("CPU", 1))))
        return prefix

    def executor(self, inputs: PublicInputs, device: str, isolation: Isolation, options: GatherOptions,
                 notebook_policy: NotebookPolicy | None, zygote: bool = True) -> RayExecutor:
        keras_cache = options.notebooks.keras_cache if options.notebooks is not None else None
        inputs_folder = self._folder(inputs.hidden_images.parent, "inputs")
        # pre-imported workers on the CPU; a GPU task keeps the GPU Ray gave it, in a fresh sandbox
        zygotes = self._zygotes(inputs_folder) if zygote and isolation == "bwrap" and device == "cpu" else None
        opts = NodeOptions(
            inputs=inputs, inputs_folder=inputs_folder, device=device, zygotes=zygotes,
            isolation=isolation, limits=options.limits, timeout_per_model=options.timeout_per_model,
            batch_size=options.batch_size, allow_unsandboxed_code=options.allow_unsandboxed_code,
            expects_models=options.expects_models, notebook_policy=notebook_policy,
            keras_cache=self._folder(keras_cache, "keras-datasets") if keras_cache is not None else None,
            reference_weights=(self._folder(options.reference_weights, "reference-weights")
                               if options.reference_weights is not None else None))
        return RayExecutor(self.ray, opts, num_gpus=1.0 if device.startswith("gpu") else 0.0)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a node that is gone has nothing left to close
                pass
            self.ray.kill(actor)
        if self.started:
            self.ray.shutdown()

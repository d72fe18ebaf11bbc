"""`--executor ray`: a real local Ray cluster (`ray.init()` on this machine, 2 CPUs) grades like the
local executor, keeps the hidden labels on the driver, retries a task whose worker is killed, reports
a submission it lost for good without caching it, and resumes from the evidence cache.

Ray is in the dev extras (pyproject.toml), so CI has it; elsewhere these tests skip without it."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grader.inputs import datasets
from grader.sandbox.executors import STALE_SECONDS, NodeFolder, _remove_stale, materialize, pack_folder, unpack
from grader.pipeline import grade, prepare_inputs
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
from tests._class import keras3_cnn
from tests._runs import assert_resumes, wait_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ("carol-smith", "dave-okafor", "erin-garcia", "frank-mueller", "grace-lee")  # the tracked example students
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'grader[cluster]')")


# ------------------------------------------------------------------------------------------------
# Folders sent once per node (no Ray needed)


def test_a_folder_is_unpacked_once_per_node_and_checked(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.npy").write_bytes(b"x" * 1000)
    (src / "sub" / "b.txt").write_text("hello")
    data = pack_folder(src)
    assert pack_folder(src) == data  # the same bytes every time: its hash names it on the nodes
    folder = NodeFolder(sha256=hashlib.sha256(data).hexdigest(), ref=["the-ref"], name="inputs")
    fetched: list[object] = []

    def fetch(ref: object) -> bytes:
        fetched.append(ref)
        return data

    root = tmp_path / "node"
    root.mkdir()
    first = materialize(folder, fetch, root)
    again = materialize(folder, fetch, root)
    assert first == again and fetched == ["the-ref"]  # fetched by the first task only
    assert (first / "a.npy").read_bytes() == b"x" * 1000 and (first / "sub" / "b.txt").read_text() == "hello"

    damaged = NodeFolder(sha256="0" * 64, ref=["other"], name="inputs")
    with pytest.raises(RuntimeError, match="arrived damaged"):
        materialize(damaged, fetch, root)
    assert not (root / ("0" * 64)).exists()


def test_stale_node_folders_are_forgotten_but_not_the_one_in_use(tmp_path: Path) -> None:
    for name in ("old", "keep", "fresh"):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".complete").write_text("ok")
    past = time.time() - STALE_SECONDS - 60
    for name in ("old", "keep"):
        os.utime(tmp_path / name / ".complete", (past, past))
    _remove_stale(tmp_path, keep="keep")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "keep"]


def test_unpack_refuses_names_that_leave_the_folder(tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"no"))
    with pytest.raises(tarfile.TarError):
        unpack(buffer.getvalue(), tmp_path / "dest")
    assert not (tmp_path / "escaped.txt").exists()


# before the module's Ray is started: grade() reuses a Ray this process has already joined
def test_cli_refuses_a_ray_address_without_the_ray_executor_and_a_cluster_that_is_not_there(tmp_path: Path) -> None:
    import io

    from grader.cli import main

    subs = tmp_path / "subs" / "ana"
    subs.mkdir(parents=True)
    (subs / "cnn.keras").write_bytes(b"not a model")
    cases = [(["--ray-address", "auto"], "--ray-address is for --executor ray")]
    if importlib.util.find_spec("ray") is not None:  # nothing listens on this port: a clear error, not a hang
        cases.append((["--executor", "ray", "--ray-address", "127.0.0.1:9"], "cannot connect to a Ray cluster"))
    for extra, expected in cases:
        err = io.StringIO()
        code = main([str(subs.parent), "--assignment", "hw10", *extra, "--out", str(tmp_path / "o"), "-q", "--no-download"],
                    stdout=io.StringIO(), stderr=err)
        assert code == 4, (extra, err.getvalue())
        assert expected in err.getvalue() and "Traceback" not in err.getvalue()


def _ray_processes() -> list[str]:
    """This machine's Ray processes and grader zygotes (one grading at a time runs here)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if cmdline.startswith("ray::") or "grader.sandbox.zygote" in cmdline or "/raylet" in cmdline or "gcs_server" in cmdline:
                found.append(f"{proc.name} {cmdline[:80]}")
    return found


# before the module's Ray is started, so that its processes are not counted
@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find Ray's processes")
def test_ctrl_c_on_ray_keeps_what_is_done_and_leaves_no_process(fmnist_dir: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    subs = tmp_path / "subs"
    (subs / "s0").mkdir(parents=True)
    keras3_cnn(fmnist_dir, subs / "s0" / "cnn.keras")
    for i in range(1, 4):
        (subs / f"s{i}").mkdir()
        shutil.copy(subs / "s0" / "cnn.keras", subs / f"s{i}" / "cnn.keras")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "grader.cli", str(subs), "--assignment", "hw9", "--hidden-tests", str(fmnist_dir),
           "--out", str(out), "-q", "--no-download", "--executor", "ray", "--jobs", "1"]
    cached = lambda: len(list((out / ".evidence").glob("*.json"))) if (out / ".evidence").is_dir() else 0  # noqa: E731
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 300
    while cached() < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    first = cached()
    wait_for(lambda: _ray_processes() == [], 20, f"Ray's processes to go: {_ray_processes()}")  # they take a moment
    assert_resumes(cmd, out, first, 4, cwd=ROOT)


_GPU_CLUSTER = """
import json, sys
from pathlib import Path
import ray
from grader.pipeline import grade
from grader.inputs.rubric import load_rubric
from grader.settings import Settings
subs, data, out, root = map(Path, sys.argv[1:5])
# a Ray that declares a GPU this machine does not have (a misconfigured node)
ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
outcome = grade(subs, load_rubric(root / "rubrics" / "hw9.yaml"),
                Settings(out=out, hidden_tests=data, download=False, public_sample=300, project_root=root, executor="ray"))
e = outcome.results.students[0].evidence
print(json.dumps({"device": outcome.results.run.device, "status": e.status, "errors": list(e.errors),
                  "gathered": outcome.gathered}))
"""


@needs_ray
@pytest.mark.slow
def test_a_node_without_the_gpu_it_declares_fails_its_tasks_without_caching_them(fmnist_dir: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    if Path("/dev/nvidia0").exists():
        pytest.skip("this machine has a GPU")
    (tmp_path / "subs" / "ana").mkdir(parents=True)
    keras3_cnn(fmnist_dir, tmp_path / "subs" / "ana" / "cnn.keras")
    done = subprocess.run([sys.executable, "-c", _GPU_CLUSTER, str(tmp_path / "subs"), str(fmnist_dir), str(tmp_path / "out"),
                           str(ROOT)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["device"] == "gpu"  # auto: the cluster says it has a GPU
    assert answer["status"] == "failed" and answer["gathered"] == 0, answer
    assert "was given gpu:0 but cannot use it" in answer["errors"][0], answer


# ------------------------------------------------------------------------------------------------
# A real local Ray cluster


@pytest.fixture(scope="module")
def ray_local():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, logging_level="ERROR",
             log_to_driver=False)
    yield ray
    ray.shutdown()


def _settings(out: Path, fmnist_dir: Path, **kw: object) -> Settings:
    return Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=300, project_root=ROOT, **kw)  # type: ignore[arg-type]


def _by_student(outcome):  # type: ignore[no-untyped-def]
    return {s.student: s for s in outcome.results.students}


@needs_ray
@pytest.mark.slow
def test_ray_grades_the_example_class_like_the_local_executor(ray_local, fmnist_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    local = grade(ROOT / "submissions", rubric, _settings(tmp_path / "local", fmnist_dir, only=EXAMPLE, jobs=2))
    on_ray = grade(ROOT / "submissions", rubric, _settings(tmp_path / "ray", fmnist_dir, only=EXAMPLE, executor="ray"))
    a, b = _by_student(local), _by_student(on_ray)
    assert sorted(a) == sorted(b) == sorted(EXAMPLE)
    evaluated = 0
    for student in EXAMPLE:
        ea, eb = a[student].evidence, b[student].evidence
        assert ea.status == eb.status and ea.errors == eb.errors, student
        assert ea.executor == "local" and (eb.executor or "").startswith("ray (node "), (ea.executor, eb.executor)
        assert [f.path for f in ea.files] == [f.path for f in eb.files]
        assert [m.path for m in ea.models] == [m.path for m in eb.models]
        for ma, mb in zip(ea.models, eb.models, strict=True):
            assert (ma.status, ma.error, ma.outcome) == (mb.status, mb.error, mb.outcome), (student, ma.path)
            if ma.produced_by is not None:
                continue  # trained again by its notebook in each run: TensorFlow's training is not bit-reproducible
            assert ma.architecture == mb.architecture and ma.pretrained == mb.pretrained
            assert ma.preprocessing == mb.preprocessing, (student, ma.path)
            assert (ma.metrics is None) == (mb.metrics is None)
            if ma.metrics is not None and mb.metrics is not None:
                evaluated += 1
                assert ma.metrics.accuracy == mb.metrics.accuracy and ma.metrics.confusion == mb.metrics.confusion, (student, ma.path)
        notebooks_a = [(n.path, n.run.status if n.run else None) for n in ea.notebooks]
        assert notebooks_a == [(n.path, n.run.status if n.run else None) for n in eb.notebooks], student
        # points of criteria that do not depend on the notebook-trained models' accuracy
        points = lambda s: {c.id: c.points for c in s.criteria if c.id != "honest-claims"}  # noqa: E731
        assert points(a[student]) == points(b[student]), student
    assert evaluated >= 4  # carol's MLP, dave's zipped models, frank's and grace's CNNs
    assert any(n.run is not None and n.run.status == "completed" for s in b.values() for n in s.evidence.notebooks)

    page = (tmp_path / "ray" / "students" / "frank-mueller.html").read_text(encoding="utf-8")
    assert "graded on ray (node " in page  # the teacher's page says where it ran

    # a re-run resumes from the evidence cache, whichever executor wrote it
    again = grade(ROOT / "submissions", rubric, _settings(tmp_path / "ray", fmnist_dir, only=EXAMPLE))
    assert again.gathered == 0 and again.cached == len(EXAMPLE)


@needs_ray
def test_the_hidden_labels_never_reach_a_task(ray_local, fmnist_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from grader.sandbox.executors import RaySession
    from grader.facts.gather import GatherOptions

    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    inputs, scorer, _, _ = prepare_inputs(rubric, _settings(tmp_path, fmnist_dir), tmp_path / "inputs")
    executor = RaySession(ray_local, started=False).executor(inputs, "cpu", "bwrap", GatherOptions(), None)
    hidden_labels = np.asarray(scorer.labels, dtype=np.uint8).tobytes()
    assert len(hidden_labels) == 10_000
    sent = pickle.dumps(executor.opts) + ray_local.get(executor.opts.inputs_folder.ref[0])
    assert hidden_labels[:2000] not in sent and hidden_labels[5000:7000] not in sent
    # what is sent is the unlabelled hidden images and the public sample
    test_images, _ = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=fmnist_dir, download=False))
    assert scorer.order is not None and test_images[scorer.order[:20]].tobytes() in sent  # in the run's secret order
    assert test_images[:20].tobytes() not in sent


def _tasks() -> list[int]:
    """Ray worker processes running a grading task (Ray names them after the function they run)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::gather_on_node"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


class _Killer(threading.Thread):
    """Kills every Ray worker that runs a grading task, `times` times (a lost worker, a lost node)."""

    def __init__(self, times: int) -> None:
        super().__init__(daemon=True)
        self.times, self.killed, self.stop = times, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.killed) < self.times:
            for pid in _tasks():
                if pid not in self.killed:
                    time.sleep(0.5)  # let it get going
                    try:
                        os.kill(pid, signal.SIGKILL)
                        self.killed.append(pid)
                    except ProcessLookupError:
                        pass
                    break
            time.sleep(0.1)


@pytest.fixture(scope="module")
def one_student(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> Path:
    subs = tmp_path_factory.mktemp("subs")
    (subs / "ana").mkdir()
    keras3_cnn(fmnist_dir, subs / "ana" / "cnn.keras")
    return subs


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find Ray's workers")
def test_a_killed_worker_costs_one_retry_not_the_run(ray_local, one_student: Path, fmnist_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    killer = _Killer(times=1)
    killer.start()
    outcome = grade(one_student, rubric, _settings(tmp_path / "ray", fmnist_dir, executor="ray"))
    killer.stop.set()
    assert len(killer.killed) == 1
    model = outcome.results.students[0].evidence.models[0]
    assert model.status == "evaluated" and model.accuracy is not None and model.accuracy > 0.5, model


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find Ray's workers")
def test_a_submission_lost_for_good_is_reported_and_graded_by_the_next_run(ray_local, one_student: Path, fmnist_dir: Path,  # type: ignore[no-untyped-def]
                                                                           tmp_path: Path) -> None:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    killer = _Killer(times=3)  # the first try and both retries
    killer.start()
    lost = grade(one_student, rubric, _settings(tmp_path / "out", fmnist_dir, executor="ray"))
    killer.stop.set()
    assert len(killer.killed) == 3
    evidence = lost.results.students[0].evidence
    assert evidence.status == "failed" and "the cluster could not grade this submission" in evidence.errors[0], evidence.errors
    assert lost.gathered == 0  # not cached: the next run grades it
    again = grade(one_student, rubric, _settings(tmp_path / "out", fmnist_dir, executor="ray"))
    assert again.gathered == 1 and again.results.students[0].evidence.models[0].status == "evaluated"


"""No plaintext hidden labels on disk after any exit (issue 15, finding 13): a bundle's label files
are decrypted into memory only, the run's folder is removed by a guardian when the run is killed,
and every run sweeps the folders of runs that died."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grader.inputs.bundle import KEY_ENV, make_bundle, new_key, open_bundle
from grader.inputs.runfolder import OWNER, PREFIX, make_run_folder, sweep_stale
from tests._runs import wait_for

ROOT = Path(__file__).resolve().parents[1]
FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def _files_holding(root: Path, needles: list[bytes]) -> list[Path]:
    """Regular files under `root` (links not followed) that contain any of `needles`."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if not path.is_symlink() and path.is_file() and any(n in path.read_bytes() for n in needles):
                    found.append(path)
    return found


def _needles(fmnist_dir: Path) -> list[bytes]:
    packed = (fmnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    raw = gzip.decompress(packed)
    return [packed[1000:1256], raw[8 + 5000 : 8 + 5256], raw[8 + 100 : 8 + 356]]


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="labels kept in memory need memfd (Linux)")
def test_open_bundle_keeps_label_files_in_memory(fmnist_dir: Path, tmp_path: Path) -> None:
    hidden = tmp_path / "h"
    hidden.mkdir()
    for name in FILES[:2]:
        shutil.copy(fmnist_dir / name, hidden / name)
    (hidden / "README.md").write_text("teacher's notes")
    key = new_key()
    (tmp_path / "b").write_bytes(make_bundle(hidden, key))
    with contextlib.ExitStack() as memory:
        opened = open_bundle(tmp_path / "b", key, tmp_path / "out", memory=memory)
        labels = opened / "t10k-labels-idx1-ubyte.gz"
        assert labels.is_symlink() and labels.read_bytes() == (fmnist_dir / FILES[1]).read_bytes()
        assert not (opened / FILES[0]).is_symlink() and (opened / "README.md").read_text() == "teacher's notes"
        assert _files_holding(tmp_path / "out", _needles(fmnist_dir)) == []
    assert not labels.exists()  # the memory is gone with the run: the link leads nowhere


def test_a_killed_owner_s_folder_is_removed_by_its_guardian(tmp_path: Path) -> None:
    code = (f"import sys, time; sys.path.insert(0, {str(ROOT)!r}); from pathlib import Path; "
            f"from grader.inputs.runfolder import make_run_folder; f = make_run_folder(Path({str(tmp_path)!r})); "
            "(f.path / 'secret').write_text('labels'); print(f.path, flush=True); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    folder = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
    assert (folder / "secret").is_file() and json.loads((folder / OWNER).read_text())["pid"] == proc.pid
    proc.kill()
    proc.wait()
    wait_for(lambda: not folder.exists(), 20, "the guardian to remove the killed run's folder")


def test_a_run_sweeps_the_folders_of_runs_that_died(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f"{PREFIX}dead"
    (gone / "hidden").mkdir(parents=True)
    (gone / "hidden" / "labels.csv").write_text("a.png,cat\n")
    (gone / OWNER).write_text(json.dumps({"pid": int(dead.stdout), "started": "1", "host": os.uname().nodename}))
    reused = tmp_path / f"{PREFIX}reused"  # a live pid, but another process than the one that made the folder
    reused.mkdir()
    (reused / OWNER).write_text(json.dumps({"pid": os.getpid(), "started": "1", "host": os.uname().nodename}))
    old = tmp_path / f"{PREFIX}old"  # made by a grader that wrote no owner, an hour ago
    old.mkdir()
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    young = tmp_path / f"{PREFIX}young"  # no owner yet: a run that is starting
    young.mkdir()
    live = make_run_folder(tmp_path)
    other = tmp_path / "not-a-run"
    other.mkdir()
    try:
        removed = sweep_stale(tmp_path)
        assert sorted(p.name for p in removed) == sorted([gone.name, reused.name, old.name])
        assert live.path.is_dir() and young.is_dir() and other.is_dir() and not gone.exists()
    finally:
        live.close()
    assert not live.path.exists()


@pytest.mark.slow
def test_kill_9_of_a_run_with_a_bundle_leaves_no_label_on_disk(fmnist_dir: Path, tmp_path: Path) -> None:
    """A real `grade` with an encrypted bundle: while it runs, no file under its TMPDIR holds the labels'
    bytes (packed or raw); kill -9 after the bundle is opened; then nothing of the run remains."""
    import keras

    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in FILES:
        shutil.copy(fmnist_dir / name, hidden / name)
    key = new_key()
    bundle = tmp_path / "hidden.bundle"
    bundle.write_bytes(make_bundle(hidden, key))
    subs = tmp_path / "subs"
    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    for name in ("s1", "s2", "s3"):
        (subs / name).mkdir(parents=True)
        model.save(subs / name / "dense.keras")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), KEY_ENV: key}
    cmd = [sys.executable, "-m", "grader.cli", str(subs), "--assignment", "hw9", "--hidden-tests", str(bundle),
           "--out", str(tmp_path / "out"), "-q", "--no-download", "--no-cache"]
    needles = _needles(fmnist_dir)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        links = lambda: list(scratch.glob(f"{PREFIX}*/hidden/t10k-labels-idx1-ubyte.gz"))  # noqa: E731
        wait_for(lambda: links() or proc.poll() is not None, 240, "the bundle to be opened")
        assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
        assert links()[0].is_symlink()  # the labels are a link to memory, not a file
        assert _files_holding(scratch, needles) == []  # while grading
        wait_for(lambda: list(scratch.glob(f"{PREFIX}*/inputs/hidden_images.npy")) or proc.poll() is not None, 240, "the inputs")
        assert _files_holding(scratch, needles) == []
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    wait_for(lambda: not list(scratch.glob(f"{PREFIX}*")), 30, "the killed run's folder to be removed")
    assert _files_holding(scratch, needles) == []

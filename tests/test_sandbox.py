"""The sandbox and the hostile-input suite: a class where most students attack the grader.

Every hostile model is generated here (nothing large is committed). For each one the test checks
that the batch finishes, the honest student's grade is what it is when graded alone, the bad one
gets the right outcome and message, and nothing outside the scratch folder changed: no file in a
canary folder, no connection to a listening socket, no hidden label read.

bubblewrap is required where $GRADER_REQUIRE_BWRAP=1 (CI sets it); elsewhere the bwrap tests skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from grader.pipeline import grade
from grader.inputs.rubric import load_rubric
from grader.sandbox.isolation import classify, detect_isolation, seccomp_program
from grader.settings import Settings
from tests._class import keras3_cnn

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_BWRAP = os.environ.get("GRADER_REQUIRE_BWRAP") == "1"


def _need_bwrap() -> None:
    info = detect_isolation("auto")
    if info.kind != "bwrap":
        if REQUIRE_BWRAP:
            pytest.fail(f"bubblewrap is required here ($GRADER_REQUIRE_BWRAP=1) but not usable: {info.detail}")
        pytest.skip(f"bubblewrap not usable here: {info.detail}")


def _payload_model(path: Path, payload: str) -> None:
    """A Keras 3 model whose Lambda runs `payload` when the grader's worker calls it. The payload
    is skipped while the model is built here (the test process sets GRADER_TEST_BUILDING)."""
    import keras

    code = "import os\nif not os.environ.get('GRADER_TEST_BUILDING'):\n" + "".join(f"    {line}\n" for line in payload.splitlines())
    fn = eval(f"lambda t: (exec({code!r}, {{}}), t)[1]")  # noqa: S307 - the test's own hostile model
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(fn), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(path)


def _plain_model(path: Path, outputs: int = 10, nan: bool = False) -> None:
    import keras

    model = keras.Sequential([keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(outputs, activation="softmax")])
    if nan:
        model.set_weights([np.full(w.shape, np.nan, np.float32) for w in model.get_weights()])
    model.save(path)


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file() and not path.is_symlink():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class _Listener:
    """A TCP server on localhost that counts connections (none may arrive from the sandbox)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path):  # type: ignore[no-untyped-def]
    _need_bwrap()
    root = tmp_path_factory.mktemp("hostile")
    canary = root / "canary"
    canary.mkdir()
    listener = _Listener()
    subs = root / "class"
    labels = [fmnist_dir / "t10k-labels-idx1-ubyte.gz", ROOT / "hidden_tests" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz",
              Path.home() / ".keras" / "datasets" / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", ROOT / "pyproject.toml",
              Path.home() / ".bashrc"]
    payloads = {
        "write-outside": f"for p in [{str(canary / 'pwned')!r}, {str(subs / 'good' / 'pwned')!r}, {str(ROOT / 'pwned')!r}]:\n"
                         "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass",
        "socket": f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {listener.port}), 2).close()\n"
                  "except OSError:\n    pass",
        "read-labels": f"for p in {[str(p) for p in labels]!r}:\n    try:\n        open(p, 'rb').read(1)\n"
                       "    except OSError:\n        continue\n    raise RuntimeError('READ ' + p)",
        "fork": "n = 0\nfor i in range(20):\n    try:\n        pid = os.fork()\n    except OSError:\n        continue\n"
                "    if pid == 0:\n        os._exit(0)\n    n += 1\nif n:\n    raise RuntimeError('FORKED %d' % n)",
        "memory": "x = []\nwhile True:\n    x.append(bytearray(256 * 1024 * 1024))",
        "sleep": "import time\ntime.sleep(10 ** 6)",
        "env-secrets": "bad = [k for k in os.environ if 'GITHUB' in k or 'TOKEN' in k or 'SECRET' in k]\n"
                       "if bad:\n    raise RuntimeError('ENV ' + ' '.join(bad))",
        "segfault": "import ctypes\nctypes.string_at(0)",
        "garbage-stdout": "import sys\nsys.stdout.write('\\x00\\xff garbage ' * 100000)\nsys.stdout.flush()",
    }
    os.environ["GRADER_TEST_BUILDING"] = "1"
    try:
        (subs / "good").mkdir(parents=True)
        keras3_cnn(fmnist_dir, subs / "good" / "cnn.keras")
        for name, payload in payloads.items():
            (subs / name).mkdir()
            _payload_model(subs / name / "model.keras", payload)
        (subs / "outputs-1000").mkdir()
        _plain_model(subs / "outputs-1000" / "model.keras", outputs=1000)
        (subs / "nan").mkdir()
        _plain_model(subs / "nan" / "model.keras", nan=True)
    finally:
        del os.environ["GRADER_TEST_BUILDING"]
    good_h5 = subs / "good" / "cnn.keras"
    (subs / "truncated").mkdir()
    (subs / "truncated" / "model.h5").write_bytes((subs / "nan" / "model.keras").read_bytes()[:3000])
    (subs / "text-file").mkdir()
    (subs / "text-file" / "model.h5").write_text("my model is on google drive\n")
    (subs / "external-link").mkdir()
    _plain_model(root / "plain.h5")
    shutil.copy(root / "plain.h5", subs / "external-link" / "model.h5")
    with h5py.File(subs / "external-link" / "model.h5", "a") as f:
        f["model_weights"]["leak"] = h5py.ExternalLink("/etc/passwd", "/")
    (subs / "huge-dataset").mkdir()
    shutil.copy(root / "plain.h5", subs / "huge-dataset" / "model.h5")
    with h5py.File(subs / "huge-dataset" / "model.h5", "a") as f:
        f["model_weights"].create_dataset("huge", shape=(2**20, 2**20), dtype="f4", chunks=(1024, 1024))
    (subs / "zip-slip").mkdir()
    with zipfile.ZipFile(good_h5) as src, zipfile.ZipFile(subs / "zip-slip" / "model.keras", "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("../../evil.txt", "x")
    (subs / "zip-bomb").mkdir()
    with zipfile.ZipFile(subs / "zip-bomb" / "models.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.h5", b"\0" * (64 * 1024**2))
    weird = "Zoë 'O\"Brien' 李 ä"
    (subs / weird).mkdir()
    shutil.copy(good_h5, subs / weird / "cnn.keras")
    (subs / "symlink").mkdir()
    (subs / "symlink" / "model.h5").symlink_to(root / "plain.h5")
    before = _tree_digest(subs)

    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    os.environ["GITHUB_TOKEN"] = os.environ["GRADER_TEST_SECRET"] = "s3cret"  # the grader's environment has secrets
    common = dict(hidden_tests=fmnist_dir, download=False, public_sample=200, project_root=ROOT, sandbox="bwrap",
                  memory_limit_gb=3.0, timeout_per_model=60.0)
    # graded alone in a one-off sandbox (no zygote): the class run below must give the same grade
    alone = grade(subs, rubric, Settings(out=root / "alone", only=("good",), zygote=False, **common))  # type: ignore[arg-type]
    try:
        outcome = grade(subs, rubric, Settings(out=root / "out", jobs=2, **common))  # type: ignore[arg-type]
    finally:
        del os.environ["GITHUB_TOKEN"], os.environ["GRADER_TEST_SECRET"]
    listener.stop.set()
    return {s.student: s for s in outcome.results.students}, alone.results.students[0], outcome, canary, listener, \
        subs, before, weird


def _model(students, name):  # type: ignore[no-untyped-def]
    (model,) = students[name].evidence.models
    return model


def test_the_batch_finishes_and_the_honest_student_is_unaffected(hostile) -> None:  # type: ignore[no-untyped-def]
    students, alone, outcome, *_ = hostile
    assert outcome.results.run.sandboxed and "sandboxed" in outcome.results.run.sandbox_note
    assert all(s.status == "gathered" for s in students.values())
    good = students["good"]
    assert good.points == alone.points and good.best_accuracy == alone.best_accuracy
    assert _model(students, "good").status == "evaluated"


def test_nothing_outside_scratch_changed(hostile) -> None:  # type: ignore[no-untyped-def]
    students, _, _, canary, listener, subs, before, _ = hostile
    assert list(canary.iterdir()) == []
    assert not (ROOT / "pwned").exists()
    assert _tree_digest(subs) == before
    assert listener.connections == 0
    for name in ("write-outside", "socket"):  # the attempts failed quietly and the models were graded
        assert _model(students, name).status == "evaluated", _model(students, name).error


def test_hidden_labels_cannot_be_read(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, "read-labels")
    assert model.status == "evaluated", model.error  # the payload raises if any path could be opened


def test_no_new_processes(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, "fork")
    assert model.status == "evaluated", model.error  # the payload raises if any fork succeeded


def test_secrets_in_the_environment_do_not_reach_the_worker(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, "env-secrets")
    assert model.status == "evaluated", model.error  # the payload raises if it sees a token


def test_a_crash_is_reported_as_such(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, "segfault")
    assert model.status == "error" and model.outcome == "killed"
    assert "SIGSEGV" in (model.error or "") and "crashed" in (model.error or "")


def test_garbage_on_stdout_changes_nothing(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    assert _model(students, "garbage-stdout").status == "evaluated"


def test_memory_hog_is_stopped_with_a_clear_message(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, "memory")
    assert model.status == "error" and model.outcome == "out_of_memory"
    assert "ran out of memory" in (model.error or "")


def test_sleeper_times_out(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, "sleep")
    assert model.status == "error" and model.outcome == "timeout"
    assert "did not finish within 60 s" in (model.error or "")


@pytest.mark.parametrize(("name", "expected"), [
    ("truncated", "model.h5"),
    ("text-file", "model.h5"),
    ("external-link", "links to another file"),
    ("huge-dataset", "declares 4096.0 GB"),
    ("zip-slip", "escapes its folder"),
    ("outputs-1000", "1000 output(s) per image"),
    ("nan", "NaN"),
])
def test_bad_files_get_an_error_that_names_the_problem(hostile, name: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    model = _model(students, name)
    assert model.status == "error" and expected in (model.error or ""), model.error


def test_zip_bomb_and_symlink_are_skipped_with_a_warning(hostile) -> None:  # type: ignore[no-untyped-def]
    students, *_ = hostile
    assert "skipped, it declares" in " ".join(students["zip-bomb"].evidence.errors)
    assert "symbolic link skipped" in " ".join(students["symlink"].evidence.errors)
    assert students["symlink"].evidence.models == ()


def test_a_folder_name_with_quotes_and_non_latin_letters(hostile) -> None:  # type: ignore[no-untyped-def]
    students, alone, _, _, _, _, _, weird = hostile
    assert students[weird].best_accuracy == alone.best_accuracy


# ------------------------------------------------------------------------------------------------
# Without bubblewrap: loud, and code is not run


def test_unsandboxed_run_says_so_and_does_not_run_code(tmp_path: Path, fmnist_dir: Path) -> None:
    subs = tmp_path / "class"
    (subs / "lambda").mkdir(parents=True)
    os.environ["GRADER_TEST_BUILDING"] = "1"
    try:
        _payload_model(subs / "lambda" / "model.keras", f"open({str(tmp_path / 'ran')!r}, 'w').write('x')")
    finally:
        del os.environ["GRADER_TEST_BUILDING"]
    out = tmp_path / "out"
    outcome = grade(subs, load_rubric(ROOT / "rubrics" / "hw10.yaml"),
                    Settings(out=out, hidden_tests=fmnist_dir, download=False, public_sample=20, project_root=ROOT, sandbox="none"))
    run = outcome.results.run
    assert not run.sandboxed and run.sandbox_note.startswith("NOT SANDBOXED")
    (model,) = outcome.results.students[0].evidence.models
    assert model.status == "needs_sandbox" and not (tmp_path / "ran").exists()
    assert "NOT SANDBOXED" in (out / "index.html").read_text() and "NOT SANDBOXED" in (out / "feedback" / "lambda.html").read_text()


# ------------------------------------------------------------------------------------------------
# Pieces


def test_outcome_classification() -> None:
    assert classify(0, "") == "ok"
    assert classify(1, "Traceback ... MemoryError") == "out_of_memory"
    # TensorFlow aborting because the address-space limit leaves no room for its threads' stacks
    assert classify(-6, "F0000 env.cc:84] Check failed: ret == 0 (11 vs. 0) Thread tf_Compute creation via "
                        "pthread_create() failed.\n*** Check failure stack trace: ***") == "out_of_memory"
    assert classify(-9, "") == "killed" and classify(137, "") == "killed"
    assert classify(2, "ValueError: bad") == "error"


def test_seccomp_filter_refuses_processes_but_not_threads() -> None:
    _need_bwrap()
    program = seccomp_program()
    assert program is not None and len(program) % 8 == 0
    code = ("import os, threading, subprocess\n"
            "t = threading.Thread(target=lambda: None); t.start(); t.join()\n"
            "for attempt in (os.fork, lambda: subprocess.run(['true'])):\n"
            "    try:\n        attempt()\n    except OSError as e:\n        print('refused', e.errno)\n"
            "    else:\n        print('ALLOWED')\n        os._exit(0)\n")
    with open(os.devnull, "rb") as _, __import__("tempfile").TemporaryFile() as fh:
        fh.write(program)
        fh.seek(0)
        result = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--cap-drop", "ALL",
                                 "--proc", "/proc", "--dev", "/dev", "--seccomp", str(fh.fileno()), sys.executable, "-c", code],
                                capture_output=True, text=True, pass_fds=(fh.fileno(),), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["refused 1", "refused 1"], result.stdout


def test_results_json_records_the_sandbox(hostile) -> None:  # type: ignore[no-untyped-def]
    *_, = hostile
    students, _, outcome, *_ = hostile
    data = json.loads(outcome.results.model_dump_json())
    assert data["run"]["sandboxed"] is True
    assert all(s["evidence"]["sandboxed"] for s in data["students"] if s["evidence"]["models"])


def test_control_the_same_attacks_succeed_without_the_sandbox(tmp_path: Path, fmnist_dir: Path) -> None:
    """A control for the suite above: with no sandbox (and code allowed) the payloads do reach the
    canary, the socket and the labels, so the sandboxed tests passing means something."""
    canary = tmp_path / "canary"
    canary.mkdir()
    listener = _Listener()
    label_file = fmnist_dir / "t10k-labels-idx1-ubyte.gz"
    payloads = {
        "write": f"open({str(canary / 'pwned')!r}, 'w').write('x')",
        "socket": f"import socket\nsocket.create_connection(('127.0.0.1', {listener.port}), 2).close()",
        "read": f"open({str(label_file)!r}, 'rb').read(1)\nopen({str(canary / 'read')!r}, 'w').write('x')",
        "fork": f"pid = os.fork()\nif pid == 0:\n    open({str(canary / 'forked')!r}, 'w').write('x')\n    os._exit(0)\n"
                "os.waitpid(pid, 0)",
    }
    subs = tmp_path / "class"
    os.environ["GRADER_TEST_BUILDING"] = "1"
    try:
        for name, payload in payloads.items():
            (subs / name).mkdir(parents=True)
            _payload_model(subs / name / "model.keras", payload)
    finally:
        del os.environ["GRADER_TEST_BUILDING"]
    outcome = grade(subs, load_rubric(ROOT / "rubrics" / "hw10.yaml"),
                    Settings(out=tmp_path / "out", hidden_tests=fmnist_dir, download=False, public_sample=20, project_root=ROOT,
                             sandbox="none", allow_unsandboxed_code=True, jobs=2))
    listener.stop.set()
    assert len(outcome.results.students) == 4
    assert sorted(p.name for p in canary.iterdir()) == ["forked", "pwned", "read"]
    assert listener.connections >= 1


def _with_config_layer(src: Path, dst: Path, layer: dict) -> Path:
    """A copy of the h5 model `src` whose config gains `layer` (nothing else changes)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"].append(layer)
        f.attrs["model_config"] = json.dumps(config)
    return dst


def test_precheck_refuses_layers_that_load_from_paths(tmp_path: Path) -> None:
    from grader.facts.precheck import precheck

    _plain_model(tmp_path / "plain.h5")
    assert precheck(tmp_path / "plain.h5") == []
    tfsm = _with_config_layer(tmp_path / "plain.h5", tmp_path / "tfsm.h5",
                              {"class_name": "TFSMLayer", "config": {"name": "saved", "filepath": "/home/t/model"}})
    (problem,) = precheck(tfsm)
    assert "'saved' is a TFSMLayer" in problem and "tfsm.h5" in problem
    lookup = _with_config_layer(tmp_path / "plain.h5", tmp_path / "lookup.h5",
                                {"class_name": "StringLookup", "config": {"name": "words", "vocabulary": "/etc/passwd"}})
    (problem,) = precheck(lookup)
    assert "reads its vocabulary from the path '/etc/passwd'" in problem
    inline = _with_config_layer(tmp_path / "plain.h5", tmp_path / "inline.h5",
                                {"class_name": "StringLookup", "config": {"name": "words", "vocabulary": ["a", "b"]}})
    assert precheck(inline) == []  # a vocabulary stored in the file is fine

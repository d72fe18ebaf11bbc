"""The hostile class, part two (issue 15): attacks on the sandbox's own machinery, each graded in one
class with honest students. For each: the batch finishes, every honest grade equals the same student
graded alone, the attacker gets the right outcome, and nothing outside its sandbox changes.

The payloads are written here from scratch: a Keras `Lambda` that runs them in the worker (tests/
test_sandbox.py `_payload_model`), or a notebook cell. Where a test needs a pids cgroup and the
machine has none, it makes one (as root: a cgroup v1 pids hierarchy mounted in a temporary folder)
or skips saying why.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from grader.sandbox import cgroups
from grader.pipeline import grade
from grader.inputs.rubric import load_rubric, parse_rubric
from grader.settings import Settings
from tests._class import keras3_cnn
from tests.test_sandbox import _need_bwrap, _payload_model

ROOT = Path(__file__).resolve().parents[1]

# Every way a worker might reach its zygote (PID 1), its pipes or its memory. If any opens, the payload
# writes a forged "finished" answer there (as the attack in the issue did) and raises, so that the
# model's status says the door was open.
REACH_ZYGOTE = textwrap.dedent("""
    import json, struct
    opened = []
    for path in ['/proc/1/fd/0', '/proc/1/fd/1', '/proc/1/fd/2', '/proc/1/mem', '/proc/1/environ', '/proc/1/cwd/x']:
        for mode in ('wb', 'rb'):
            try:
                fh = open(path, mode)
            except OSError:
                continue
            opened.append(path + ' ' + mode)
            if mode == 'wb':
                forged = json.dumps({'nonce': 'x', 'pid': 2, 'reaped': 2, 'status': 0, 'end': True}).encode()
                try:
                    fh.write(struct.pack('<cQ', b'J', len(forged)) + forged)
                    fh.flush()
                except OSError:
                    pass
            fh.close()
    import os, signal
    for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGSTOP):
        try:
            os.kill(1, sig)
        except OSError:
            pass
    if opened:
        raise RuntimeError('OPENED ' + ', '.join(opened))
""")

# A first student leaves files in every writable place; the next one in the same zygote looks for them.
LEAVE = textwrap.dedent("""
    import os
    for folder in ('/dev/shm', os.environ.get('TMPDIR', '/tmp'), os.environ.get('HOME', '/tmp'), '/work'):
        try:
            with open(os.path.join(folder, 'note-from-leaver'), 'wb') as fh:
                fh.write(b'x' * (4 * 1024 * 1024))
            hidden = os.path.join(folder, 'locked')  # a folder its owner closed (mode 000)
            os.mkdir(hidden)
            open(os.path.join(hidden, 'note-locked'), 'w').write('x')
            os.chmod(hidden, 0)
        except OSError:
            pass
    here = os.getcwd()
    try:  # a tree deeper than a path or Python's recursion can follow
        os.chdir('/dev/shm')
        for _ in range(1500):
            os.mkdir('d')
            os.chdir('d')
        open('note-deep', 'w').write('x')
    except OSError:
        pass
    os.chdir(here)
""")
FIND = textwrap.dedent("""
    import os
    found = []
    try:
        for top in ('/work', '/dev/shm', '/slot'):
            for folder, dirs, names in os.walk(top):
                for d in dirs:
                    try:
                        os.chmod(os.path.join(folder, d), 0o700)  # reopen what a leaver locked
                    except OSError:
                        pass
                found += [os.path.join(folder, n) for n in names + dirs if 'note' in n or n in ('model.keras', 'locked', 'd')]
    except RecursionError:
        found.append('a tree too deep to walk')
    if found:
        raise RuntimeError('FOUND ' + ', '.join(found[:5]))
""")

# Nested user namespaces (a door to mount tricks and to kernel bugs reachable only with capabilities).
USERNS = textwrap.dedent("""
    import ctypes, os
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) == 0:  # CLONE_NEWUSER
        raise RuntimeError('NESTED USER NAMESPACE')
""")

# Fill the writable space: the write fails (ENOSPC) at the cap; the model then raises with its error
DISK = textwrap.dedent("""
    import os
    with open(os.path.join(os.environ['TMPDIR'], 'fill'), 'wb') as fh:
        for _ in range(400):
            fh.write(b'\\0' * (1024 * 1024))
""")

THREADS = textwrap.dedent("""
    import threading, time
    stop = threading.Event()
    started = 0
    for _ in range(3000):
        try:
            threading.Thread(target=stop.wait, daemon=True).start()
        except RuntimeError:
            break
        started += 1
    raise RuntimeError('THREADS %d' % started)
""")


def _settings(out: Path, fmnist: Path, **extra: object) -> Settings:
    common: dict[str, object] = dict(hidden_tests=fmnist, download=False, public_sample=100, project_root=ROOT,
                                     sandbox="bwrap", memory_limit_gb=3.0, timeout_per_model=90.0)
    common.update(extra)
    return Settings(out=out, **common)  # type: ignore[arg-type]


def _build(subs: Path, fmnist: Path, attackers: dict[str, str], honest: tuple[str, ...]) -> None:
    os.environ["GRADER_TEST_BUILDING"] = "1"
    try:
        for name in honest:
            (subs / name).mkdir(parents=True)
            keras3_cnn(fmnist, subs / name / "cnn.keras")
        for name, payload in attackers.items():
            (subs / name).mkdir(parents=True)
            _payload_model(subs / name / "model.keras", payload)
    finally:
        del os.environ["GRADER_TEST_BUILDING"]


def _model(students: dict, name: str):  # type: ignore[no-untyped-def, type-arg]
    (model,) = students[name].evidence.models
    return model


@pytest.fixture(scope="module")
def zygote_class(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path):  # type: ignore[no-untyped-def]
    """One zygote (jobs=1), students in name order: attackers first, each followed by honest ones."""
    _need_bwrap()
    root = tmp_path_factory.mktemp("zygote-class")
    subs = root / "class"
    _build(subs, fmnist_dir, {"a1-reach-zygote": REACH_ZYGOTE, "a2-leave": LEAVE, "a3-find": FIND, "a4-userns": USERNS,
                              "a5-disk": DISK}, ("b1-honest", "b2-honest"))
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    alone = grade(subs, rubric, _settings(root / "alone", fmnist_dir, only=("b1-honest",), zygote=False))
    outcome = grade(subs, rubric, _settings(root / "out", fmnist_dir, jobs=1, disk_limit_gb=0.25))
    return {s.student: s for s in outcome.results.students}, alone.results.students[0]


def test_honest_students_after_the_attackers_keep_their_grade(zygote_class) -> None:  # type: ignore[no-untyped-def]
    students, alone = zygote_class
    for name in ("b1-honest", "b2-honest"):
        assert students[name].status == "gathered"
        assert students[name].best_accuracy == alone.best_accuracy, name
        assert students[name].points == alone.points, name


def test_a_child_cannot_reach_its_zygote(zygote_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = zygote_class
    model = _model(students, "a1-reach-zygote")
    assert model.status == "evaluated", model.error  # the payload raises when any of PID 1's doors opened


def test_nothing_a_child_writes_reaches_the_next_one(zygote_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = zygote_class
    assert _model(students, "a2-leave").status == "evaluated"
    finder = _model(students, "a3-find")
    assert finder.status == "evaluated", finder.error  # the payload raises when it finds the leaver's notes


def test_nested_user_namespaces_are_refused(zygote_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = zygote_class
    model = _model(students, "a4-userns")
    assert model.status == "evaluated", model.error


def test_filling_the_writable_space_is_the_students_limit(zygote_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = zygote_class
    model = _model(students, "a5-disk")
    assert model.status == "error" and model.outcome == "disk_full"
    assert "wrote more than 256 MB" in (model.error or "")


# ---- tasks: a thread bomb beside an honest student, under a limit on the whole grader


@contextlib.contextmanager
def _pids_hierarchy(tmp: Path, total: int):  # type: ignore[no-untyped-def]
    """A pids cgroup for this test with `total` tasks for everything under it (as root: a cgroup v1
    pids hierarchy mounted here when the machine has none mounted)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a pids cgroup for the test")
    mounted = None
    parent = next((p for p in cgroups._candidates() if (p / "pids.max").exists() or (p / "tasks").exists()), None)
    if parent is None:
        mounted = tmp / "pids"
        mounted.mkdir()
        done = subprocess.run(["mount", "-t", "cgroup", "-o", "pids", "none", str(mounted)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a cgroup pids hierarchy here: {done.stderr.strip()}")
        parent = mounted
    folder = parent / f"grader-test-{os.getpid()}"
    folder.mkdir()
    (folder / "pids.max").write_text(str(total))
    try:
        yield folder
    finally:
        cgroups._remove(folder)
        if mounted is not None:
            subprocess.run(["umount", str(mounted)], check=False)


def test_a_thread_bomb_cannot_starve_a_classmate(tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_bwrap()
    subs = tmp_path / "class"
    _build(subs, fmnist_dir, {"bomb": THREADS}, ("honest",))
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    alone = grade(subs, rubric, _settings(tmp_path / "alone", fmnist_dir, only=("honest",)))
    # everything the grader's sandboxes start shares 400 tasks, as a machine's (or a container's) limit would
    with _pids_hierarchy(tmp_path, 400) as limit:
        monkeypatch.setenv(cgroups.ENV, str(limit))
        cgroups.find_parent.cache_clear()
        try:
            outcome = grade(subs, rubric, _settings(tmp_path / "out", fmnist_dir, jobs=2, max_tasks=120, memory_limit_gb=8.0))
        finally:
            cgroups.find_parent.cache_clear()
    students = {s.student: s for s in outcome.results.students}
    assert students["honest"].best_accuracy == alone.results.students[0].best_accuracy
    assert students["honest"].points == alone.results.students[0].points
    bomb = _model(students, "bomb")
    assert bomb.status == "error" and bomb.outcome == "too_many_tasks", bomb.error
    assert "more than 120 processes or threads" in (bomb.error or "")
    if "THREADS " in (bomb.error or ""):  # the payload saw the refusal itself (TensorFlow may abort first)
        assert int((bomb.error or "").rsplit("THREADS ", 1)[1].split()[0]) < 120


# ---- notebooks: the run is what the runner saw


FORGER = [
    new_code_cell(textwrap.dedent("""
        import glob, json, os, signal, struct
        opened = []
        for path in glob.glob('/proc/1/fd/*') + ['/proc/1/mem']:
            try:
                fh = open(path, 'wb')
            except OSError:
                continue
            opened.append(path)
            for doc in ({'cell': {'index': 2, 'status': 'ok', 'seconds': 0.1, 'outputs': []}},
                        {'result': {'status': 'completed', 'cells_run': 3}}, {'end': True}):
                data = json.dumps(doc).encode()
                try:
                    fh.write(struct.pack('<cQ', b'J', len(data)) + data)
                except OSError:
                    pass
            fh.close()
        print('opened', opened)
    """)),
    new_code_cell(textwrap.dedent("""
        import os, signal
        for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT):
            try:
                os.kill(1, sig)
            except OSError:
                pass
        print('Test accuracy: 0.99')
    """)),
    new_code_cell("raise ValueError('this notebook does not run to the end')"),
]
FILLER = [
    new_code_cell(textwrap.dedent("""
        import os
        written = {}
        for folder in ('/content', '/tmp', '/dev/shm', os.environ['HOME']):
            n = 0
            try:
                with open(os.path.join(folder, 'fill'), 'wb') as fh:
                    for _ in range(200):
                        fh.write(b'\\0' * (1024 * 1024))
                        n += 1
            except OSError:
                pass
            written[folder] = n
        print(written)
    """)),
]
NESTED = [
    new_code_cell("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                  "assert libc.unshare(0x10000000) != 0, 'nested user namespace'\nprint('refused')"),
]
HONEST = [new_code_cell("print(sum(range(10)))")]

NB_RUBRIC = """
assignment: nbhostile
title: "Notebooks"
dataset: fashion-mnist
notebooks:
  execute: true
  cell_timeout: 60
  timeout: 120
sandbox:
  disk_gb: 0.1
criteria:
  - id: runs
    title: "The notebook runs"
    points: 2
    check: notebook_executes
"""


def _write_nb(folder: Path, cells: list) -> None:  # type: ignore[type-arg]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}}),
                   folder / "hw.ipynb")


@pytest.fixture(scope="module")
def notebook_class(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path):  # type: ignore[no-untyped-def]
    _need_bwrap()
    root = tmp_path_factory.mktemp("nb-hostile")
    for name, cells in (("forger", FORGER), ("filler", FILLER), ("nested", NESTED), ("honest", HONEST)):
        _write_nb(root / "class" / name, cells)
    before = _usage(Path(os.environ.get("TMPDIR", "/tmp")))
    outcome = grade(root / "class", parse_rubric(NB_RUBRIC, "rubrics/nbhostile.yaml"),
                    _settings(root / "out", fmnist_dir, jobs=2))  # the rubric's sandbox.disk_gb: 0.1
    return {s.student: s for s in outcome.results.students}, before


def _usage(folder: Path) -> int:
    info = os.statvfs(folder)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


def _run(student):  # type: ignore[no-untyped-def]
    (nb,) = student.evidence.notebooks
    return nb.run


def test_a_notebook_cannot_forge_its_run(notebook_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = notebook_class
    run = _run(students["forger"])
    assert run.status != "completed", run  # the last cell raises; signalling the runner ends the run as an error at most
    assert "opened []" in run.cells[0].outputs
    runs = next(c for c in students["forger"].criteria if c.id == "runs")
    assert runs.points == 0


def test_a_notebook_that_fills_its_space_is_told_so(notebook_class) -> None:  # type: ignore[no-untyped-def]
    students, before = notebook_class
    run = _run(students["filler"])
    assert run.status == "error" and "wrote more than 0.1 GB" in run.message
    written = run.cells[0].outputs
    assert "'/content': 102" in written or "'/content': 10" in written  # stopped at the cap, not at 200 MB
    # nothing of it reached the host's disk (the sandbox's space is memory that vanished with it)
    assert _usage(Path(os.environ.get("TMPDIR", "/tmp"))) - before < 150 * 1024**2


def test_a_notebook_cannot_make_a_user_namespace(notebook_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = notebook_class
    assert _run(students["nested"]).status == "completed", _run(students["nested"]).message


def test_the_honest_notebook_runs(notebook_class) -> None:  # type: ignore[no-untyped-def]
    students, _ = notebook_class
    assert _run(students["honest"]).status == "completed"
    assert next(c for c in students["honest"].criteria if c.id == "runs").points == 2


# ---- the grader's own faults


def test_a_sandbox_that_cannot_start_is_a_grader_fault(tmp_path: Path, fmnist_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the student's mistake: 'not graded (grader fault)', nothing cached, the CLI exits 1 with
    the cause, and the Classroom result is an error, not a failure."""
    _need_bwrap()
    from grader.sandbox import zygote
    from grader.cli import main

    real = zygote.Zygote.command

    def broken(self: zygote.Zygote) -> list[str]:
        args = real(self)
        at = args.index(sys.executable)
        return [*args[:at], "/nonexistent/python3", *args[at + 1:]]

    subs = tmp_path / "class"
    _build(subs, fmnist_dir, {}, ("good",))
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    monkeypatch.setattr(zygote.Zygote, "command", broken)
    outcome = grade(subs, rubric, _settings(tmp_path / "out", fmnist_dir, formats=("json", "classroom")))
    (student,) = outcome.results.students
    assert student.status == "grader_fault"
    assert "evaluation sandbox did not start" in student.evidence.errors[-1]
    assert all(c.outcome == "error" and "not a problem with your work" in c.message for c in student.criteria)
    assert outcome.gathered == 0  # not cached
    assert not list((tmp_path / "out" / ".evidence").glob("*")) if (tmp_path / "out" / ".evidence").exists() else True
    classroom = json.loads(next((tmp_path / "out").rglob("*classroom*.json")).read_text()) \
        if list((tmp_path / "out").rglob("*classroom*.json")) else None
    if classroom is not None:
        assert classroom["status"] == "error"
    import io

    err = io.StringIO()
    code = main([str(subs), "--rubric", str(ROOT / "rubrics" / "hw10.yaml"),
                 "--hidden-tests", str(fmnist_dir), "--no-download", "--out", str(tmp_path / "cli"), "-q"],
                stdout=io.StringIO(), stderr=err)
    assert code == 1
    line = err.getvalue()
    assert "not graded because the grader failed, not the students" in line and "did not start" in line
    monkeypatch.undo()
    again = grade(subs, rubric, _settings(tmp_path / "out", fmnist_dir))  # the next run grades it for real
    assert again.results.students[0].status == "gathered" and again.gathered == 1


# ---- where the grader is installed


def _venv(where: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(where)], check=True)
    return where / "bin" / "python"


@pytest.mark.parametrize("layout", ["tmp", "symlink", "home"])
def test_the_sandbox_works_wherever_the_grader_is_installed(layout: str, tmp_path: Path, fmnist_dir: Path) -> None:
    """A virtualenv under /tmp (the sandbox mounts its own /tmp), reached through a symbolic link, or in
    a home folder: the probe mounts what real sandboxes mount, and a real evaluation runs."""
    _need_bwrap()
    if layout == "home":
        base = Path.home() / f".grader-test-venv-{os.getpid()}"
    else:
        base = Path("/tmp") / f"grader-test-venv-{os.getpid()}-{layout}"
    try:
        python = _venv(base / "venv")
        if layout == "symlink":
            (base / "link").symlink_to(base / "venv", target_is_directory=True)
            python = base / "link" / "bin" / "python"
        subs = tmp_path / "class"
        _build(subs, fmnist_dir, {}, ("good",))
        script = textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(ROOT)!r})
            from grader.cli import main
            sys.exit(main([{str(subs)!r}, '--rubric', {str(ROOT / 'rubrics' / 'hw10.yaml')!r},
                           '--hidden-tests', {str(fmnist_dir)!r}, '--no-download', '--sandbox', 'bwrap', '--no-zygote',
                           '--out', {str(tmp_path / 'out')!r}, '--format', 'json', '-q']))
        """)
        done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr[-2000:]
        results = json.loads(next((tmp_path / "out").rglob("results.json")).read_text())
        (student,) = results["students"]
        assert student["status"] == "gathered" and results["run"]["sandboxed"]
        assert student["evidence"]["models"][0]["status"] == "evaluated"
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_python_the_sandbox_cannot_see_is_a_grader_fault_not_a_reason_to_drop_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--sandbox auto` falls back only when bwrap itself cannot make namespaces; an interpreter the
    sandbox does not mount is the grader's fault: exit 1 with the fix, never an unsandboxed run."""
    _need_bwrap()
    from grader.sandbox import isolation as sandbox
    from grader.errors import GraderFault

    if any(Path(sys.executable).resolve().is_relative_to(f"/{d}") for d in ("usr", "bin", "lib")):
        pytest.skip("this Python is under /usr: every sandbox mounts it, so it cannot be hidden from one")
    monkeypatch.setattr(sandbox, "_python_roots", lambda: [])
    with pytest.raises(GraderFault) as raised:
        sandbox.detect_isolation("auto")
    assert "the sandbox cannot start the grader's Python" in raised.value.message
    assert "No such file" in raised.value.message and "install the grader" in raised.value.hint

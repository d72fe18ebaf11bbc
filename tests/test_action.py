"""action.yml, the composite GitHub Action, run without GitHub: its grading step's shell script runs
in a temporary student repository with GITHUB_OUTPUT and GITHUB_STEP_SUMMARY pointing at files, the
way the runner does it, and what it leaves there is read the way the Classroom reporter reads it."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import jsonschema
import pytest
import yaml

from grader.inputs.bundle import make_bundle, new_key
from tests._class import keras3_cnn

ROOT = Path(__file__).resolve().parents[1]
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
SCHEMA = json.loads((ROOT / "docs" / "classroom.schema.json").read_text())


def _step(name: str) -> dict:
    return next(s for s in ACTION["runs"]["steps"] if s.get("name") == name)


def _render(value: str, inputs: dict[str, str], runner_temp: Path) -> str:
    """The `${{ ... }}` expressions the runner would substitute, for the names the action uses."""
    def one(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        if expr.startswith("inputs."):
            name = expr[len("inputs."):]
            return inputs.get(name, ACTION["inputs"][name].get("default", ""))
        return {"github.action_path": str(ROOT), "runner.temp": str(runner_temp)}[expr]
    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


def run_grade_step(repo: Path, runner_temp: Path, **inputs: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str]:
    step = _step("Grade")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GRADER_HIDDEN"))}
    env.update({k: _render(str(v), inputs, runner_temp) for k, v in step["env"].items()})
    output, summary = runner_temp / "github_output", runner_temp / "step_summary"
    output.touch()
    summary.touch()
    env.update(GITHUB_OUTPUT=str(output), GITHUB_STEP_SUMMARY=str(summary), RUNNER_TEMP=str(runner_temp))
    done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return done, outputs, summary.read_text()


@pytest.fixture(scope="module")
def student_repo(tmp_path_factory: pytest.TempPathFactory, fmnist_dir: Path) -> Path:
    repo = tmp_path_factory.mktemp("hw10-alice")
    (repo / "models").mkdir()
    keras3_cnn(fmnist_dir, repo / "models" / "cnn.keras")  # in a sub-folder: the repository is still one submission
    (repo / "README.md").write_text("my homework\n")
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / ".github" / "workflows" / "classroom.yml").write_text("name: x\n")
    return repo


def test_action_is_a_composite_whose_outputs_come_from_the_grading_step() -> None:
    assert ACTION["runs"]["using"] == "composite"
    assert {"assignment", "path", "hidden-tests", "hidden-tests-key", "device", "timeout"} <= ACTION["inputs"].keys()
    assert ACTION["outputs"]["result"]["value"] == "${{ steps.grade.outputs.result }}"
    assert {"score", "max-score"} <= ACTION["outputs"].keys()
    upload = _step("Upload the report")
    assert upload["if"] == "always()" and upload["uses"].startswith("actions/upload-artifact@")
    for step in ACTION["runs"]["steps"]:  # inputs reach shell code through env only: no injection
        assert "${{" not in step.get("run", "")


def test_grading_step_in_a_student_repository(student_repo: Path, fmnist_dir: Path, tmp_path: Path) -> None:
    done, outputs, summary = run_grade_step(student_repo, tmp_path, assignment="hw10", **{"hidden-tests": str(fmnist_dir)})
    assert done.returncode == 0, done.stderr + done.stdout
    data = json.loads(base64.b64decode(outputs["result"]))  # as the reporter decodes <STEP-ID>_RESULTS
    jsonschema.validate(data, SCHEMA)
    assert float(outputs["score"]) == pytest.approx(sum(t["score"] for t in data["tests"]))
    assert float(outputs["max-score"]) == data["max_score"] == 15
    assert summary.startswith(f"### hw10: {student_repo.name} — ") and "| Criterion | Result | Points |" in summary
    report = tmp_path / "grader-report"
    assert (report / "index.html").exists() and (report / "results.json").exists()  # the artifact
    results = json.loads((report / "results.json").read_text())
    assert [f["path"] for f in results["students"][0]["evidence"]["files"]] == ["README.md", "models/cnn.keras"]


def test_grading_step_downloads_an_encrypted_bundle(student_repo: Path, fmnist_dir: Path, tmp_path: Path) -> None:
    """hidden-tests as a URL (a local HTTP server here) and the key from a secret."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(fmnist_dir / name, hidden / name)
    key = new_key()
    served = tmp_path / "served"
    served.mkdir()
    (served / "hidden.bundle").write_bytes(make_bundle(hidden, key))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler,
                                                                                 directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hidden.bundle"
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    try:
        done, outputs, _ = run_grade_step(student_repo, runner_temp, assignment="hw10",
                                          **{"hidden-tests": url, "hidden-tests-key": key})
        assert done.returncode == 0, done.stderr + done.stdout
        jsonschema.validate(json.loads(base64.b64decode(outputs["result"])), SCHEMA)
        results = json.loads((runner_temp / "grader-report" / "results.json").read_text())
        assert results["run"]["hidden_source"] == "encrypted bundle hidden.bundle"

        wrong = tmp_path / "wrong"
        wrong.mkdir()
        done, outputs, _ = run_grade_step(student_repo, wrong, assignment="hw10",
                                          **{"hidden-tests": url, "hidden-tests-key": new_key()})
        assert done.returncode == 4 and "result" not in outputs
        assert "the key does not open this bundle" in done.stderr and "::error title=grader::" in done.stdout
    finally:
        server.shutdown()

"""Executing a notebook: the grader's way (sandbox, runner, records) vs `jupyter nbconvert --execute`.

Every way runs the same notebook (an example student's: load Fashion-MNIST, train a small CNN
briefly, evaluate, save) in this one process, interleaved, several rounds; the medians and the ratios
to nbconvert are printed. The machine is shared and noisy: read the ratios, not the seconds.

    python bench/notebooks.py [--rounds 3] [--notebook submissions/frank-mueller/hw10.ipynb]

Ways: `nbconvert` (the baseline: `jupyter nbconvert --to notebook --execute`, no sandbox, no limits);
`grader-plain` (the grader's runner without bubblewrap: `--allow-unsandboxed-code`); `grader-bwrap`
(the real thing, when bubblewrap works here). All three get the same offline Keras dataset cache
and `GRADER_EXECUTING=1`, so they run the same cells on the same data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from grader.inputs import datasets  # noqa: E402
from grader.worker.evaluate import Limits  # noqa: E402
from grader.sandbox.notebook_sandbox import NotebookContext, execute_notebook  # noqa: E402
from grader.inputs.rubric import NotebookPolicy  # noqa: E402
from grader.sandbox.isolation import detect_isolation  # noqa: E402
from grader.settings import project_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def nbconvert(notebook: Path, work: Path, keras_cache: Path) -> float:
    """The baseline, run as a teacher would by hand (same data cache, same environment variable)."""
    folder = work / "content"
    shutil.copytree(notebook.parent, folder)
    home = work / "home"
    (home / ".keras").mkdir(parents=True)
    (home / ".keras" / "datasets").symlink_to(keras_cache, target_is_directory=True)
    env = {**os.environ, "HOME": str(home), "KERAS_HOME": str(home / ".keras"), "GRADER_EXECUTING": "1", "MPLBACKEND": "Agg"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--output-dir",
                    str(work / "out"), "--ExecutePreprocessor.timeout=600", str(folder / notebook.name)],
                   check=True, env=env, capture_output=True)
    return time.perf_counter() - t0


def grader_way(notebook: Path, work: Path, ctx: NotebookContext) -> float:
    t0 = time.perf_counter()
    run, _ = execute_notebook(notebook, notebook.name, notebook.parent, work, ctx)
    seconds = time.perf_counter() - t0
    if run.status != "completed":
        raise SystemExit(f"the notebook did not complete ({ctx.isolation}): {run.message}\n{run.log_tail}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--notebook", default=str(ROOT / "submissions" / "frank-mueller" / "hw10.ipynb"))
    args = p.parse_args()
    notebook = Path(args.notebook).resolve()
    found = project_defaults(ROOT)
    spec = datasets.get_dataset("fashion-mnist")
    public = datasets.resolve_split(spec, "train", explicit_dir=found.get("public_data") or found.get("hidden_tests"),  # type: ignore[arg-type]
                                    project_root=ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        cache = datasets.write_keras_cache(spec, public, scratch / "cache")
        policy = NotebookPolicy(execute=True)
        ways = {"nbconvert": lambda w: nbconvert(notebook, w, cache),
                "grader-plain": lambda w: grader_way(notebook, w, NotebookContext(policy=policy, isolation="none", keras_cache=cache,
                                                                                   limits=Limits(), allow_unsandboxed_code=True))}
        if detect_isolation().kind == "bwrap":
            ways["grader-bwrap"] = lambda w: grader_way(notebook, w, NotebookContext(policy=policy, isolation="bwrap",
                                                                                      keras_cache=cache, limits=Limits()))
        times: dict[str, list[float]] = {name: [] for name in ways}
        for r in range(args.rounds):
            for name, way in ways.items():
                work = scratch / f"{name}-{r}"
                work.mkdir()
                times[name].append(way(work))
                print(f"round {r + 1} {name:13s} {times[name][-1]:7.2f} s", flush=True)
    base = statistics.median(times["nbconvert"])
    print(f"\n{notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook}, {args.rounds} rounds, medians:")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:13s} {med:7.2f} s   ratio to nbconvert {med / base:5.2f}")


if __name__ == "__main__":
    main()

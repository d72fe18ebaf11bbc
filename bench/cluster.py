"""Throughput of grading: the local executor at --jobs 1..J vs Ray workers (a Ray started on this machine
with 1..J CPUs), on a class of N copies of one small real CNN (each copy a distinct file, so nothing
comes from the evidence cache). Every configuration runs in this process, one after the other, and
prints submissions per minute and the ratio to the local executor at --jobs 1 measured in the same run.

    python bench/cluster.py [--students 8] [--max-jobs 2] [--data DIR]

Ray's figures include starting the local Ray (printed separately: it is paid once per run), starting
each node's zygote actor (the pre-imported TensorFlow that tasks fork their evaluations from), and
packing and unpacking every submission; on one machine Ray is expected to be slower than the local
executor; it pays off when there is more than one machine (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.pipeline import grade  # noqa: E402
from grader.inputs.rubric import load_rubric  # noqa: E402
from grader.settings import Settings, project_defaults  # noqa: E402


def make_class(folder: Path, students: int, data: Path) -> None:
    """`students` folders, each with the same small CNN trained once, saved with a different seed
    of its last bias so the files (and cache keys) differ but the work does not."""
    import keras
    import numpy as np

    from tests._class import keras3_cnn

    first = folder / "s00" / "cnn.keras"
    first.parent.mkdir(parents=True)
    keras3_cnn(data, first)
    model = keras.models.load_model(first)
    for i in range(1, students):
        weights = model.layers[-1].get_weights()
        weights[1] = weights[1] + np.float32(i * 1e-7)
        model.layers[-1].set_weights(weights)
        (folder / f"s{i:02d}").mkdir()
        model.save(folder / f"s{i:02d}" / "cnn.keras")


def run(path: Path, out: Path, data: Path, **kw: object) -> tuple[float, int]:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    settings = Settings(out=out, hidden_tests=data, download=False, cache=False, project_root=ROOT, **kw)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    outcome = grade(path, rubric, settings)
    seconds = time.perf_counter() - t0
    evaluated = sum(1 for s in outcome.results.students for m in s.evidence.models if m.status == "evaluated")
    return seconds, evaluated


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=8)
    p.add_argument("--max-jobs", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--data", type=Path, default=None, help="Fashion-MNIST folder (default: [tool.grader] hidden_tests)")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    data = args.data or Path(str(project_defaults(ROOT)["hidden_tests"]))
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "class"
        make_class(subs, args.students, data)
        rows: list[tuple[str, float, int]] = []
        for jobs in range(1, args.max_jobs + 1):
            rows.append((f"local --jobs {jobs}", *run(subs, Path(tmp) / f"local{jobs}", data, jobs=jobs)))
        if not args.no_ray:
            import ray

            t0 = time.perf_counter()
            ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
            ray.shutdown()
            print(f"starting and stopping a local Ray: {time.perf_counter() - t0:.1f} s")
            for workers in range(1, args.max_jobs + 1):  # grade() starts a Ray with `jobs` CPUs, then stops it
                rows.append((f"ray, {workers} worker(s)", *run(subs, Path(tmp) / f"ray{workers}", data, jobs=workers,
                                                               executor="ray")))
    base = rows[0][1]
    print(f"{args.students} submissions (one small CNN each), {os.cpu_count()} CPUs")
    print(f"{'configuration':24} {'seconds':>8} {'subs/min':>9} {'vs local -j1':>13} {'evaluated':>10}")
    for name, seconds, evaluated in rows:
        print(f"{name:24} {seconds:8.1f} {60 * args.students / seconds:9.1f} {base / seconds:12.2f}x {evaluated:10d}")


if __name__ == "__main__":
    main()

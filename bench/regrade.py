"""First grading of the example class vs re-grading it from the evidence cache.

Both runs happen in this process, one after the other, so the ratio is comparable even on a shared,
noisy machine. Usage: python bench/regrade.py [SUBMISSIONS] [--assignment hw10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from grader.pipeline import grade  # noqa: E402
from grader.inputs.rubric import load_rubric  # noqa: E402
from grader.settings import Settings, project_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("path", nargs="?", default=str(ROOT / "submissions"))
    p.add_argument("--assignment", default="hw10")
    args = p.parse_args()
    defaults = project_defaults(ROOT)
    rubric = load_rubric(ROOT / "rubrics" / f"{args.assignment}.yaml")
    with tempfile.TemporaryDirectory() as out:
        settings = Settings(out=Path(out), hidden_tests=defaults.get("hidden_tests"), project_root=ROOT)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        first = grade(args.path, rubric, settings)
        t1 = time.perf_counter()
        again = grade(args.path, rubric, settings)
        t2 = time.perf_counter()
    n = len(first.results.students)
    print(f"{n} submissions, {sum(len(s.evidence.models) for s in first.results.students)} models")
    print(f"first grading: {t1 - t0:8.2f} s  (gathered {first.gathered})")
    print(f"re-grading:    {t2 - t1:8.2f} s  (from cache {again.cached})")
    print(f"ratio first/re-grade: {(t1 - t0) / max(t2 - t1, 1e-9):.1f}x")


if __name__ == "__main__":
    main()

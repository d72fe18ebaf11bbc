"""Choosing a model's preprocessing with screening (grader.worker.adapt.shortlist) vs scoring every
candidate on the whole public sample, for the example class's models.

Both ways run in this process, one after the other, per model, so the ratio is comparable on a
shared, noisy machine. The hidden-test prediction that follows the choice is the same either way
and is included in both times, as in a real run. Screening saves time only when most candidates
score far below the best (a well-trained model); an untrained model keeps them all. Usage:

    python bench/screening.py [MODEL_FILE ...]     (default: the example models in submissions/)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from grader.worker import adapt  # noqa: E402
from grader.inputs import datasets
from grader.worker import evaluate as ev  # noqa: E402
from grader.facts.keras_file import inspect_model_file  # noqa: E402
from grader.pipeline import _public_sample  # noqa: E402
from grader.settings import project_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["submissions/alice-nguyen/cnn.keras", "submissions/frank-mueller/cnn32.keras",
           "submissions/alice-nguyen/vgg16_finetuned.h5"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=[str(ROOT / m) for m in DEFAULT])
    args = p.parse_args()
    data = project_defaults(ROOT).get("hidden_tests")
    hidden, _ = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=data, project_root=ROOT))
    public_x, public_y = datasets.load_split(datasets.resolve_split("fashion-mnist", "train", explicit_dir=data, project_root=ROOT))
    scaled = public_x.astype(np.float32) / 255.0
    stats = adapt.Stats(float(scaled.mean()), float(scaled.std()))
    sample_x, sample_y = _public_sample(public_x, public_y, 1000)
    screen_size = adapt.SCREEN_SIZE
    print(f"{'model':45} {'cands':>5} {'screened s':>10} {'all s':>8} {'ratio':>6}  same choice")
    with tempfile.TemporaryDirectory() as tmp:
        first = ev.WorkerModel(index=99, path=str(Path(args.models[0]).resolve()))
        ev.evaluate_one(first, hidden[:500], sample_x, sample_y, stats, Path(tmp), 256)  # warm-up, untimed
        for i, path in enumerate(args.models):
            if not Path(path).exists():
                print(f"{path}: missing (make example builds the VGG16 files)")
                continue
            item = ev.WorkerModel(index=i, path=str(Path(path).resolve()), keras_version=inspect_model_file(Path(path)).keras_version)
            times, picks = [], []
            for size in (screen_size, 10**9):  # 10**9: the sample is never large enough to screen
                adapt.SCREEN_SIZE = size
                t0 = time.perf_counter()
                result = ev.evaluate_one(item, hidden, sample_x, sample_y, stats, Path(tmp), 256)
                times.append(time.perf_counter() - t0)
                picks.append(result.candidate)
            adapt.SCREEN_SIZE = screen_size
            n = len(result.candidates)
            name = Path(path).relative_to(ROOT).as_posix() if Path(path).resolve().is_relative_to(ROOT) else path
            print(f"{name:45} {n:5d} {times[0]:10.1f} {times[1]:8.1f} {times[1] / times[0]:6.2f}  "
                  f"{picks[0] == picks[1]} ({picks[0]})", flush=True)


if __name__ == "__main__":
    main()

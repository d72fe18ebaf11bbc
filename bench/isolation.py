"""What isolation costs: N small real models evaluated three ways, in this run, on this machine.

- floor:    one warm worker process loads and predicts every model (no isolation, one import);
- naive:    a fresh `python` per submission, no sandbox (what the grader does with --sandbox none);
- isolated: a fresh bubblewrap sandbox (and interpreter) per submission (`Settings.zygote=False`);
- zygote:   a process per submission forked from a pre-imported worker in bubblewrap (the default).

Each model is a small CNN saved by Keras 3 (random weights: the cost of loading and predicting does
not depend on training). Every way predicts the same 10,000 hidden-test images and scores the same
1,000-image public sample, as a real run does. Usage: python bench/isolation.py [N] (default 30).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from grader.inputs import datasets  # noqa: E402
from grader.worker.evaluate import WorkerModel, WorkerRequest  # noqa: E402
from grader.pipeline import _public_sample  # noqa: E402
from grader.sandbox.isolation import detect_isolation, run_worker  # noqa: E402
from grader.sandbox.zygote import ZygotePool  # noqa: E402
from grader.settings import project_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_models(folder: Path, n: int) -> list[Path]:
    import keras

    paths = []
    for i in range(n):
        keras.utils.set_random_seed(i)
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(8 + i % 4 * 4, 3, activation="relu"),
                                  keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
        path = folder / f"student{i:02d}" / "cnn.keras"
        path.parent.mkdir(parents=True)
        model.save(path)
        paths.append(path)
    return paths


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    data = project_defaults(ROOT).get("hidden_tests")
    hidden, _ = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=data, project_root=ROOT))
    train_x, train_y = datasets.load_split(datasets.resolve_split("fashion-mnist", "train", explicit_dir=data, project_root=ROOT))
    sample_x, sample_y = _public_sample(train_x, train_y, 1000)
    isolation = detect_isolation("auto")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        inputs = root / "inputs"
        inputs.mkdir()
        for name, array in (("hidden_images", hidden), ("public_images", sample_x), ("public_labels", sample_y)):
            np.save(inputs / f"{name}.npy", array)
        models = build_models(root / "class", n)

        def request(items: list[tuple[int, Path]], out: Path) -> WorkerRequest:
            return WorkerRequest(models=tuple(WorkerModel(index=i, path=str(p)) for i, p in items),
                                 hidden_images=str(inputs / "hidden_images.npy"), public_images=str(inputs / "public_images.npy"),
                                 public_labels=str(inputs / "public_labels.npy"), stats_mean=0.286, stats_std=0.353,
                                 out_dir=str(out))

        def timed(label: str, runs: list[list[tuple[int, Path]]], kind: str) -> float:
            pool = ZygotePool(inputs, root / "slots", "cpu") if kind == "zygote" else None
            t0 = time.perf_counter()
            for k, items in enumerate(runs):
                out = root / f"{label}-{k}"
                if pool is not None:
                    outcome = pool.run(request(items, out), out, timeout=600)
                else:
                    outcome = run_worker(request(items, out), out, timeout=600, isolation=kind)  # type: ignore[arg-type]
                done = len(list(out.glob("result-*.json")))
                if outcome.kind != "ok" or done != len(items):
                    raise SystemExit(f"{label}: worker failed ({outcome.kind}): {outcome.log_tail[-500:]}")
            seconds = time.perf_counter() - t0
            if pool is not None:
                pool.close()
            print(f"{label:9} {seconds:8.1f} s  ({seconds / n:.2f} s per model)", flush=True)
            return seconds

        everything = [list(enumerate(models))]
        one_each = [[(i, p)] for i, p in enumerate(models)]
        print(f"{n} small CNNs, 10,000 hidden images + 1,000 public each; isolation available: {isolation.kind}")
        floor = timed("floor", everything, "none")
        naive = timed("naive", one_each, "none")
        print(f"naive / floor:    {naive / floor:.2f}x")
        if isolation.kind == "bwrap":
            isolated = timed("isolated", one_each, "bwrap")
            print(f"isolated / floor: {isolated / floor:.2f}x")
            zygote = timed("zygote", one_each, "zygote")
            print(f"zygote / floor:   {zygote / floor:.2f}x   (the grader's default; the zygote's start is included)")
        else:
            print(f"isolated: not measured ({isolation.detail})")


if __name__ == "__main__":
    main()

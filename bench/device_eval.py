"""Hidden-test evaluation through the grader vs a bare `model.predict`, on whatever device and Keras
backend this process has (KERAS_BACKEND=tensorflow|jax|torch; a GPU when the backend sees one).

For each model, in this run, after a warm-up: the grader's path as it predicts the hidden set
(`grader.worker.evaluate._predict(on_device=True)`: the adaptation as layers in front of the model, on its
device), the host path (numpy adaptation in memory-bounded chunks, what it did before), and a bare
`model.predict` on input adapted beforehand. Prints seconds, the ratio grader / bare (the target is
<= 1.2) and host / bare, and the accuracies, which must agree. Models are built here (VGG16 with weights=None: the cost of
predicting does not depend on the weights).

    python bench/device_eval.py [--data DIR] [--sizes 32 56 224] [--batch 256]

Sizes are the VGG16 input sizes; 224 takes hours on a CPU, minutes or less on a GPU.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from grader.worker import adapt  # noqa: E402
from grader.inputs import datasets
from grader.worker.evaluate import _predict  # noqa: E402
from grader.settings import project_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def models(sizes: list[int]) -> list[tuple[str, object]]:
    import keras

    keras.utils.set_random_seed(0)
    out: list[tuple[str, object]] = [("small CNN 28x28x1", keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax")]))]
    for size in sizes:
        base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
        out.append((f"VGG16 {size}x{size}x3", keras.Sequential([keras.Input((size, size, 3)), base, keras.layers.Flatten(),
                                                                keras.layers.Dense(10, activation="softmax")])))
    return out


def device_name() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return f"jax {jax.devices()[0].platform}: {jax.devices()[0].device_kind}"
        if backend == "torch":
            import torch

            return f"torch cuda: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "torch cpu"
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"tensorflow {'gpu' if gpus else 'cpu'}"
    except Exception as exc:  # noqa: BLE001 - a bench prints what it can
        return f"{backend} ({exc})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder with the Fashion-MNIST files (default: as the grader finds them)")
    p.add_argument("--sizes", type=int, nargs="*", default=[32], help="VGG16 input sizes (default 32)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--images", type=int, default=10000, help="hidden images to predict (default all 10,000)")
    args = p.parse_args()
    data = args.data or project_defaults(ROOT).get("hidden_tests")
    x, y = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=data, project_root=ROOT))
    x, y = x[: args.images], y[: args.images]
    stats = adapt.Stats(0.286, 0.353)
    print(f"device: {device_name()}; {len(x):,} hidden images; batch {args.batch}", flush=True)
    print(f"{'model':22} {'grader s':>9} {'host s':>8} {'bare s':>8} {'grader/bare':>11} {'host/bare':>9} "
          f"{'acc grader':>10} {'acc bare':>9}", flush=True)
    for name, model in models(args.sizes):
        shape = tuple(model.input_shape)  # type: ignore[attr-defined]
        cand = adapt.Candidate("as-is", "unit") if shape[1] == 28 else adapt.Candidate("resize", "unit")
        pre = np.concatenate([adapt.adapt(x[i : i + 2000], shape, cand, stats) for i in range(0, len(x), 2000)])
        model.predict(pre, batch_size=args.batch, verbose=0)  # type: ignore[attr-defined]  # warm-up: every batch shape traced
        _predict(model, x[: 2 * args.batch], shape, cand, stats, args.batch, on_device=True)  # warm-up of the front
        t0 = time.perf_counter()
        ours = _predict(model, x, shape, cand, stats, args.batch, on_device=True)
        t1 = time.perf_counter()
        _predict(model, x, shape, cand, stats, args.batch)
        t2 = time.perf_counter()
        bare = model.predict(pre, batch_size=args.batch, verbose=0)  # type: ignore[attr-defined]
        t3 = time.perf_counter()
        del pre
        acc_ours = float(np.mean(np.argmax(ours, 1) == y))
        acc_bare = float(np.mean(np.argmax(np.asarray(bare), 1) == y))
        g, h, b = t1 - t0, t2 - t1, t3 - t2
        print(f"{name:22} {g:9.2f} {h:8.2f} {b:8.2f} {g / b:11.2f} {h / b:9.2f} {acc_ours:10.4f} {acc_bare:9.4f}", flush=True)


if __name__ == "__main__":
    main()

"""Build the example classes: real Keras models trained on the PUBLIC Fashion-MNIST train split.

    python examples/make_class.py [--data DIR] [--only-missing] [--skip-large]

`submissions/` is the hw10 class, `submissions-hw9/` the hw9 class. Small models are committed;
the two VGG16 models (59 and 116 MB, random base since weights=None) are git-ignored and built by
`--only-missing` (what `make example` runs). Seeded, so a rebuild gives the same files' behaviour.
Data: found as the grader finds it (--data, $GRADER_HIDDEN_TESTS, [tool.grader] of pyproject.toml, caches).
Only the train split is read: t10k is the grader's hidden test set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HW10 = ROOT / "submissions"
HW9 = ROOT / "submissions-hw9"


def train_data(data: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """50,000 images to train on and 10,000 held out, all from the PUBLIC train split, found the
    way the grader finds data (--data, $GRADER_HIDDEN_TESTS, [tool.grader], caches, download)."""
    from grader.inputs.datasets import load_split, resolve_split
    from grader.settings import project_defaults

    if data is None:
        found = project_defaults(ROOT)
        data = found.get("public_data") or found.get("hidden_tests")  # type: ignore[assignment]
    x, y = load_split(resolve_split("fashion-mnist", "train", explicit_dir=data, project_root=ROOT))
    order = np.random.default_rng(0).permutation(len(x))
    return x[order[:50000]], y[order[:50000]], x[order[50000:]], y[order[50000:]]


def report(name: str, acc: float) -> None:
    print(f"  {name}: held-out accuracy {acc:.4f}", flush=True)


KAGGLE_HEAD = "fileName,date,description,status,publicScore,privateScore\n"


def keras3_models(data: str | None) -> None:
    import keras

    L = keras.layers
    xt, yt, xh, yh = train_data(data)
    keras.utils.set_random_seed(10)

    def fit(model, x, y, xv, epochs, batch=128):  # type: ignore[no-untyped-def]
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x, y, epochs=epochs, batch_size=batch, verbose=0)
        return model.evaluate(xv, yh, verbose=0)[1]

    # alice: a CNN good enough for 0.91
    d = HW10 / "alice-nguyen"
    d.mkdir(parents=True, exist_ok=True)
    cnn = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                            L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(), L.Dropout(0.3),
                            L.Dense(64, activation="relu"), L.Dense(10, activation="softmax")])
    report("alice-nguyen/cnn.keras", fit(cnn, xt[..., None] / 255.0, yt, xh[..., None] / 255.0, epochs=6))
    cnn.save(d / "cnn.keras")
    (d / "kaggle_submissions.csv").write_text(KAGGLE_HEAD + "cnn.csv,2026-03-01 10:12:00,own cnn,complete,0.9102,\n"
                                              "vgg.csv,2026-03-02 18:40:00,vgg16 fine-tuned,complete,0.8735,\n")

    # carol: only a dense network (no CNN, no VGG16)
    d = HW10 / "carol-smith"
    d.mkdir(parents=True, exist_ok=True)
    mlp = keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
    report("carol-smith/mlp.h5", fit(mlp, xt / 255.0, yt, xh / 255.0, epochs=3))
    mlp.save(d / "mlp.h5")

    # dave: a CNN inside a zip, a corrupt VGG16 file, a note
    d = HW10 / "dave-okafor"
    d.mkdir(parents=True, exist_ok=True)
    small = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                              L.Dense(10, activation="softmax")])
    report("dave-okafor/models.zip!cnn.keras", fit(small, xt[..., None] / 255.0, yt, xh[..., None] / 255.0, epochs=2))
    tmp = d / "cnn.keras"
    small.save(tmp)
    with zipfile.ZipFile(d / "models.zip", "w") as zf:
        zf.write(tmp, "models/cnn.keras")
    tmp.unlink()
    mlp.save(d / "full.h5")
    (d / "vgg16_final.h5").write_bytes((d / "full.h5").read_bytes()[:65536])  # an upload cut short
    (d / "full.h5").unlink()
    (d / "notes.txt").write_text("My VGG16 model is vgg16_final.h5 (the upload from Colab was slow).\n")

    # erin: forgot to upload
    d = HW10 / "erin-garcia"
    d.mkdir(parents=True, exist_ok=True)
    (d / "README.md").write_text("forgot to upload\n")

    # frank: raw pixels into a Rescaling layer at 32x32x1
    d = HW10 / "frank-mueller"
    d.mkdir(parents=True, exist_ok=True)
    pad = lambda x: np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None].astype("float32")  # noqa: E731
    raw = keras.Sequential([keras.Input((32, 32, 1)), L.Rescaling(1 / 255.0), L.Conv2D(32, 3, activation="relu"),
                            L.MaxPooling2D(), L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Flatten(),
                            L.Dense(10, activation="softmax")])
    report("frank-mueller/cnn32.keras", fit(raw, pad(xt), yt, pad(xh), epochs=3))
    raw.save(d / "cnn32.keras")

    # hw9
    d = HW9 / "gina-rossi"
    d.mkdir(parents=True, exist_ok=True)
    flat = keras.Sequential([keras.Input((784,)), L.Dense(256, activation="relu"), L.Dense(128, activation="relu"),
                             L.Dense(10, activation="softmax")])
    report("hw9 gina-rossi/mlp.keras", fit(flat, xt.reshape(-1, 784) / 255.0, yt, xh.reshape(-1, 784) / 255.0, epochs=5))
    flat.save(d / "mlp.keras")
    d = HW9 / "ivan-petrov"
    d.mkdir(parents=True, exist_ok=True)
    report("hw9 ivan-petrov/model.keras (uses Conv2D)", fit(small, xt[..., None] / 255.0, yt, xh[..., None] / 255.0, epochs=1))
    small.save(d / "model.keras")


def keras2_models(data: str | None) -> None:
    """Files saved by tf_keras, the Keras 2 API that Colab used until 2024."""
    import tf_keras as k

    L = k.layers
    xt, yt, xh, yh = train_data(data)
    k.utils.set_random_seed(20)
    d = HW10 / "bob-kowalski"
    d.mkdir(parents=True, exist_ok=True)
    cnn = k.Sequential([L.Conv2D(16, 3, activation="relu", input_shape=(28, 28, 1)), L.MaxPooling2D(), L.Flatten(),
                        L.Dense(32, activation="relu"), L.Dense(10, activation="softmax")])
    cnn.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    cnn.fit(xt[..., None] / 255.0, yt, epochs=3, batch_size=128, verbose=0)
    report("bob-kowalski/cnn.h5 (Keras 2)", cnn.evaluate(xh[..., None] / 255.0, yh, verbose=0)[1])
    cnn.save(d / "cnn.h5")
    (d / "kaggle_submissions.csv").write_text(KAGGLE_HEAD + "a.csv,2026-03-01 09:00:00,cnn v1,complete,0.88,\n"
                                              "b.csv,2026-03-01 21:00:00,cnn v2,complete,0.90,\n"
                                              "c.csv,2026-03-03 11:00:00,vgg16 frozen,complete,0.83,\n")
    d = HW9 / "hugo-lefevre"
    d.mkdir(parents=True, exist_ok=True)
    mean, std = float((xt / 255.0).mean()), float((xt / 255.0).std())
    norm = lambda x: ((x / 255.0 - mean) / std).astype("float32")  # noqa: E731
    mlp = k.Sequential([L.Flatten(input_shape=(28, 28)), L.Dense(256, activation="relu"), L.Dropout(0.2),
                        L.Dense(10, activation="softmax")])
    mlp.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    mlp.fit(norm(xt), yt, epochs=4, batch_size=128, verbose=0)
    report("hw9 hugo-lefevre/mlp.h5 (Keras 2, standardised inputs)", mlp.evaluate(norm(xh), yh, verbose=0)[1])
    mlp.save(d / "mlp.h5")


def _vgg_data(data: str | None, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    xt, yt, _, _ = train_data(data)
    x = np.repeat(np.pad(xt[:n], ((0, 0), (2, 2), (2, 2)))[..., None], 3, axis=-1).astype("float32") / 255.0
    return x, yt[:n]


def vgg_keras3(data: str | None) -> None:
    """alice: VGG16 base nested in a Sequential, blocks 1-4 frozen, block5 fine-tuned (Keras 3 .h5)."""
    import keras

    keras.utils.set_random_seed(30)
    base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    for layer in base.layers:
        layer.trainable = layer.name.startswith("block5")
    model = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
    x, y = _vgg_data(data)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.save(HW10 / "alice-nguyen" / "vgg16_finetuned.h5")
    print("  alice-nguyen/vgg16_finetuned.h5 built", flush=True)


def vgg_keras2(data: str | None) -> None:
    """bob: VGG16 frozen feature extractor nested in a Sequential, saved by tf_keras (Keras 2)."""
    import tf_keras as k

    k.utils.set_random_seed(40)
    base = k.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    base.trainable = False
    model = k.Sequential([base, k.layers.Flatten(), k.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = _vgg_data(data)
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    model.save(HW10 / "bob-kowalski" / "vgg16_frozen.h5")
    print("  bob-kowalski/vgg16_frozen.h5 built", flush=True)


def lambda_keras3(data: str | None) -> None:
    """grace: a Lambda layer that repeats the gray channel and resizes to 32×32 (as many hw10 hand-ins
    do before a VGG-style network). Loading it runs her code: graded only inside the sandbox."""
    import keras

    xt, yt, xh, yh = train_data(data)
    keras.utils.set_random_seed(50)
    L = keras.layers
    # written as in a notebook, where `keras` is a global name (here it would be a closure variable)
    resize = eval("lambda t: keras.ops.image.resize(keras.ops.repeat(t, 3, axis=-1), (32, 32))", {"keras": keras})  # noqa: S307
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        L.Lambda(resize),
        L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(),
        L.Flatten(), L.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(xt[..., None] / 255.0, yt, epochs=2, batch_size=128, verbose=0)
    report("grace-lee/cnn_lambda.keras (Lambda resize)", model.evaluate(xh[..., None] / 255.0, yh, verbose=0)[1])
    d = HW10 / "grace-lee"
    d.mkdir(parents=True, exist_ok=True)
    model.save(d / "cnn_lambda.keras")


LARGE = {"alice-nguyen/vgg16_finetuned.h5": "vgg3", "bob-kowalski/vgg16_frozen.h5": "vgg2"}
def notebooks(data: str | None) -> None:
    """Every student's notebook (examples/class_notebooks.py): text only, nothing trained here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from class_notebooks import write_all

    write_all(HW10, HW9)


STEPS = {"notebooks": notebooks, "small3": keras3_models, "small2": keras2_models, "lambda3": lambda_keras3, "vgg3": vgg_keras3, "vgg2": vgg_keras2}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data")
    p.add_argument("--only-missing", action="store_true", help="build only files that are not there (the large VGG16 models)")
    p.add_argument("--skip-large", action="store_true", help="do not build the two VGG16 models")
    p.add_argument("--step", choices=sorted(STEPS), help=argparse.SUPPRESS)
    args = p.parse_args()
    data = args.data
    if args.step:  # one step per process: Keras 3 and tf_keras are not mixed in one interpreter
        STEPS[args.step](data)
        return
    steps = []
    if not args.only_missing:
        for folder in (HW10, HW9):
            for sub in folder.glob("*/"):
                shutil.rmtree(sub)
        steps += ["small3", "small2", "lambda3", "notebooks"]
    if not args.skip_large:
        steps += [step for path, step in LARGE.items() if not args.only_missing or not (HW10 / path).exists()]
    for step in steps:
        subprocess.run([sys.executable, __file__, "--step", step, *(["--data", data] if data else [])], check=True)


if __name__ == "__main__":
    main()

"""Build the image-folder example classes: cv4 (a Kaggle InClass competition) and flowers (a contest
of TensorFlow Lite models), on generated images (tests/_images.py: drawn, seeded; no download).

    python examples/make_image_classes.py [--only-missing]

Writes (all git-ignored except the students' small files, which are committed):
- hidden_tests/cv4/{train,test}/<class>/*.png: 80 public and 20 hidden images per class, 128×128 RGB;
- submissions-cv4/: three students (own CNN, a VGG16-based model with random weights, Kaggle lists);
  the VGG16 model (59 MB) is git-ignored and built here;
- hidden_tests/flowers/{train,test}/<class>/*.png: 80 public and 16 hidden photos per class;
- submissions-flowers/: three groups, each a .tflite model (float; int8-quantised; a "Model Maker"-like
  export whose labels list the classes in another order), converted here from small Keras CNNs.
Then: grade submissions-cv4/ --assignment cv4; grade submissions-flowers/ --assignment flowers
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests._images import CV4_CLASSES, FLOWER_CLASSES, as_arrays, write_folder  # noqa: E402
from tests._tflite import to_tflite  # noqa: E402

KAGGLE_HEAD = "fileName,date,description,status,publicScore,privateScore\n"


def data(name: str, classes: tuple[str, ...], kind: str, train: int, test: int) -> Path:
    root = ROOT / "hidden_tests" / name
    if not (root / "test").is_dir():
        write_folder(root / "train", classes, train, seed=1, kind=kind)
        write_folder(root / "test", classes, test, seed=2, kind=kind)
        print(f"  hidden_tests/{name}: {train} public and {test} hidden images per class", flush=True)
    return root


def cnn(input_size: int, classes: int, width: int = 16):  # type: ignore[no-untyped-def]
    import keras

    L = keras.layers
    return keras.Sequential([
        keras.Input((input_size, input_size, 3)), L.Rescaling(1 / 255.0),
        L.Conv2D(width, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(2 * width, 3, activation="relu"), L.MaxPooling2D(),
        L.Conv2D(2 * width, 3, activation="relu"), L.GlobalAveragePooling2D(),
        L.Dense(classes, activation="softmax"),
    ])


def fit(model, x, y, epochs: int) -> float:  # type: ignore[no-untyped-def]
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0, validation_split=0.2)
    return float(history.history["val_accuracy"][-1])


def cv4(only_missing: bool) -> None:
    import keras

    root = data("cv4", CV4_CLASSES, "cv4", 80, 20)
    x, y = as_arrays(root / "train", CV4_CLASSES, 128)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    subs = ROOT / "submissions-cv4"
    students = {
        "ada-lovelace": [("cnn.keras", 25), ("vgg16_finetuned.h5", None)],
        "ben-carter": [("cnn.keras", 4)],
        "chen-wei": [("my_cnn.keras", 12), ("transfer.keras", 8)],
    }
    keras.utils.set_random_seed(4)
    for student, models in students.items():
        folder = subs / student
        folder.mkdir(parents=True, exist_ok=True)
        for name, epochs in models:
            path = folder / name
            if only_missing and path.exists():
                continue
            if name == "vgg16_finetuned.h5":  # VGG16 as the convolutional base, random weights (no download here)
                base = keras.applications.VGG16(weights=None, include_top=False, input_shape=(128, 128, 3))
                base.trainable = True
                for layer in base.layers[:-4]:
                    layer.trainable = False
                model = keras.Sequential([keras.Input((128, 128, 3)), keras.layers.Rescaling(1 / 255.0), base,
                                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(6, activation="softmax")])
                acc = fit(model, x, y, 3)
            elif name == "transfer.keras":  # MobileNetV2 base (random weights), frozen; 9 MB, git-ignored
                base = keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(96, 96, 3))
                base.trainable = False
                model = keras.Sequential([keras.Input((96, 96, 3)), keras.layers.Rescaling(1 / 127.5, offset=-1), base,
                                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(6, activation="softmax")])
                xs = keras.ops.image.resize(x, (96, 96))
                acc = fit(model, np.asarray(xs), y, epochs)
            else:
                model = cnn(128, 6)
                acc = fit(model, x, y, epochs)
            if name.endswith(".h5"):
                model.save(path, include_optimizer=False)  # 59 MB instead of 116 MB
            else:
                model.save(path)
            print(f"  submissions-cv4/{student}/{name}: validation accuracy {acc:.3f}", flush=True)
    lists = {
        "ada-lovelace": ["sub_cnn.csv,2026-03-01 10:00:00.000000,cnn.keras,SubmissionStatus.COMPLETE,0.61,0.60",
                         "sub_vgg.csv,2026-03-02 18:30:00.000000,vgg16_finetuned.h5 fine-tuned,SubmissionStatus.COMPLETE,0.78,0.77"],
        "ben-carter": ["a.csv,2026-03-01 09:00:00.000000,first try,SubmissionStatus.COMPLETE,0.40,0.41",
                       "b.csv,2026-03-01 09:30:00.000000,second,SubmissionStatus.ERROR,,",
                       "c.csv,2026-03-02 12:00:00.000000,cnn.keras,SubmissionStatus.COMPLETE,0.45,0.44",
                       "d.csv,2026-03-03 12:00:00.000000,cnn.keras more epochs,SubmissionStatus.COMPLETE,0.47,0.46"],
        "chen-wei": ["t1.csv,2026-03-02 08:00:00.000000,transfer.keras,SubmissionStatus.COMPLETE,0.66,0.64",
                     "t2.csv,2026-03-02 20:00:00.000000,transfer.keras v2,SubmissionStatus.COMPLETE,0.70,0.69"],
    }
    for student, rows in lists.items():
        (subs / student / "kaggle_submissions.csv").write_text(KAGGLE_HEAD + "\n".join(rows) + "\n")


def _with_labels(model: bytes, labels: list[str]) -> bytes:
    """A zip holding labels.txt appended to the model, as TFLite Model Maker / TFLite Support pack it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("labels.txt", "\n".join(labels) + "\n")
    return model + buffer.getvalue()


def flowers(only_missing: bool) -> None:
    import keras

    root = data("flowers", FLOWER_CLASSES, "flowers", 80, 16)
    x, y = as_arrays(root / "train", FLOWER_CLASSES, 96)
    order = np.random.default_rng(1).permutation(len(x))
    x, y = x[order], y[order]
    subs = ROOT / "submissions-flowers"
    keras.utils.set_random_seed(5)
    groups = {"group-daisies": ("flowers.tflite", 25, "float"), "group-roses": ("model_int8.tflite", 15, "int8"),
              "group-tulips": ("model.tflite", 10, "maker")}
    for group, (name, epochs, kind) in groups.items():
        folder = subs / group
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if only_missing and path.exists():
            continue
        if kind == "maker":  # trained with the classes in another order, as its labels say
            shuffled = ["tulips", "daisy", "roses", "dandelion", "sunflowers"]
            remap = np.array([shuffled.index(c) for c in FLOWER_CLASSES])
            model = cnn(96, 5, width=8)
            acc = fit(model, x, remap[y], epochs)
            path.write_bytes(_with_labels(to_tflite(model), shuffled))
        else:
            model = cnn(96, 5)
            acc = fit(model, x, y, epochs)
            path.write_bytes(to_tflite(model, "uint8" if kind == "int8" else None, x))
        (folder / "training_log.md").write_text(f"# {group}\n\n| model | epochs | val. accuracy |\n| --- | --- | --- |\n"
                                                f"| small CNN 96×96 | {epochs} | {acc:.3f} |\n")
        print(f"  submissions-flowers/{group}/{name}: validation accuracy {acc:.3f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only-missing", action="store_true", help="build only the files that are not there")
    args = p.parse_args()
    cv4(args.only_missing)
    flowers(args.only_missing)


if __name__ == "__main__":
    main()

"""Compare the accuracy the grader reported for each model with Keras's own `model.evaluate`.

    python examples/check_accuracy.py [SUBMISSIONS] [--results reports/hw10/results.json]

For every model the grader evaluated, this loads the file again (with the loader the grader used),
feeds the hidden test images with the preprocessing the grader chose, and calls
`model.evaluate(x, y)` with Keras's accuracy metric. The grader's figure comes from its own
pipeline (worker process, chunked `predict`, argmax and scikit-learn in the parent); the two should
agree to rounding. Loading runs the model file's code, so only use it on the example class.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from grader.worker import adapt  # noqa: E402
from grader.inputs import datasets
from grader.worker.evaluate import _load  # noqa: E402
from grader.settings import project_defaults  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def model_file(submissions: Path, student: str, label: str, tmp: Path) -> Path:
    """The file behind a report label; `x.zip!inner/model.keras` is extracted to `tmp`."""
    if "!" not in label:
        return submissions / student / label
    archive, member = label.split("!", 1)
    with zipfile.ZipFile(submissions / student / archive) as zf:
        target = tmp / student / Path(member).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(member))
    return target


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", nargs="?", default=str(ROOT / "submissions"))
    p.add_argument("--results", default=str(ROOT / "reports" / "hw10" / "results.json"))
    args = p.parse_args()
    results = json.loads(Path(args.results).read_text())
    data = project_defaults(ROOT).get("hidden_tests")
    x_test, y_test = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=data, project_root=ROOT))
    x_train = datasets.load_split(datasets.resolve_split("fashion-mnist", "train", explicit_dir=data, project_root=ROOT))[0]
    scaled = x_train.astype(np.float32) / 255.0
    stats = adapt.Stats(float(scaled.mean()), float(scaled.std()))
    print(f"{'student':15} {'model':30} {'grader':>8} {'evaluate':>9} {'diff':>8}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for student in results["students"]:
            for m in student["evidence"]["models"]:
                if m["status"] != "evaluated":
                    continue
                path = model_file(Path(args.submissions), student["student"], m["path"], Path(tmp))
                arch = m.get("architecture") or {}
                model, _, _ = _load(str(path), arch.get("keras_version"), runs_code=bool(arch.get("code_layers")))
                prep = m["preprocessing"]
                x = adapt.adapt(x_test, prep["input_shape"], adapt.Candidate(prep["geometry"], prep["scale"]), stats)
                model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
                acc = float(model.evaluate(x, y_test.astype("int64"), batch_size=256, verbose=0)[1])
                diff = acc - m["metrics"]["accuracy"]
                worst = max(worst, abs(diff))
                print(f"{student['student']:15} {m['path']:30} {m['metrics']['accuracy']:8.4f} {acc:9.4f} {diff:+8.5f}", flush=True)
    print(f"largest difference: {worst:.5f}")


if __name__ == "__main__":
    main()

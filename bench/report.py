"""Rendering the HTML pages of a class: first render (every chart drawn) vs re-render (charts from the
chart cache, as after a rubric change), against the JSON sink of the same results as the baseline.

A synthetic class of N students (default 120), each with two models whose confusion matrices differ
(so no chart is shared) and a notebook with two training histories: about 4 charts a student. All
three runs happen in this process, one after the other. Usage: python bench/report.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.records.evidence import ClassMetrics, Evidence, History, Metrics, NotebookEvidence  # noqa: E402
from grader.judging.judge import judge  # noqa: E402
from grader.report import write_reports  # noqa: E402
from grader.records.results import RunInfo  # noqa: E402
from grader.inputs.rubric import load_rubric  # noqa: E402
from tests._evidence import CNN, NAMES, arch, model, vgg16  # noqa: E402


def _metrics(rng: np.random.Generator) -> Metrics:
    labels = np.repeat(np.arange(10), 1000)
    wrong = rng.random(10000) < rng.uniform(0.05, 0.3)
    predicted = np.where(wrong, rng.integers(0, 10, 10000), labels)
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (labels, predicted), 1)
    recall = confusion.diagonal() / 1000
    per_class = tuple(ClassMetrics(label=i, name=NAMES[i], precision=float(recall[i]), recall=float(recall[i]),
                                   f1=float(recall[i]), support=1000) for i in range(10))
    return Metrics(accuracy=float(np.mean(predicted == labels)), n=10000, macro_f1=float(recall.mean()), per_class=per_class,
                   confusion=tuple(tuple(int(v) for v in row) for row in confusion))


def _history(rng: np.random.Generator, cell: int, epochs: int) -> History:
    curve = np.cumsum(rng.uniform(0.01, 0.05, epochs))
    return History(cell=cell, epochs=epochs, metrics={"loss": tuple(1 - curve), "accuracy": tuple(0.5 + curve),
                                                      "val_loss": tuple(1.05 - curve), "val_accuracy": tuple(0.48 + curve)})


def _class(n: int) -> list[Evidence]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        cnn = model("cnn.keras", arch(*CNN), 0.9).model_copy(update={"metrics": _metrics(rng)})
        vgg = model("vgg.h5", arch(*CNN, bases=(vgg16(trainable=3, frozen=10),)), 0.8).model_copy(update={"metrics": _metrics(rng)})
        nb = NotebookEvidence(path="hw10.ipynb", histories=(_history(rng, 3, 10), _history(rng, 5, 5)))
        out.append(Evidence(student=f"student-{i:03d}", models=(cnn, vgg), notebooks=(nb,), dataset="fashion-mnist"))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    run = RunInfo(grader_version="bench", started="2026-12-01T00:00:00+00:00", rubric_path="rubrics/hw10.yaml",
                  dataset="fashion-mnist", hidden_size=10000)
    results = judge(rubric, _class(n), run=run)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        write_reports(results, out, ["json", "csv"])
        t1 = time.perf_counter()
        pages = write_reports(results, out, ["html"])
        t2 = time.perf_counter()
        write_reports(results, out, ["html"])
        t3 = time.perf_counter()
        charts = len(list((out / ".charts").glob("*.svg")))
        size = sum(p.stat().st_size for p in pages) / len(pages) / 1024
    base, first, again = t1 - t0, t2 - t1, t3 - t2
    print(f"{n} students, {len(pages)} pages (average {size:.0f} KB), {charts} distinct charts")
    print(f"baseline json+csv sinks:     {base:8.2f} s")
    print(f"html, first render:          {first:8.2f} s  ({first / max(base, 1e-9):.0f}x baseline, "
          f"{1000 * first / max(charts, 1):.0f} ms per chart incl. pages)")
    print(f"html, re-render (cached):    {again:8.2f} s  ({again / max(base, 1e-9):.0f}x baseline)")
    print(f"ratio first/re-render: {first / max(again, 1e-9):.1f}x")


if __name__ == "__main__":
    main()

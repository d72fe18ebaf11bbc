"""find_similar on a synthetic class vs the naive per-pair loop over prediction vectors.

The class: N students with 2 evaluated models each (10,000 hidden labels per model, ~9% errors that
concentrate on hard images and go mostly to one confusable class, as on Fashion-MNIST) and a notebook
of ~300 code fingerprints (starter code and common boilerplate included). A few copies are planted
so that the flags found can be checked. The baseline, `np.mean(a == b)` for every pair of models
of different students, runs in the same process; when it would take more than --baseline-budget
seconds it runs on a prefix of the pairs and is extrapolated (the output says so).
Usage: python bench/similarity.py [--students 500] [--images 10000] [--seed 0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from grader.records.evidence import Evidence, ModelEvidence, NotebookEvidence
from grader.records.evidence import decode_labels, encode_labels
from grader.judging.similarity import find_similar

COPIES = 3  # planted pairs of each kind


def _labels(rng: np.random.Generator, models: int, images: int) -> np.ndarray:
    truth = rng.integers(0, 10, images)
    partner = (truth + rng.integers(1, 10, images)) % 10  # the class each image is mistaken for
    hardness = rng.beta(0.3, 3.0, images)  # mean ~0.09, a long tail of very hard images
    wrong = rng.random((models, images)) < hardness[None, :]
    random_class = (truth[None, :] + rng.integers(1, 10, (models, images))) % 10
    mistaken = np.where(rng.random((models, images)) < 0.7, partner[None, :], random_class)
    return np.where(wrong, mistaken, truth[None, :]).astype(np.uint8)


def _class(students: int, images: int, seed: int) -> list[Evidence]:
    rng = np.random.default_rng(seed)
    labels = _labels(rng, 2 * students, images)
    for k in range(COPIES):  # student k's first model copied by student students-1-k, a few labels changed
        copy = labels[2 * k].copy()
        flip = rng.choice(images, 3 + k, replace=False)
        copy[flip] = (copy[flip] + 1) % 10
        labels[2 * (students - 1 - k)] = copy
    starter = rng.integers(-(2**63), 2**63 - 1, 40, dtype=np.int64)
    boilerplate = rng.integers(-(2**63), 2**63 - 1, 60, dtype=np.int64)
    notebooks = []
    for s in range(students):
        own = rng.integers(-(2**63), 2**63 - 1, 230, dtype=np.int64)
        common = boilerplate[rng.random(60) < 0.6]
        notebooks.append(np.concatenate([starter, common, own]))
    for k in range(COPIES):
        notebooks[students - 1 - k - COPIES] = notebooks[k + COPIES].copy()
    evidences = []
    for s in range(students):
        models = tuple(
            ModelEvidence(path=f"model{m}.h5", size_bytes=1000, sha256=f"{s:032x}{m:032x}", status="evaluated",
                          predicted=encode_labels(labels[2 * s + m]))
            for m in range(2))
        nb = NotebookEvidence(path="hw.ipynb", code_fingerprints=tuple(sorted({int(v) for v in notebooks[s]})))
        evidences.append(Evidence(student=f"student{s:04d}", models=models, notebooks=(nb,)))
    return evidences


def _baseline(evidences: list[Evidence], budget: float) -> tuple[float, int, int]:
    """Seconds of the naive loop over all cross-student model pairs (measured or extrapolated)."""
    vectors = [(e.student, decode_labels(m.predicted or "")) for e in evidences for m in e.models]
    total = sum(1 for i in range(len(vectors)) for j in range(i + 1, len(vectors)) if vectors[i][0] != vectors[j][0])
    done = 0
    t0 = time.perf_counter()
    for i, (si, a) in enumerate(vectors):
        for sj, b in vectors[i + 1:]:
            if si != sj:
                np.mean(a == b)
                done += 1
        elapsed = time.perf_counter() - t0
        if elapsed > min(2.0, budget) and elapsed > budget * done / total:  # on course to exceed the budget
            break
    seconds = time.perf_counter() - t0
    return seconds * total / done, done, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--students", type=int, default=500)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=3, help="runs of find_similar (the median is shown)")
    p.add_argument("--baseline-budget", type=float, default=60.0, help="seconds before the baseline is extrapolated")
    args = p.parse_args()
    evidences = _class(args.students, args.images, args.seed)
    models_only = [e.model_copy(update={"notebooks": ()}) for e in evidences]
    notebooks_only = [e.model_copy(update={"models": ()}) for e in evidences]
    n_models = sum(len(e.models) for e in evidences)
    n_prints = sum(len(nb.code_fingerprints) for e in evidences for nb in e.notebooks)
    print(f"{args.students} students, {n_models} models x {args.images:,} labels, "
          f"{args.students} notebooks ({n_prints / args.students:.0f} fingerprints each)")

    flags = find_similar(evidences)
    everything, models, notebooks = (_median_seconds(find_similar, e, args.repeat)
                                     for e in (evidences, models_only, notebooks_only))
    baseline, done, total = _baseline(evidences, args.baseline_budget)

    kinds = {kind: sum(f.kind == kind for f in flags) for kind in ("predictions", "notebook_code")}
    print(f"find_similar, everything:   {everything:8.2f} s  (median of {args.repeat}; flags: {kinds['predictions']} "
          f"predictions, {kinds['notebook_code']} notebook_code; planted {COPIES} + {COPIES})")
    print(f"find_similar, models only:  {models:8.2f} s")
    print(f"find_similar, notebooks:    {notebooks:8.2f} s")
    how = "measured" if done == total else f"extrapolated from {done:,} of {total:,} pairs"
    print(f"naive per-pair loop:        {baseline:8.2f} s  ({total:,} model pairs, np.mean(a == b) each; {how})")
    print(f"ratio naive/find_similar (models only): {baseline / max(models, 1e-9):.1f}x")


def _median_seconds(fn: Callable[[list[Evidence]], object], evidences: list[Evidence], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(evidences)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


if __name__ == "__main__":
    main()

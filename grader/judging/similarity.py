"""Similarity between students' submissions: pairs that match more than independent work would.

Judging side and pure: no I/O, no clock, no randomness; the same evidences give the same flags in
the same order. A flag is for the teacher to look at, never a penalty and never on a student's page.
Only pairs of DIFFERENT students are compared (a student's own files may well match each other).

Kinds, in the order they are reported (then by strength, strongest first, then by students):

- ``identical_file``: two students handed in a model file with the same sha256.
- ``same_weights``: the same `weights_fingerprint` (grader.facts.fingerprints: a hash over the sorted
  weight tensors) in files of different sha256: the same trained model renamed or re-saved.
- ``predictions``: two models whose predicted classes on the hidden test set are nearly the same.
  Agreement alone says little: two independent 90% Fashion-MNIST CNNs agree on some 90-94% of the
  images, because both get the easy ones right. What independent work does not produce is a
  DISAGREEMENT rate far below the class's own. So, per length of the prediction vectors, every
  cross-student pair's disagreement is computed and a pair is flagged when
    (a) its agreement is at least `agreement_always` (99.5%) on at least `always_min_images` (1,000)
        images, whatever the class: below 50 differing images in 10,000 is not chance; or
    (b) the class has at least `min_class` students with comparable vectors and at least
        `outlier_min_images` images, and the pair's disagreement is below the median pair's divided
        by `outlier_factor` (10): with a median of 8% that is under 0.8% (80 of 10,000 images); in
        a weak class (median 20%) under 2%, which catches a copy trained a little further, whose
        predictions drift by more than the 0.5% of (a).
  A model whose most common predicted class covers more than `degenerate_share` of the images is
  not compared: two broken models that both answer "Bag" for everything agree by construction.
  A pair of files already flagged as identical or with the same weights is not reported again, and
  each model takes part in at most one flag per pair of students (the strongest).
  The class statistic is exact: every pair's disagreement is counted with a few matrix products
  (see `_disagreements`), so 1,000 models of 10,000 images take well under a second.
- ``notebook_code``: winnowed code fingerprints (grader.facts.fingerprints.code_fingerprints) shared by
  two students' notebooks. Fingerprints of the teacher's starter code (`starter_fingerprints`) are
  removed first and so, when at least `min_class` students have notebooks, are fingerprints found in
  the notebooks of more than `boilerplate_share` (half) of them: shared boilerplate, not copying.
  A pair is flagged when its Jaccard overlap (shared / union) is at least `code_overlap` (0.5) with
  at least `code_overlap_min_shared` (10) shared fingerprints, or when at least `code_containment`
  (80%) of the smaller notebook's fingerprints, and at least `code_containment_min` (30) of them,
  are in the other (a copied notebook padded with extra cells). Strength: the Jaccard overlap, or
  the containment when that rule flagged it. Shared fingerprints are counted with an inverted index
  in matrix form (a sparse notebooks x fingerprints incidence matrix times its transpose), so only
  pairs that share something cost anything.

Model files held by more than `boilerplate_share` of a class of at least `min_class` students, and
files whose sha256 or weights fingerprint is in `starter_files`, are material the teacher handed out:
never flagged, and not compared by predictions.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse
from pydantic import Field

from grader.records.frozen import Frozen
from grader.records.evidence import Evidence
from grader.records.evidence import decode_labels
from grader.records.results import SimilarityFlag, SimilarityKind

__all__ = ["SimilarityRules", "find_similar", "flags_for"]

_KIND_ORDER: dict[SimilarityKind, int] = {"identical_file": 0, "same_weights": 1, "predictions": 2, "notebook_code": 3}
_MAX_IMAGES = 1_000_000  # a prediction vector longer than this is not compared (hidden sets are ~10,000)
_DENSE_RANKS = 2  # per image, the most common predicted classes counted with dense products (_disagreements)


class SimilarityRules(Frozen):
    """The thresholds of `find_similar`; see the module docstring for why each has its default."""

    agreement_always: float = Field(0.995, ge=0.5, le=1.0)
    always_min_images: int = Field(1000, ge=1)
    outlier_factor: float = Field(10.0, gt=1.0)
    outlier_min_images: int = Field(500, ge=1)
    min_class: int = Field(4, ge=3)
    degenerate_share: float = Field(0.5, gt=0.0, le=1.0)
    boilerplate_share: float = Field(0.5, gt=0.0, le=1.0)
    code_overlap: float = Field(0.5, gt=0.0, le=1.0)
    code_overlap_min_shared: int = Field(10, ge=1)
    code_containment: float = Field(0.8, gt=0.0, le=1.0)
    code_containment_min: int = Field(30, ge=1)


@dataclass(frozen=True, order=True)
class _File:
    student: str
    path: str


def find_similar(evidences: Sequence[Evidence], *, starter_fingerprints: frozenset[int] = frozenset(),
                 starter_files: frozenset[str] = frozenset(),
                 rules: SimilarityRules = SimilarityRules()) -> tuple[SimilarityFlag, ...]:
    """Flags for pairs of different students whose submissions match more than independent work would.

    `starter_fingerprints`: code fingerprints of the starter notebook, ignored. `starter_files`:
    sha256 or weights fingerprints of model files the teacher handed out, ignored. Several evidences
    of the same student are taken together. Deterministic order: kind, strength (desc), students.
    """
    students = sorted({e.student for e in evidences})
    models = _models_by_student(evidences)
    file_flags, covered, handed_out = _file_flags(models, len(students), starter_files, rules)
    flags = [*file_flags, *_prediction_flags(models, covered, handed_out, rules),
             *_notebook_flags(evidences, starter_fingerprints, rules)]
    return tuple(sorted(flags, key=_order))


def flags_for(student: str, flags: Iterable[SimilarityFlag]) -> tuple[SimilarityFlag, ...]:
    """The flags that involve `student`, in the order given."""
    return tuple(flag for flag in flags if student in flag.students)


def _order(flag: SimilarityFlag) -> tuple[int, float, tuple[str, str], tuple[str, str]]:
    return _KIND_ORDER[flag.kind], -flag.strength, flag.students, flag.what


def _flag(kind: SimilarityKind, a: _File, b: _File, strength: float, detail: str) -> SimilarityFlag:
    if b.student < a.student:
        a, b = b, a
    return SimilarityFlag(students=(a.student, b.student), kind=kind, strength=min(1.0, max(0.0, strength)),
                          what=(a.path, b.path), detail=detail)


@dataclass(frozen=True)
class _Model:
    file: _File
    sha256: str
    weights: str | None
    predicted: str | None


def _models_by_student(evidences: Sequence[Evidence]) -> dict[str, list[_Model]]:
    out: dict[str, list[_Model]] = defaultdict(list)
    seen: set[_File] = set()
    for evidence in evidences:
        for model in evidence.models:
            file = _File(evidence.student, model.path)
            if file in seen:
                continue
            seen.add(file)
            # an empty file (a placeholder) is the same for everyone and says nothing
            sha = model.sha256 if model.size_bytes > 0 else ""
            out[evidence.student].append(_Model(file, sha, model.weights_fingerprint, model.predicted))
    return {student: sorted(ms, key=lambda m: m.file.path) for student, ms in sorted(out.items())}


# ---------------------------------------------------------------------------------------------
# identical_file and same_weights


def _groups(models: Mapping[str, list[_Model]], key: str) -> dict[str, dict[str, list[_Model]]]:
    """value of `key` (sha256 / weights) -> student -> that student's models with it."""
    out: dict[str, dict[str, list[_Model]]] = defaultdict(lambda: defaultdict(list))
    for student, ms in models.items():
        for m in ms:
            value = getattr(m, key)
            if value:
                out[value][student].append(m)
    return out


def _file_flags(models: Mapping[str, list[_Model]], class_size: int, starter_files: frozenset[str],
                rules: SimilarityRules) -> tuple[list[SimilarityFlag], set[frozenset[_File]], set[_File]]:
    """The identical_file and same_weights flags; the pairs of files they cover (and those of
    handed-out material), which the predictions do not report again; the handed-out files."""
    flags: list[SimilarityFlag] = []
    covered: set[frozenset[_File]] = set()
    handed_out: set[_File] = set()

    def shared_material(value: str, holders: Mapping[str, list[_Model]]) -> bool:
        common = class_size >= rules.min_class and len(holders) > rules.boilerplate_share * class_size
        return value in starter_files or common

    by_sha = _groups(models, "sha256")
    for sha, holders in sorted(by_sha.items()):
        if shared_material(sha, holders):
            handed_out.update(m.file for ms in holders.values() for m in ms)
            continue
        for a, b in _student_pairs(holders):
            covered.update(frozenset((x.file, y.file)) for x in holders[a] for y in holders[b])
            x, y = holders[a][0], holders[b][0]
            flags.append(_flag("identical_file", x.file, y.file, 1.0,
                               f"{x.file.path} and {y.file.path} are the same file (sha256 {sha[:12]}…)"))
    for weights, holders in sorted(_groups(models, "weights").items()):
        if shared_material(weights, holders):
            handed_out.update(m.file for ms in holders.values() for m in ms)
            continue
        for a, b in _student_pairs(holders):
            pairs = [(x, y) for x in holders[a] for y in holders[b]]
            already = any(x.sha256 and x.sha256 == y.sha256 for x, y in pairs)
            covered.update(frozenset((x.file, y.file)) for x, y in pairs)
            if already:
                continue
            x, y = pairs[0]
            flags.append(_flag("same_weights", x.file, y.file, 1.0,
                               f"{x.file.path} and {y.file.path} are different files holding the same weights "
                               "(every stored tensor is equal; layers renamed or the model saved again)"))
    return flags, covered, handed_out


def _student_pairs(holders: Mapping[str, object]) -> list[tuple[str, str]]:
    names = sorted(holders)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


# ---------------------------------------------------------------------------------------------
# predictions


def _decoded(models: Mapping[str, list[_Model]], handed_out: set[_File],
             rules: SimilarityRules) -> dict[int, list[tuple[_File, np.ndarray]]]:
    """length -> comparable prediction vectors; undecodable, degenerate and handed-out ones left out."""
    out: dict[int, list[tuple[_File, np.ndarray]]] = defaultdict(list)
    for ms in models.values():
        for m in ms:
            if not m.predicted or m.file in handed_out:
                continue
            try:
                labels = decode_labels(m.predicted)
            except ValueError:
                continue
            n = len(labels)
            if n == 0 or n > _MAX_IMAGES or n < min(rules.always_min_images, rules.outlier_min_images):
                continue
            if np.bincount(labels).max() > rules.degenerate_share * n:
                continue
            out[n].append((m.file, labels))
    return out


def _disagreements(X: np.ndarray) -> np.ndarray:
    """Number of images on which each pair of rows of X (models x images, uint8 labels) differs.

    Exact: agreement_ij = sum over classes c of #{images where i and j both predict c}. Rank the
    classes of each image by how many models predict them; for the `_DENSE_RANKS` most common ones
    (the consensus and the usual confusion: most of all predictions) the sum is a dense float32
    matrix product each (BLAS; integer counts below 2**24 are exact), and the rare rest is one
    sparse product over (image, class) pairs, cheap because it is sparse. Two ranks measured
    fastest (bench/similarity.py); about 5x cheaper than one dense product per class.
    """
    m, n = X.shape
    classes = int(X.max()) + 1
    counts = np.stack([np.count_nonzero(X == c, axis=0) for c in range(classes)], axis=1)
    ranked = np.argsort(-counts, axis=1, kind="stable").astype(X.dtype)  # images x classes
    agree = np.zeros((m, m), dtype=np.float32)
    rest = np.ones(X.shape, dtype=bool)
    for r in range(min(_DENSE_RANKS, classes)):
        hit = X == ranked[None, :, r]
        rest &= ~hit
        B = hit.astype(np.float32)
        agree += B @ B.T
    rows, cols = np.nonzero(rest)
    if len(rows):
        keys = cols.astype(np.int64) * classes + X[rows, cols]
        indptr = np.concatenate(([0], np.cumsum(np.count_nonzero(rest, axis=1))))
        S = sparse.csr_matrix((np.ones(len(keys), dtype=np.float32), keys, indptr), shape=(m, n * classes))
        agree += (S @ S.T.tocsr()).toarray()
    return n - np.rint(agree).astype(np.int64)


def _prediction_flags(models: Mapping[str, list[_Model]], covered: set[frozenset[_File]], handed_out: set[_File],
                      rules: SimilarityRules) -> list[SimilarityFlag]:
    flags: list[SimilarityFlag] = []
    for n, vectors in sorted(_decoded(models, handed_out, rules).items()):
        owners = [f.student for f, _ in vectors]
        students = sorted(set(owners))
        if len(students) < 2:
            continue
        index = {s: i for i, s in enumerate(students)}
        who = np.array([index[s] for s in owners])
        dis = _disagreements(np.stack([labels for _, labels in vectors]))
        i, j = np.triu_indices(len(vectors), k=1)
        cross = who[i] != who[j]
        i, j = i[cross], j[cross]
        d = dis[i, j]
        median = float(np.median(d)) / n if len(students) >= rules.min_class else None
        hit = np.zeros(len(d), dtype=bool)
        if n >= rules.always_min_images:
            hit |= d <= math.floor((1.0 - rules.agreement_always) * n + 1e-9)
        if median is not None and n >= rules.outlier_min_images:
            hit |= d < median * n / rules.outlier_factor
        order = sorted(np.nonzero(hit)[0].tolist(), key=lambda t: (int(d[t]), vectors[i[t]][0], vectors[j[t]][0]))
        used: set[tuple[_File, frozenset[str]]] = set()
        for t in order:
            a, b = vectors[i[t]][0], vectors[j[t]][0]
            if frozenset((a, b)) in covered:
                continue
            pair = frozenset((a.student, b.student))
            if (a, pair) in used or (b, pair) in used:
                continue
            used.update({(a, pair), (b, pair)})
            agree = n - int(d[t])
            flags.append(_flag("predictions", a, b, agree / n, _prediction_detail(a, b, agree, n, median, rules)))
    return flags


def _percent(share: float, digits: int) -> str:
    """A share as a percentage rounded DOWN, so that 99.996% never reads 100.00%."""
    scale = 10**digits
    return f"{math.floor(share * 100 * scale + 1e-9) / scale:.{digits}f}%"


def _prediction_detail(a: _File, b: _File, agree: int, n: int, median: float | None, rules: SimilarityRules) -> str:
    if b.student < a.student:
        a, b = b, a
    text = (f"{a.path} and {b.path} predict the same class for {agree:,} of {n:,} hidden images "
            f"({_percent(agree / n, 2)})")
    if median is None:
        return text + (f"; too few students to compare with the class (at least "
                       f"{_percent(rules.agreement_always, 1)} agreement is flagged in any class)")
    return text + f"; the median pair in this class agrees on {_percent(1.0 - median, 1)}"


# ---------------------------------------------------------------------------------------------
# notebook_code


def _notebook_flags(evidences: Sequence[Evidence], starter: frozenset[int], rules: SimilarityRules) -> list[SimilarityFlag]:
    files: list[_File] = []
    arrays: list[np.ndarray] = []
    seen: set[_File] = set()
    for evidence in evidences:
        for nb in evidence.notebooks:
            file = _File(evidence.student, nb.path)
            prints = _int64(nb.code_fingerprints)
            if file not in seen and len(prints):
                seen.add(file)
                files.append(file)
                arrays.append(prints)
    order = sorted(range(len(files)), key=lambda x: (files[x].student, files[x].path))
    files, arrays = [files[x] for x in order], [arrays[x] for x in order]
    students = sorted({f.student for f in files})
    if len(students) < 2:
        return []
    # (notebook, fingerprint) incidences, unique, without the starter's fingerprints
    notebook = np.repeat(np.arange(len(files)), [len(a) for a in arrays])
    prints = np.concatenate(arrays)
    keep = ~np.isin(prints, _int64(starter)) if starter else np.ones(len(prints), dtype=bool)
    vocabulary, column = np.unique(prints[keep], return_inverse=True)
    notebook = notebook[keep]
    pairs = np.unique(notebook.astype(np.int64) * len(vocabulary) + column)
    notebook, column = pairs // max(1, len(vocabulary)), pairs % max(1, len(vocabulary))
    if len(students) >= rules.min_class:  # boilerplate: in the notebooks of more than half of the students
        index = {s: k for k, s in enumerate(students)}
        owner = np.array([index[f.student] for f in files])[notebook]
        holders = np.bincount(np.unique(column * len(students) + owner) // len(students), minlength=len(vocabulary))
        common = holders > rules.boilerplate_share * len(students)
        notebook, column = notebook[~common[column]], column[~common[column]]
    sizes = np.bincount(notebook, minlength=len(files))
    incidence = sparse.csr_matrix((np.ones(len(notebook), dtype=np.float32), (notebook, column)),
                                  shape=(len(files), max(1, len(vocabulary))))
    shared = sparse.triu(incidence @ incidence.T.tocsr(), k=1).tocoo()
    x, y = shared.row.astype(np.int64), shared.col.astype(np.int64)
    count = np.rint(shared.data).astype(np.int64)
    smaller = np.minimum(sizes[x], sizes[y])
    jaccard = count / np.maximum(1, sizes[x] + sizes[y] - count)
    containment = count / np.maximum(1, smaller)
    by_containment = (containment >= rules.code_containment) & (smaller >= rules.code_containment_min)
    by_overlap = (jaccard >= rules.code_overlap) & (count >= rules.code_overlap_min_shared)
    candidates: list[tuple[float, int, int, SimilarityFlag]] = []
    for t in np.nonzero(by_containment | by_overlap)[0].tolist():
        fa, fb = files[x[t]], files[y[t]]
        if fa.student == fb.student:
            continue
        strength = float(containment[t] if by_containment[t] else jaccard[t])
        detail = (f"{fa.path} and {fb.path} share {int(count[t]):,} code fingerprints (Jaccard overlap "
                  f"{jaccard[t]:.2f}); {_percent(float(containment[t]), 0)} of the smaller notebook's "
                  f"{int(smaller[t]):,} fingerprints are in the other (starter code and shared boilerplate removed)")
        candidates.append((-strength, int(x[t]), int(y[t]), _flag("notebook_code", fa, fb, strength, detail)))
    flags: list[SimilarityFlag] = []
    used: set[tuple[int, frozenset[str]]] = set()
    for _, a, b, flag in sorted(candidates, key=lambda c: (c[0], c[3].students, c[3].what)):
        pair = frozenset(flag.students)
        if (a, pair) in used or (b, pair) in used:
            continue
        used.update({(a, pair), (b, pair)})
        flags.append(flag)
    return flags


def _int64(values: Iterable[int]) -> np.ndarray:
    """Fingerprints as int64; a value outside the signed 64-bit range (never written by
    grader.facts.fingerprints) is dropped."""
    values = list(values)
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return np.array([v for v in values if -(2**63) <= v < 2**63], dtype=np.int64)

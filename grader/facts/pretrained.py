"""Does a model start from pretrained (ImageNet) weights? Decided from offline evidence only.

ImageNet weights cannot be downloaded while grading, so the strongest evidence is a copy of the
official notop weights that the teacher drops into ``hidden_tests/reference-weights/``: the first
convolution of a pretrained base keeps a kernel close to it even after fine-tuning, while a base
trained from its own initialisation is uncorrelated with it. Without that file, the notebook's
``VGG16(weights=...)`` call decides; without a call, a known base is assumed to be pretrained and
the evidence says how to confirm it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from grader.facts.applications import references, weights_file_hint
from grader.records.evidence import AppCall, Architecture, BaseMatch, Pretrained
from grader.facts.keras_file import InspectError, read_layer_kernel

__all__ = ["PRETRAINED_CORRELATION", "decide_pretrained"]

# A kernel initialised on its own correlates with ImageNet's by about ±1/sqrt(n) (±0.02 for VGG16's
# 1,728 values); a pretrained one, even fine-tuned, stays above 0.9. 0.5 leaves a wide margin.
PRETRAINED_CORRELATION = 0.5
_MAX_REFERENCE_KERNEL = 1 << 24


class _Kernel(NamedTuple):
    name: str
    shape: tuple[int, ...]


def _squash(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower().replace("_", "").replace("-", "")


def _layer_path(arch: Architecture, joined: str) -> tuple[str, ...] | None:
    """The path tuple of a layer given as '/'-joined (BaseMatch.layers), matched on the layers."""
    return next((layer.path for layer in arch.layers if "/".join(layer.path) == joined), None)


def _expected_kernels(base: BaseMatch) -> int | None:
    """How many 4-D kernels the base's notop weights hold: one per conv, two per separable conv."""
    ref = next((r for r in references() if r.name == base.name), None)
    if ref is None:
        return None
    return sum(2 if t.startswith("S") else 1 for t in ref.tokens if t[:1] in ("C", "D", "S"))


def _reference_kernels(f: h5py.File) -> list[_Kernel]:
    """The 4-D datasets of a weights file in layer order (legacy `layer_names`, else natural order)."""
    found: list[_Kernel] = []
    f.visititems(lambda name, obj: found.append(_Kernel(name, tuple(obj.shape)))
                 if isinstance(obj, h5py.Dataset) and obj.shape is not None and len(obj.shape) == 4 else None)
    order = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs.get("layer_names", [])]
    rank = {name: i for i, name in enumerate(order)}

    def key(kernel: _Kernel) -> tuple[int, tuple[object, ...]]:
        natural = tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", kernel.name))  # conv2d_2 < conv2d_10
        return rank.get(kernel.name.split("/")[0], len(rank)), natural

    return sorted(found, key=key)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _compare(arch: Architecture, base: BaseMatch, model_path: Path, reference: Path) -> tuple[Pretrained | None, str]:
    """Pretrained from the first convolution of `base` against the reference file; or (None, why not)."""
    first = _layer_path(arch, base.layers[0]) if base.layers else None
    if first is None:
        return None, f"the first layer of the {base.display} base could not be located"
    try:
        kernel = read_layer_kernel(model_path, first, kind=arch.format if arch.format != "tflite" else None)
    except InspectError as exc:
        return None, str(exc)
    if kernel is None:
        return None, f"{'/'.join(first)} has no stored kernel in the model file"
    try:
        with h5py.File(reference, "r") as f:
            kernels = _reference_kernels(f)
            expected = _expected_kernels(base)
            if expected is not None and len(kernels) != expected:
                return None, (f"{reference.name} does not look like {base.display} notop weights "
                              f"({len(kernels)} convolution kernels, {base.display} has {expected})")
            same = [k for k in kernels if k.shape == kernel.shape]
            if not same:
                shapes = ", ".join(str(k.shape) for k in kernels[:1])
                return Pretrained(value=False, source="reference_weights", evidence=(
                    f"the first convolution of the {base.display} base ({'/'.join(first)}) has shape {kernel.shape}, "
                    f"the reference weights {reference.name} start with {shapes}: ImageNet weights cannot have been "
                    "loaded into it")), ""
            if np.prod(same[0].shape) > _MAX_REFERENCE_KERNEL:
                return None, f"the reference kernel {same[0].name} is implausibly large"
            ref = np.asarray(f[same[0].name][()])
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        return None, f"the reference weights {reference.name} cannot be read ({exc})"
    r = _correlation(kernel, ref)
    pretrained = r >= PRETRAINED_CORRELATION
    verdict = ("pretrained weights" if pretrained
               else "not the reference (ImageNet) weights: trained from its own initialisation")
    return Pretrained(value=pretrained, source="reference_weights", evidence=(
        f"the first convolution of the {base.display} base ({'/'.join(first)}) correlates {r:.4f} with "
        f"{reference.name} ({same[0].name}); threshold {PRETRAINED_CORRELATION}: {verdict}")), ""


def _describe(call: AppCall) -> str:
    weights = "None" if call.weights is None else (call.weights if call.weights == "<expr>" else repr(call.weights))
    return f"{call.name}(weights={weights}) in cell {call.cell}, line {call.line}"


def _from_notebook(bases: Sequence[BaseMatch], calls: Sequence[AppCall]) -> tuple[Pretrained | None, str]:
    """Pretrained from the notebook's application calls for the model's bases; or (None, note)."""
    wanted = {_squash(b.name) for b in bases} | {_squash(b.display) for b in bases}
    relevant = [c for c in calls if _squash(c.name) in wanted]
    loaded = [c for c in relevant if c.weights not in (None, "<expr>")]
    scratch = [c for c in relevant if c.weights is None]
    if loaded and scratch:
        return Pretrained(value=None, source="notebook", evidence=(
            f"the notebook builds the base both with and without pretrained weights ({_describe(loaded[0])}; "
            f"{_describe(scratch[0])}); provide reference weights to decide which this model holds")), ""
    if loaded:
        return Pretrained(value=True, source="notebook", evidence=f"the notebook calls {_describe(loaded[0])}"), ""
    if scratch:
        return Pretrained(value=False, source="notebook", evidence=(
            f"the notebook calls {_describe(scratch[0])}: the base starts from random weights")), ""
    note = f"the notebook calls {_describe(relevant[0])}, whose weights are not a literal" if relevant else ""
    return None, note


def _assumed(base: BaseMatch, notes: Sequence[str]) -> Pretrained:
    hint = weights_file_hint(base.name) or f"the {base.display} notop weights file"
    why = "; ".join(n for n in notes if n)
    return Pretrained(value=True, source="base_present", evidence=(
        f"a {base.display} base is present and assumed pretrained (ImageNet): no notebook call or reference "
        f"weights say otherwise{f' ({why})' if why else ''}; to confirm, put {hint} into "
        "hidden_tests/reference-weights/"))


def decide_pretrained(
    arch: Architecture,
    *,
    notebook_calls: Sequence[AppCall] = (),
    reference_weights: Path | None = None,
    model_path: Path | None = None,
) -> Pretrained:
    """Whether the model starts from pretrained weights, and the evidence that decided it.

    In order: (a) the base's first convolution against `reference_weights` (needs `model_path`);
    (b) the notebook's ``VGG16(weights=...)`` calls for the same base; (c) a known base is assumed
    pretrained; (d) a model without a known base is trained from scratch. Pure, except that (a)
    reads two datasets.
    """
    if not arch.bases:
        named = sorted({c.name for c in notebook_calls if c.weights not in (None, "<expr>")})
        extra = (f" (the notebook calls {', '.join(named)} with pretrained weights, but no part of this model "
                 "has that structure)") if named else ""
        return Pretrained(value=False, source="no_base",
                          evidence=f"no known application base (VGG16, ResNet50, ...) found in the model{extra}")
    notes: list[str] = []
    if reference_weights is not None and model_path is not None:
        for base in arch.bases:
            verdict, note = _compare(arch, base, Path(model_path), Path(reference_weights))
            if verdict is not None:
                return verdict
            notes.append(note)
    verdict, note = _from_notebook(arch.bases, notebook_calls)
    if verdict is not None:
        if notes:
            unused = f"{verdict.evidence} (reference weights not used: {'; '.join(notes)})"
            verdict = verdict.model_copy(update={"evidence": unused})
        return verdict
    return _assumed(arch.bases[0], [*notes, note])

"""A compact layer diagram of a model, from its statically read architecture.

The diagram is a row of boxes from input to output, drawn as HTML (an ordered list styled with
CSS): the text stays text, wraps on a phone, is read in order by a screen reader and can be
translated; nothing here draws pixels. What makes it compact:
- the layers of an application base (VGG16, ResNet50, ...) are folded into one box per stage, a
  stage ending at a pooling layer, so VGG16 is five boxes instead of nineteen rows;
- a nested model that is not a known base is unfolded (its layers are the student's own);
- runs of the same layer type with the same settings become one box with a count.
Every box says whether it trains, is frozen, or is partly frozen (fine-tuning the last block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from grader.records.evidence import Architecture, LayerInfo

State = Literal["trainable", "frozen", "mixed", "none"]
_POOLING = ("Pooling", "pool")
_MAX_BASE_BOXES = 8


@dataclass(frozen=True)
class Box:
    title: str  # "Conv2D", "VGG16 stage 3", "input"
    detail: str  # "64 filters 3×3, relu", "3 × Conv2D + MaxPooling2D"
    params: int | None
    state: State
    base: str | None = None  # display name of the base the box belongs to
    count: int = 1  # layers folded into the box


def _state(layers: list[LayerInfo]) -> State:
    weighted = [layer for layer in layers if layer.params]
    if not weighted:
        return "none"
    trainable = sum(1 for layer in weighted if layer.trainable)
    if trainable == len(weighted):
        return "trainable"
    return "frozen" if trainable == 0 else "mixed"


def _params(layers: list[LayerInfo]) -> int | None:
    values = [layer.params for layer in layers if layer.params is not None]
    return sum(values) if values else None


def _stages(layers: list[LayerInfo]) -> list[list[LayerInfo]]:
    """Split a base's layers into stages, each ending at a pooling layer; at most _MAX_BASE_BOXES."""
    stages: list[list[LayerInfo]] = [[]]
    for layer in layers:
        stages[-1].append(layer)
        if any(p in layer.class_name for p in _POOLING[:1]):
            stages.append([])
    stages = [s for s in stages if s]
    if len(stages) > _MAX_BASE_BOXES:  # ResNet/EfficientNet: many stages, merged evenly
        size = -(-len(stages) // _MAX_BASE_BOXES)
        stages = [sum(stages[i : i + size], []) for i in range(0, len(stages), size)]
    return stages


def _stage_detail(stage: list[LayerInfo]) -> str:
    counts: dict[str, int] = {}
    for layer in stage:
        counts[layer.class_name] = counts.get(layer.class_name, 0) + 1
    return " + ".join(f"{n} × {name}" if n > 1 else name for name, n in counts.items())


def boxes(arch: Architecture, base_paths: dict[str, str]) -> list[Box]:
    """The diagram of `arch`. `base_paths` maps '/'-joined layer paths (and base containers) to the
    display name of the base they belong to (see grader.report.html)."""
    out: list[Box] = []
    if arch.input_shape:
        shape = "×".join("?" if d is None else str(d) for d in arch.input_shape[1:])
        out.append(Box(title="input", detail=shape, params=None, state="none"))
    pending_base: tuple[str, list[LayerInfo]] | None = None

    def flush_base() -> None:
        nonlocal pending_base
        if pending_base is None:
            return
        name, layers = pending_base
        for n, stage in enumerate(_stages(layers), start=1):
            out.append(Box(title=f"{name} · {n}", detail=_stage_detail(stage), params=_params(stage),
                           state=_state(stage), base=name, count=len(stage)))
        pending_base = None

    for layer in arch.layers:
        key = "/".join(layer.path)
        if layer.class_name == "InputLayer":
            continue
        base = base_paths.get(key) or next((base_paths[p] for p in _prefixes(layer.path) if p in base_paths), None)
        if layer.is_container:
            continue  # a base container is folded below; another container's layers are shown one by one
        if base is not None:
            if pending_base is not None and pending_base[0] != base:
                flush_base()
            if pending_base is None:
                pending_base = (base, [])
            pending_base[1].append(layer)
            continue
        flush_base()
        previous = out[-1] if out else None
        if previous and previous.base is None and previous.title == layer.class_name and previous.detail == layer.summary \
                and previous.state == _state([layer]):
            out[-1] = Box(title=previous.title, detail=previous.detail,
                          params=(previous.params or 0) + (layer.params or 0) if previous.params is not None else layer.params,
                          state=previous.state, count=previous.count + 1)
            continue
        out.append(Box(title=layer.class_name, detail=layer.summary, params=layer.params, state=_state([layer])))
    flush_base()
    return out


def _prefixes(path: tuple[str, ...]) -> list[str]:
    return ["/".join(path[:i]) for i in range(len(path) - 1, 0, -1)]

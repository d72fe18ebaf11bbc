"""Known application networks (VGG16, ResNet50, ...) found in a model by their STRUCTURE.

Names prove nothing: a student may rename every layer of a VGG16, and a plain CNN may have a layer
called ``vgg16``. So each weighted layer becomes a token built from its class and structural config
(filters, kernel, strides, units; never names, never the input size), and a base is present when its
reference token sequence occurs contiguously in the model's tokens, flattened depth-first. That works
the same whether the base is a nested model layer or inlined with ``input_tensor=``.

The reference sequences are data (`grader/facts/_bases.json`), generated once with
``python -m grader.facts.applications --regenerate`` from ``keras.applications.X(weights=None,
include_top=False)``. Grading reads only the JSON: this module never imports keras outside
`--regenerate`.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from grader.records.evidence import BaseMatch, LayerInfo

__all__ = [
    "Reference",
    "base_names",
    "config_tokens",
    "detect_bases",
    "display_name",
    "layer_token",
    "reference_from_keras",
    "references",
    "weights_file_hint",
]

_DATA = Path(__file__).with_name("_bases.json")
_SEP = "|"

# key -> (function in keras.applications, file name of the official ImageNet notop weights).
# Adding a base: add a row, run `python -m grader.facts.applications --regenerate`, commit the JSON.
_APPS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "vgg16": ("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg19": ("VGG19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenet": ("MobileNet", "mobilenet_1_0_224_tf_no_top.h5"),
    "mobilenet_v2": ("MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    "inception_v3": ("InceptionV3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "xception": ("Xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "densenet121": ("DenseNet121", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", f"efficientnetb{i}_notop.h5") for i in range(8)},
})


class Reference(NamedTuple):
    """One known base: its registry key, display name and token sequence (include_top=False)."""

    name: str
    display: str
    tokens: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Tokens


def _pair(value: Any) -> str:
    """'3' for a square 3x3 kernel (or int 3), '1x7' otherwise; keeps tokens short and readable."""
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    items = [int(v) for v in items]
    return str(items[0]) if len(set(items)) == 1 else "x".join(str(v) for v in items)


def layer_token(class_name: str, config: Mapping[str, Any], weighted: bool) -> str | None:
    """The structural token of one (non-container) layer, or None when it has no weights.

    Weighted layers of classes that the references use get a token from structure only; any other
    weighted layer gets ``?Class`` so that it breaks a match instead of being skipped silently.
    """
    try:
        if class_name in ("Conv2D", "Convolution2D"):
            return f"C{int(config['filters'])}k{_pair(config['kernel_size'])}s{_pair(config.get('strides', 1))}"
        if class_name == "DepthwiseConv2D":
            mult = int(config.get("depth_multiplier", 1))
            return f"D{mult}k{_pair(config['kernel_size'])}s{_pair(config.get('strides', 1))}"
        if class_name in ("SeparableConv2D", "SeparableConvolution2D"):
            return f"S{int(config['filters'])}k{_pair(config['kernel_size'])}s{_pair(config.get('strides', 1))}"
        if class_name == "BatchNormalization":
            return "B"
        if class_name == "Dense":
            return f"F{int(config['units'])}"
    except (KeyError, TypeError, ValueError):
        return f"?{class_name}"  # a hand-edited config: never part of a known base
    return f"?{class_name}" if weighted else None


def _is_container(layer: Mapping[str, Any]) -> bool:
    config = layer.get("config")
    return isinstance(config, Mapping) and isinstance(config.get("layers"), list)


def config_tokens(model_config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(layer name, token) for the weighted structural layers of a Keras model config, depth-first.

    Used to build the references from keras.applications; layers of other weighted classes (the
    Normalization at the start of EfficientNet) are left out, so references hold structure only.
    """
    out: list[tuple[str, str]] = []
    for layer in model_config["config"]["layers"]:
        if _is_container(layer):
            out.extend(config_tokens(layer))
            continue
        token = layer_token(layer["class_name"], layer["config"], weighted=False)
        if token is not None:
            out.append((layer["config"].get("name", ""), token))
    return out


# ---------------------------------------------------------------------------------------------
# Reference data


@functools.cache
def _load(path: Path = _DATA) -> tuple[Reference, ...]:
    """Parsed once per process; immutable, so caching it is not shared mutable state."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        Reference(name=key, display=entry["display"], tokens=tuple(entry["tokens"].split()))
        for key, entry in data["bases"].items()
    )


def references() -> tuple[Reference, ...]:
    """Every known base with its reference tokens, as stored in `grader/facts/_bases.json`."""
    return _load()


def base_names() -> list[str]:
    """Registry keys of the known bases (``vgg16``, ``mobilenet_v2``, ``efficientnetb0``...), sorted."""
    return sorted(ref.name for ref in references())


def display_name(name: str) -> str:
    """'VGG16' for 'vgg16'; the key itself for an unknown name."""
    return _APPS[name][0] if name in _APPS else name


def weights_file_hint(name: str) -> str | None:
    """File name of the official ImageNet notop weights of a base, for messages to teachers."""
    return _APPS[name][1] if name in _APPS else None


# ---------------------------------------------------------------------------------------------
# Detection


class _Hit(NamedTuple):
    ref: Reference
    start: int  # index into the model's token list
    end: int  # exclusive


def _find_all(haystack: str, needle: str) -> list[int]:
    found, at = [], haystack.find(needle)
    while at != -1:
        found.append(at)
        at = haystack.find(needle, at + 1)
    return found


def _hits(tokens: Sequence[str], refs: Sequence[Reference]) -> list[_Hit]:
    """Every contiguous occurrence of every reference in the model's tokens.

    Tokens are joined with a separator that no token contains, so `str.find` matches whole tokens.
    """
    text = _SEP + _SEP.join(tokens) + _SEP
    starts: list[int] = []  # character offset of each token's leading separator
    pos = 0
    for token in tokens:
        starts.append(pos)
        pos += len(token) + 1
    hits = []
    for ref in refs:
        if not ref.tokens:
            continue
        for offset in _find_all(text, _SEP + _SEP.join(ref.tokens) + _SEP):
            first = bisect.bisect_left(starts, offset)
            hits.append(_Hit(ref, first, first + len(ref.tokens)))
    return hits


def _choose(hits: list[_Hit]) -> list[_Hit]:
    """Longest match first (VGG19 beats a VGG16 inside it); no overlaps; each base reported once.

    A second copy of a base is not reported but still claims its layers, so no shorter base is
    found inside it.
    """
    claimed: list[_Hit] = []
    chosen: list[_Hit] = []
    for hit in sorted(hits, key=lambda h: (-(h.end - h.start), h.start, h.ref.name)):
        if any(hit.start < c.end and c.start < hit.end for c in claimed):
            continue
        claimed.append(hit)
        if all(c.ref.name != hit.ref.name for c in chosen):
            chosen.append(hit)
    return sorted(chosen, key=lambda h: h.start)


def _common_container(paths: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The deepest container path holding every given layer; () when that is the model itself."""
    prefix = paths[0][:-1]
    for path in paths[1:]:
        parent = path[:-1]
        n = 0
        while n < min(len(prefix), len(parent)) and prefix[n] == parent[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def _match(hit: _Hit, layers: Sequence[LayerInfo]) -> BaseMatch:
    container = _common_container([layer.path for layer in layers])
    params = [layer.params for layer in layers]
    return BaseMatch(
        name=hit.ref.name,
        display=hit.ref.display,
        nested=bool(container),
        container="/".join(container) if container else None,
        layers=tuple("/".join(layer.path) for layer in layers),
        trainable_layers=sum(1 for layer in layers if layer.trainable),
        frozen_layers=sum(1 for layer in layers if not layer.trainable),
        params=None if any(p is None for p in params) else sum(p for p in params if p is not None),
    )


def detect_bases(
    layers: Sequence[LayerInfo],
    tokens: Sequence[str | None],
    refs: Sequence[Reference] | None = None,
) -> tuple[BaseMatch, ...]:
    """The known bases whose reference token sequence occurs in the model.

    `layers` is the depth-first flattened list of `LayerInfo` (containers included) and `tokens[i]`
    the `layer_token` of `layers[i]` (None for containers and layers without weights).
    """
    if len(layers) != len(tokens):
        raise ValueError(f"detect_bases: {len(layers)} layers but {len(tokens)} tokens")
    weighted = [(layer, token) for layer, token in zip(layers, tokens) if token is not None and not layer.is_container]
    if not weighted:
        return ()
    hits = _choose(_hits([token for _, token in weighted], references() if refs is None else refs))
    return tuple(_match(hit, [layer for layer, _ in weighted[hit.start:hit.end]]) for hit in hits)


# ---------------------------------------------------------------------------------------------
# Regeneration (dev only: imports keras)


def reference_from_keras(name: str) -> Reference:
    """Build `keras.applications.X(weights=None, include_top=False)` and read its tokens.

    Dev and test helper; imports keras. Fails loudly if a weighted layer of an unexpected class sits
    inside the base, since the reference could not describe it.
    """
    import keras  # noqa: PLC0415 - only when regenerating

    function_name = _APPS[name][0]
    model = getattr(keras.applications, function_name)(weights=None, include_top=False)
    config = json.loads(model.to_json())
    tokens = [token for _, token in config_tokens(config)]
    first = next(i for i, layer in enumerate(model.layers) if layer_token(type(layer).__name__, layer.get_config(), False))
    odd = [layer.name for layer in model.layers[first:] if layer.weights
           and layer_token(type(layer).__name__, layer.get_config(), False) is None]
    if odd:
        raise RuntimeError(f"{function_name}: weighted layers without a structural token inside the base: {odd}")
    return Reference(name=name, display=function_name, tokens=tuple(tokens))


def _regenerate(path: Path = _DATA) -> Path:
    import keras  # noqa: PLC0415

    bases = {}
    for name in _APPS:
        ref = reference_from_keras(name)
        bases[name] = {"display": ref.display, "tokens": " ".join(ref.tokens)}
        keras.backend.clear_session()  # EfficientNetB7 and friends add up
    payload = {
        "about": "Structural token sequences of keras.applications bases (include_top=False), "
                 "generated by `python -m grader.facts.applications --regenerate`. Do not edit by hand.",
        "keras_version": keras.__version__,
        "bases": bases,
    }
    path.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    return path


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.facts.applications", description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true", help=f"rebuild {_DATA.name} from keras.applications")
    args = parser.parse_args(argv)
    if not args.regenerate:
        for ref in references():
            print(f"{ref.name:16} {ref.display:16} {len(ref.tokens):4} weighted layers")
        return 0
    print(_regenerate())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())

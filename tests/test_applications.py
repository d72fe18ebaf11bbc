"""grader.facts.applications: known bases found by structure in real saved models, never by names."""

from __future__ import annotations

import json

import pytest

from grader.facts.applications import (
    Reference,
    base_names,
    detect_bases,
    display_name,
    layer_token,
    reference_from_keras,
    references,
)
from grader.records.evidence import LayerInfo
from grader.facts.keras_file import inspect_model_file
from tests._models import Built, shared_built


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return shared_built(tmp_path_factory)


# ---------------------------------------------------------------------------------------------
# Real files


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_vgg16_nested_in_sequential_frozen(built: Built, ext: str) -> None:
    (match,) = inspect_model_file(built.path("k3_vgg_frozen", ext)).bases
    assert (match.name, match.display, match.nested, match.container) == ("vgg16", "VGG16", True, "vgg16")
    assert match.layers[0] == "vgg16/block1_conv1" and match.layers[-1] == "vgg16/block5_conv3"
    assert (match.trainable_layers, match.frozen_layers) == (0, 13)
    assert match.params == 14_714_688


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_vgg16_fine_tuned_block5(built: Built, ext: str) -> None:
    (match,) = inspect_model_file(built.path("k3_vgg_block5", ext)).bases
    assert (match.trainable_layers, match.frozen_layers) == (3, 10)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_vgg16_renamed_and_nested_in_functional(built: Built, ext: str) -> None:
    arch = inspect_model_file(built.path("k3_vgg_func_nested", ext))
    (match,) = arch.bases
    assert match.name == "vgg16" and match.nested and match.container == "backbone"
    assert all(path.startswith("backbone/f") for path in match.layers)  # nothing called block*_conv*
    assert (match.trainable_layers, match.frozen_layers) == (3, 10)
    assert match.params == 14_714_688


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_vgg16_inlined_with_input_tensor_and_renamed(built: Built, ext: str) -> None:
    arch = inspect_model_file(built.path("k3_vgg_inlined", ext))
    (match,) = arch.bases
    assert match.name == "vgg16" and not match.nested and match.container is None
    assert len(match.layers) == 13 and all(path.startswith("layer_") and "/" not in path for path in match.layers)
    assert (match.trainable_layers, match.frozen_layers) == (3, 10)


@pytest.mark.parametrize(("key", "ext", "trainable"), [("k2_vgg_pretrained", "h5", 3), ("k2_vgg_pretrained", "keras", 3),
                                                         ("k2_vgg_inlined", "h5", 13)])
def test_vgg16_in_keras2_files(built: Built, key: str, ext: str, trainable: int) -> None:
    (match,) = inspect_model_file(built.path(key, ext)).bases
    assert match.name == "vgg16" and match.trainable_layers == trainable
    assert match.trainable_layers + match.frozen_layers == 13


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_vgg19_renamed_in_sequential_is_vgg19_not_vgg16(built: Built, ext: str) -> None:
    bases = inspect_model_file(built.path("k3_vgg19", ext)).bases
    assert [b.name for b in bases] == ["vgg19"]
    assert bases[0].nested and bases[0].container == "features"
    assert len(bases[0].layers) == 16 and bases[0].trainable_layers == 16
    assert all(path.startswith("features/s") for path in bases[0].layers)


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_plain_cnn_with_vgg_names_is_no_vgg(built: Built, ext: str) -> None:
    arch = inspect_model_file(built.path("k3_cnn_vgg_named", ext))
    assert "vgg16" in {layer.name for layer in arch.layers}  # the trap is really there
    assert arch.bases == ()


# ---------------------------------------------------------------------------------------------
# Matching rules, on hand-made layers


def _layers(tokens: list[str | None], prefix: tuple[str, ...] = ()) -> list[LayerInfo]:
    return [LayerInfo(path=prefix + (f"l{i}",), class_name="Conv2D", trainable=i % 2 == 0, params=10)
            for i, _ in enumerate(tokens)]


_REFS = (
    Reference("short", "Short", ("C8k3s1", "C8k3s1")),
    Reference("long", "Long", ("C8k3s1", "C8k3s1", "C16k3s1")),
    Reference("other", "Other", ("B", "F4")),
)


def test_longest_match_wins_and_is_reported_once() -> None:
    tokens: list[str | None] = ["C8k3s1", "C8k3s1", "C16k3s1", None, "C8k3s1", "C8k3s1", "C16k3s1"]
    matches = detect_bases(_layers(tokens), tokens, refs=_REFS)
    assert [m.name for m in matches] == ["long"]  # 'short' sits inside both copies of 'long'
    assert matches[0].layers == ("l0", "l1", "l2")


def test_unknown_weighted_layer_breaks_a_match() -> None:
    tokens: list[str | None] = ["C8k3s1", "?MyLayer", "C8k3s1", "C16k3s1"]
    assert detect_bases(_layers(tokens), tokens, refs=_REFS) == ()


def test_weightless_layers_between_do_not_break_a_match() -> None:
    tokens: list[str | None] = ["C8k3s1", None, None, "C8k3s1", "C16k3s1", "B", "F4"]
    matches = detect_bases(_layers(tokens, ("box",)), tokens, refs=_REFS)
    assert [m.name for m in matches] == ["long", "other"]
    assert matches[0].layers == ("box/l0", "box/l3", "box/l4")
    assert matches[0].nested and matches[0].container == "box"
    assert (matches[0].trainable_layers, matches[0].frozen_layers) == (2, 1)
    assert matches[0].params == 30


def test_tokens_depend_on_structure_not_names() -> None:
    conv = {"name": "block1_conv1", "filters": 64, "kernel_size": [3, 3], "strides": [1, 1]}
    assert layer_token("Conv2D", conv, True) == "C64k3s1"
    assert layer_token("Conv2D", {**conv, "name": "anything"}, True) == "C64k3s1"
    assert layer_token("Conv2D", {**conv, "kernel_size": [1, 7], "strides": [2, 2]}, True) == "C64k1x7s2"
    assert layer_token("DepthwiseConv2D", {"kernel_size": [3, 3], "strides": [2, 2]}, True) == "D1k3s2"
    assert layer_token("Dense", {"units": 10}, True) == "F10"
    assert layer_token("MaxPooling2D", {}, False) is None
    assert layer_token("Normalization", {}, True) == "?Normalization"
    assert layer_token("Conv2D", {"filters": "x"}, True) == "?Conv2D"  # a hand-edited config


def test_registry() -> None:
    names = base_names()
    assert {"vgg16", "vgg19", "resnet50", "mobilenet_v2", "inception_v3"} <= set(names)
    assert {f"efficientnetb{i}" for i in range(8)} <= set(names)
    assert names == sorted(names)
    assert display_name("mobilenet_v2") == "MobileNetV2"
    assert len({r.tokens for r in references()}) == len(references())  # no two bases look alike


def test_no_reference_occurs_inside_another() -> None:
    """So a base found is never a part of a bigger one (the longest-match rule is a safety net)."""
    joined = {r.name: "|" + "|".join(r.tokens) + "|" for r in references()}
    inside = [(a, b) for a in joined for b in joined if a != b and joined[a] in joined[b]]
    assert inside == []


# ---------------------------------------------------------------------------------------------
# The committed JSON matches keras.applications


def _stored(name: str) -> Reference:
    return next(r for r in references() if r.name == name)


def test_bases_json_matches_keras_for_vgg16() -> None:
    assert reference_from_keras("vgg16") == _stored("vgg16")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in base_names() if n != "vgg16"])
def test_bases_json_matches_keras(name: str) -> None:
    assert reference_from_keras(name) == _stored(name)


def test_bases_json_is_small_and_tokens_only() -> None:
    from grader.facts import applications

    path = applications._DATA
    data = json.loads(path.read_text())
    assert path.stat().st_size < 64 * 1024
    assert set(data["bases"]["vgg16"]) == {"display", "tokens"}

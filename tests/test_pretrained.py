"""grader.facts.pretrained: pretrained or not, from offline evidence only.

ImageNet weights cannot be downloaded here, so the "official" reference file is a weights=None VGG16
saved the way the official notop file was made (Keras 2 `save_weights` to .h5); a model whose base
copies those weights plays the pretrained student, a freshly initialised one the from-scratch student.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from grader.records.evidence import AppCall, Architecture, BaseMatch, LayerInfo, Pretrained
from grader.facts.keras_file import inspect_model_file
from grader.facts.pretrained import PRETRAINED_CORRELATION, decide_pretrained
from tests._models import Built, shared_built


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return shared_built(tmp_path_factory)


def _decide(built: Built, key: str, ext: str, reference: Path | None = None, calls: tuple[AppCall, ...] = ()) -> Pretrained:
    path = built.path(key, ext)
    return decide_pretrained(inspect_model_file(path), notebook_calls=calls, reference_weights=reference, model_path=path)


# ---------------------------------------------------------------------------------------------
# (a) reference weights


def test_reference_file_has_the_official_layout(built: Built) -> None:
    with h5py.File(built.reference_weights()) as f:
        assert "model_config" not in f.attrs and "layer_names" in f.attrs
        assert f["block1_conv1/block1_conv1/kernel:0"].shape == (3, 3, 3, 64)


@pytest.mark.parametrize(("key", "ext"), [("k3_vgg_copied", "keras"), ("k3_vgg_copied", "h5"), ("k2_vgg_pretrained", "h5")])
def test_copied_weights_are_pretrained(built: Built, key: str, ext: str) -> None:
    verdict = _decide(built, key, ext, built.reference_weights(),
                      calls=(AppCall(name="VGG16", weights=None, line=1, cell=1),))  # the file beats the notebook
    assert verdict.value is True and verdict.source == "reference_weights"
    assert "correlates 1.0000" in verdict.evidence and "block1_conv1" in verdict.evidence


@pytest.mark.parametrize(("key", "ext"),
                         [("k3_vgg_frozen", "keras"), ("k3_vgg_func_nested", "h5"), ("k2_vgg_inlined", "h5")])
def test_own_initialisation_is_not_pretrained(built: Built, key: str, ext: str) -> None:
    verdict = _decide(built, key, ext, built.reference_weights(),
                      calls=(AppCall(name="VGG16", weights="imagenet", line=1, cell=1),))
    assert verdict.value is False and verdict.source == "reference_weights"
    number = float(verdict.evidence.split("correlates ")[1].split()[0])
    assert abs(number) < PRETRAINED_CORRELATION / 5


def test_a_reference_for_another_network_is_not_used(built: Built, tmp_path: Path) -> None:
    wrong = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(wrong, "w") as f:
        f.create_dataset("conv/kernel:0", shape=(3, 3, 3, 64), dtype="f4")
    verdict = _decide(built, "k3_vgg_frozen", "keras", wrong)
    assert verdict.source == "base_present" and verdict.value is True
    assert "does not look like VGG16 notop weights (1 convolution kernels, VGG16 has 13)" in verdict.evidence


def test_reference_ignored_without_model_path(built: Built) -> None:
    arch = inspect_model_file(built.path("k3_vgg_copied", "keras"))
    assert decide_pretrained(arch, reference_weights=built.reference_weights()).source == "base_present"


# ---------------------------------------------------------------------------------------------
# (b) notebook, (c) base present, (d) no base — pure, on hand-made architectures


def _arch(base: str | None = "vgg16") -> Architecture:
    layers = (LayerInfo(path=("vgg16",), class_name="Functional", trainable=False, is_container=True),)
    bases = (BaseMatch(name=base, display=base.upper(), nested=True, container="vgg16"),) if base else ()
    return Architecture(format="keras", layers=layers, bases=bases)


def _call(name: str, weights: str | None, cell: int = 3) -> AppCall:
    return AppCall(name=name, weights=weights, line=2, cell=cell)


def test_notebook_imagenet_call() -> None:
    verdict = decide_pretrained(_arch(), notebook_calls=(_call("ResNet50", None), _call("VGG16", "imagenet")))
    assert (verdict.value, verdict.source) == (True, "notebook")
    assert "VGG16(weights='imagenet') in cell 3, line 2" in verdict.evidence


def test_notebook_weights_none_call() -> None:
    verdict = decide_pretrained(_arch(), notebook_calls=(_call("VGG16", None),))
    assert (verdict.value, verdict.source) == (False, "notebook")


def test_notebook_names_match_registry_keys() -> None:
    verdict = decide_pretrained(_arch("mobilenet_v2"), notebook_calls=(_call("MobileNetV2", None),))
    assert (verdict.value, verdict.source) == (False, "notebook")


def test_notebook_with_both_calls_cannot_tell() -> None:
    verdict = decide_pretrained(_arch(), notebook_calls=(_call("VGG16", None, 2), _call("VGG16", "imagenet", 5)))
    assert verdict.value is None and verdict.source == "notebook"
    assert "reference weights" in verdict.evidence


def test_base_without_other_evidence_is_assumed_pretrained() -> None:
    verdict = decide_pretrained(_arch(), notebook_calls=(_call("VGG16", "<expr>"), _call("VGG19", None)))
    assert (verdict.value, verdict.source) == (True, "base_present")
    assert "assumed" in verdict.evidence
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in verdict.evidence
    assert "not a literal" in verdict.evidence


def test_no_base_is_trained_from_scratch() -> None:
    verdict = decide_pretrained(_arch(None), notebook_calls=(_call("VGG16", "imagenet"),))
    assert (verdict.value, verdict.source) == (False, "no_base")
    assert "VGG16" in verdict.evidence  # says the notebook's call found no matching structure


def test_real_cnn_has_no_base(built: Built) -> None:
    verdict = _decide(built, "k3_cnn_vgg_named", "keras", built.reference_weights())
    assert (verdict.value, verdict.source) == (False, "no_base")

"""Every check kind on hand-made evidence, and the registry's rules."""

from __future__ import annotations

import pytest

from grader.judging.checks import Criterion, Params, check_names, get_check
from grader.judging.checks._registry import Registry
from grader.judging.judge import judge_criterion
from tests._evidence import CNN, MLP, arch, evidence, model, vgg16


def crit(check: str, points: float = 4, **params: object) -> Criterion:
    spec = get_check(check)
    return Criterion(id="c", title="t", points=points, check=check, params=spec.params.model_validate(params))


def run(check: str, ev, **params):  # type: ignore[no-untyped-def]
    return judge_criterion(ev, crit(check, **params))


def test_min_accuracy_best_cnn_passes_and_ignores_other_kinds() -> None:
    ev = evidence(model("cnn.keras", arch(*CNN), 0.915), model("mlp.h5", arch(*MLP), 0.95))
    r = run("min_accuracy", ev, threshold=0.91, select={"kind": "cnn"})
    assert (r.outcome, r.points) == ("pass", 4)
    assert "0.9150" in r.message and "cnn.keras" in r.message


def test_min_accuracy_partial_credit_is_linear_between_thresholds() -> None:
    ev = evidence(model("cnn.keras", arch(*CNN), 0.88))
    r = run("min_accuracy", ev, threshold=0.91, partial_from=0.85, select={"kind": "cnn"})
    assert r.outcome == "partial"
    assert r.points == pytest.approx(4 * (0.88 - 0.85) / 0.06, abs=1e-3)
    assert "Shirt (class 6)" in r.message  # tells the student where most errors are


def test_min_accuracy_below_partial_from_scores_zero() -> None:
    r = run("min_accuracy", evidence(model("cnn.keras", arch(*CNN), 0.80)), threshold=0.91, partial_from=0.85)
    assert (r.outcome, r.points) == ("fail", 0)


def test_min_accuracy_without_matching_model_fails_and_says_what_to_hand_in() -> None:
    r = run("min_accuracy", evidence(model("mlp.h5", arch(*MLP), 0.92)), threshold=0.91, select={"kind": "cnn"})
    assert r.outcome == "fail" and "Hand in" in r.message


def test_min_accuracy_when_no_selected_model_could_be_evaluated_is_an_error() -> None:
    broken = model("cnn.h5", arch(*CNN), status="error", error="could not be evaluated: boom")
    r = run("min_accuracy", evidence(broken), threshold=0.91)
    assert r.outcome == "error" and "boom" in r.message


def test_min_accuracy_all_and_each() -> None:
    ev = evidence(model("a.keras", arch(*CNN), 0.92), model("b.keras", arch(*CNN), 0.90))
    assert run("min_accuracy", ev, threshold=0.91, aggregate="all").outcome == "fail"
    each = run("min_accuracy", ev, threshold=0.91, aggregate="each")
    assert each.outcome == "partial" and each.points == 2


def test_uses_base_model_by_structure_only() -> None:
    ev = evidence(model("vgg.h5", arch(*CNN, bases=(vgg16(),))))
    r = run("uses_base_model", ev, base="vgg16")
    assert r.outcome == "pass" and "nested as layer 'vgg16'" in r.message
    plain = evidence(model("cnn.h5", arch(*CNN)))
    assert run("uses_base_model", plain, base="VGG16").outcome == "fail"


def test_base_trainable_modes() -> None:
    frozen = evidence(model("vgg.h5", arch(*CNN, bases=(vgg16(trainable=0, frozen=13),))))
    tuned = evidence(model("vgg.h5", arch(*CNN, bases=(vgg16(trainable=3, frozen=10),))))
    assert run("base_trainable", frozen, base="vgg16", mode="fine_tuned").outcome == "fail"
    assert "unfreezing" in run("base_trainable", frozen, base="vgg16", mode="fine_tuned").message
    assert run("base_trainable", tuned, base="vgg16", mode="fine_tuned").outcome == "pass"
    assert run("base_trainable", frozen, base="vgg16", mode="frozen").outcome == "pass"
    assert run("base_trainable", tuned, base="vgg16", mode="frozen").outcome == "fail"
    assert run("base_trainable", tuned, base="vgg16", mode="either").outcome == "pass"
    assert run("base_trainable", evidence(model("c.h5", arch(*CNN))), base="vgg16").outcome == "fail"


def test_non_pretrained_models_counts_models_without_pretrained_weights() -> None:
    ev = evidence(model("vgg.h5", arch(*CNN, bases=(vgg16(),))), model("cnn.h5", arch(*CNN)))
    assert run("non_pretrained_models", ev, at_least=1).outcome == "pass"
    assert run("non_pretrained_models", ev, at_least=2).outcome == "fail"
    only_vgg = evidence(model("vgg.h5", arch(*CNN, bases=(vgg16(),))))
    assert run("non_pretrained_models", only_vgg).outcome == "fail"


def test_layer_types_dense_only_with_family_alias() -> None:
    ok = evidence(model("mlp.h5", arch(*MLP)))
    sneaky = evidence(model("mlp.h5", arch(*MLP)), model("conv.h5", arch(*CNN)))
    assert run("layer_types", ok, forbidden=["conv"]).outcome == "pass"
    r = run("layer_types", sneaky, forbidden=["conv"])
    assert r.outcome == "fail" and "Conv2D" in r.message and "Dense layers only" in r.message
    assert run("layer_types", sneaky, forbidden=["conv"], aggregate="any").outcome == "pass"
    assert run("layer_types", ok, required=["pooling"]).outcome == "fail"
    assert run("layer_types", ok, allowed=["Dense", "Flatten"]).outcome == "pass"
    assert run("layer_types", evidence(model("c.h5", arch(*CNN))), allowed=["Dense", "Flatten"]).outcome == "fail"


def test_max_params() -> None:
    ev = evidence(model("a.h5", arch(*CNN, params=2_000_000, trainable=100)))
    assert run("max_params", ev, max=1_000_000).outcome == "fail"
    assert run("max_params", ev, max=1_000_000, count="trainable").outcome == "pass"


def test_models_present_partial() -> None:
    ev = evidence(model("a.h5", arch(*CNN)), model("broken.h5", None, error="truncated"))
    r = run("models_present", ev, at_least=2)
    assert r.outcome == "partial" and r.points == 2 and "truncated" in r.message


def test_max_kaggle_submissions() -> None:
    assert run("max_kaggle_submissions", evidence(kaggle=2), max=2).outcome == "pass"
    three = run("max_kaggle_submissions", evidence(kaggle=3), max=2)
    assert three.outcome == "fail" and "3 Kaggle submissions" in three.message
    assert run("max_kaggle_submissions", evidence(), max=2).outcome == "fail"
    assert run("max_kaggle_submissions", evidence(), max=2, required=False).outcome == "pass"


def test_files_present() -> None:
    ev = evidence(files=("work/hw10.ipynb",))
    assert run("files_present", ev, patterns=["*.ipynb"]).outcome == "pass"
    r = run("files_present", ev, patterns=["*.ipynb", "report.pdf"])
    assert r.outcome == "partial" and "report.pdf" in r.message


def test_evidence_that_failed_makes_every_criterion_an_error() -> None:
    ev = evidence(model("cnn.keras", arch(*CNN), 0.95)).model_copy(update={"status": "timeout", "errors": ("took 3600 s",)})
    r = run("min_accuracy", ev, threshold=0.91)
    assert r.outcome == "error" and r.points == 0 and "time limit" in r.message


@pytest.mark.parametrize("name", check_names())
def test_every_check_has_params_model_and_help(name: str) -> None:
    spec = get_check(name)
    assert issubclass(spec.params, Params) and spec.params.model_config.get("extra") == "forbid"
    assert spec.help and not spec.help.endswith(":")
    assert spec.needs, f"{name} declares what evidence it reads"


def test_registry_refuses_duplicate_and_names_both_functions() -> None:
    reg = Registry()

    class P(Params):
        pass

    @reg.register("x", params=P)
    def first(e, c):  # type: ignore[no-untyped-def]
        """First."""

    with pytest.raises(ValueError, match="first.*second|already registered by .*first"):
        @reg.register("x", params=P)
        def second(e, c):  # type: ignore[no-untyped-def]
            """Second."""


def test_unknown_check_suggests_the_close_name() -> None:
    with pytest.raises(KeyError) as exc:
        get_check("min_acuracy")
    assert "did you mean 'min_accuracy'" in str(exc.value) and "known:" in str(exc.value)


def test_min_accuracy_names_the_unreadable_file_instead_of_saying_none_was_found() -> None:
    broken = model("cnn.h5", None, error="cnn.h5: the file is truncated or damaged")
    r = run("min_accuracy", evidence(broken), threshold=0.91, select={"kind": "cnn"})
    assert r.outcome == "fail" and "truncated" in r.message and "No readable" in r.message

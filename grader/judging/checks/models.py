"""Checks about a student's models: accuracy, architecture, bases, pretrained weights, size."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from grader.judging.checks._registry import Criterion, Params, register_check, unknown_name_message
from grader.judging.checks._select import CONV_LAYERS, ModelSelector, expand_layer_names
from grader.records.evidence import Evidence, ModelEvidence
from grader.records.results import CriterionResult


def _known_bases() -> list[str]:
    from grader.facts.applications import base_names

    return base_names()


def _validate_base(name: str) -> str:
    known = _known_bases()

    def squash(text: str) -> str:
        return text.lower().replace("-", "").replace("_", "").replace(" ", "")

    by_squashed = {squash(k): k for k in known}
    if squash(name) not in by_squashed:
        raise ValueError(unknown_name_message("base model", name, known))
    return by_squashed[squash(name)]


def _count(n: int, plural: str) -> str:
    """'1 model', '2 models', 'no dense-only models'."""
    if n == 0:
        return f"no {plural}"
    return f"1 {plural.replace('models', 'model', 1)}" if n == 1 else f"{n} {plural}"


def _display(model: ModelEvidence) -> str:
    return f"'{model.path}'"


def _not_evaluated(models: list[ModelEvidence]) -> str:
    bad = [m for m in models if m.metrics is None]
    if not bad:
        return ""
    return "; not evaluated: " + ", ".join(f"{_display(m)} ({m.error or m.status})" for m in bad)


def _worst_class(model: ModelEvidence) -> str:
    if not model.metrics or not model.metrics.per_class:
        return ""
    worst = min(model.metrics.per_class, key=lambda c: c.recall)
    return f" {worst.name} (class {worst.label}) is where it errs most: recall {worst.recall:.2f}."


class AccuracyParams(Params):
    threshold: float = Field(ge=0, le=1, description="accuracy needed for full points")
    partial_from: float | None = Field(default=None, ge=0, le=1, description="accuracy that earns the first points; points grow linearly up to `threshold`")
    select: ModelSelector = ModelSelector()
    aggregate: Literal["best", "all", "each"] = "best"

    @model_validator(mode="after")
    def _order(self) -> AccuracyParams:
        if self.partial_from is not None and self.partial_from >= self.threshold:
            raise ValueError(f"partial_from ({self.partial_from}) must be below threshold ({self.threshold})")
        return self


def _fraction(acc: float, p: AccuracyParams) -> float:
    if acc >= p.threshold:
        return 1.0
    if p.partial_from is None or acc <= p.partial_from:
        return 0.0
    return (acc - p.partial_from) / (p.threshold - p.partial_from)


@register_check("min_accuracy", params=AccuracyParams, needs={"architecture", "predictions"})
def min_accuracy(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """Accuracy on the hidden test set, measured by the grader, reaches a threshold (best, all or each selected model)."""
    p: AccuracyParams = criterion.params  # type: ignore[assignment]
    chosen = p.select.pick(evidence.models)
    what = p.select.describe()
    if not chosen:
        found = ", ".join(_display(m) for m in evidence.models) or "none"
        unread = [m for m in evidence.models if m.architecture is None]
        if unread:
            return criterion.failed(
                f"No readable {what}: {'; '.join(f'{_display(m)}: {m.error}' for m in unread)}",
                f"models found: {found}",
            )
        return criterion.failed(
            f"No {what} found, so there is no accuracy to measure. Hand in the saved model (.h5 or .keras).",
            f"models found: {found}",
        )
    scored = [m for m in chosen if m.metrics is not None]
    if not scored:
        return criterion.errored(
            f"None of your {what} could be evaluated{_not_evaluated(chosen)}.",
            "no selected model has metrics",
        )
    target = f"{p.threshold:.3f}"
    skipped = _not_evaluated(chosen)
    if p.aggregate == "each":
        passing = [m for m in scored if m.metrics and m.metrics.accuracy >= p.threshold]
        frac = len(passing) / len(chosen)
        lines = ", ".join(f"{_display(m)} {m.metrics.accuracy:.4f}" for m in scored if m.metrics)
        msg = f"{len(passing)} of {len(chosen)} {what} reach {target} ({lines}){skipped}."
        return criterion.partial(frac, msg, f"threshold {target}; aggregate each")
    pick = max if p.aggregate == "best" else min
    model = pick(scored, key=lambda m: m.metrics.accuracy if m.metrics else 0.0)
    acc = model.metrics.accuracy if model.metrics else 0.0
    frac = _fraction(acc, p)
    if p.aggregate == "all" and len(scored) < len(chosen):
        frac = 0.0
    label = "best" if p.aggregate == "best" else "weakest"
    detail = f"{label} of {len(chosen)}: {model.path} accuracy {acc:.4f} on {model.metrics.n if model.metrics else 0} hidden images; threshold {target}"
    if p.partial_from is not None:
        detail += f", partial from {p.partial_from:.3f}"
    if frac >= 1:
        return criterion.passed(f"Your {label} {what.replace('models', 'model', 1)} {_display(model)} reaches {acc:.4f} (needed {target}).{skipped}", detail)
    advice = _worst_class(model)
    return criterion.partial(
        frac,
        f"Your {label} {what.replace('models', 'model', 1)} {_display(model)} reaches {acc:.4f}; the assignment asks {target}.{advice}{skipped}",
        detail,
    )


class BaseParams(Params):
    base: str = Field(description="application network, e.g. vgg16, resnet50, mobilenet_v2")
    select: ModelSelector = ModelSelector()

    @field_validator("base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return _validate_base(value)


def _with_base(models: list[ModelEvidence], base: str) -> list[tuple[ModelEvidence, object]]:
    out = []
    for m in models:
        for b in m.architecture.bases if m.architecture else ():
            if b.name == base:
                out.append((m, b))
    return out


@register_check("uses_base_model", params=BaseParams, needs={"architecture"})
def uses_base_model(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """A model uses a known application network (VGG16, ResNet50, ...) as its base, recognised by structure."""
    p: BaseParams = criterion.params  # type: ignore[assignment]
    found = _with_base(p.select.pick(evidence.models), p.base)
    if found:
        model, match = found[0]
        how = f"nested as layer '{match.container}'" if match.nested else "with its layers inlined"  # type: ignore[attr-defined]
        return criterion.passed(
            f"{_display(model)} uses {match.display} as its base ({how}).",  # type: ignore[attr-defined]
            f"{len(found)} model(s) with a {p.base} base",
        )
    others = sorted({b.display for m in evidence.models if m.architecture for b in m.architecture.bases})
    unread = [m for m in evidence.models if m.architecture is None]
    extra = f" Found other bases: {', '.join(others)}." if others else ""
    if unread:
        extra += f" Could not read: {', '.join(_display(m) for m in unread)}."
    return criterion.failed(
        f"No model uses {p.base.upper()} as its convolutional base.{extra}",
        f"{len(evidence.models)} model(s) inspected",
    )


class BaseTrainableParams(Params):
    base: str = "vgg16"
    mode: Literal["frozen", "fine_tuned", "either"] = Field(
        default="fine_tuned",
        description="frozen: every base layer frozen (feature extraction); fine_tuned: some base layers trainable",
    )

    @field_validator("base")
    @classmethod
    def _check_base(cls, value: str) -> str:
        return _validate_base(value)


@register_check("base_trainable", params=BaseTrainableParams, needs={"architecture"})
def base_trainable(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The base network is frozen (feature extraction) or partly trainable (fine-tuning), as the rubric asks."""
    p: BaseTrainableParams = criterion.params  # type: ignore[assignment]
    found = _with_base(list(evidence.models), p.base)
    if not found:
        return criterion.failed(f"No model with a {p.base.upper()} base, so its training mode cannot be checked.")
    states = []
    for model, match in found:
        trainable, frozen = match.trainable_layers, match.frozen_layers  # type: ignore[attr-defined]
        state = "frozen" if trainable == 0 else "fine_tuned"
        states.append((model, state, trainable, frozen))
        if p.mode in (state, "either"):
            words = "all base layers frozen (feature extraction)" if state == "frozen" else f"{trainable} of {trainable + frozen} base layers trainable (fine-tuning)"
            return criterion.passed(f"{_display(model)}: {words}.", f"mode asked: {p.mode}")
    listing = "; ".join(f"{_display(m)}: {t} trainable, {f} frozen base layers" for m, _, t, f in states)
    if p.mode == "fine_tuned":
        msg = f"Your {p.base.upper()} base is completely frozen; fine-tuning means unfreezing its top block (e.g. block5) and training again with a low learning rate."
    else:
        msg = f"Your {p.base.upper()} base has trainable layers; feature extraction asks for base.trainable = False."
    return criterion.failed(msg, listing)


class NonPretrainedParams(Params):
    at_least: int = Field(default=1, ge=1)
    select: ModelSelector = ModelSelector()


@register_check("non_pretrained_models", params=NonPretrainedParams, needs={"architecture", "pretrained"})
def non_pretrained_models(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """At least N models are trained from scratch (no pretrained base)."""
    p: NonPretrainedParams = criterion.params  # type: ignore[assignment]
    models = [m for m in p.select.pick(evidence.models) if m.status != "error"]
    own = [m for m in models if m.pretrained is not None and m.pretrained.value is False]
    unknown = [m for m in models if m.pretrained is None or m.pretrained.value is None]
    detail = "; ".join(f"{m.path}: {m.pretrained.evidence if m.pretrained else 'unknown'}" for m in models)
    if len(own) >= p.at_least:
        return criterion.passed(
            f"Trained from scratch: {', '.join(_display(m) for m in own)}.", detail
        )
    tail = f" The grader could not tell for {', '.join(_display(m) for m in unknown)}." if unknown else ""
    return criterion.failed(
        f"The assignment asks for at least {p.at_least} model(s) trained from scratch; found {len(own)}.{tail}", detail
    )


class LayerTypesParams(Params):
    select: ModelSelector = ModelSelector()
    allowed: tuple[str, ...] | None = None
    forbidden: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    aggregate: Literal["all", "any"] = "all"

    @model_validator(mode="after")
    def _something(self) -> LayerTypesParams:
        if self.allowed is None and not self.forbidden and not self.required:
            raise ValueError("give at least one of allowed, forbidden, required")
        return self


_STRUCTURAL = frozenset({"InputLayer", "Sequential", "Functional", "Model"})


def _layer_problems(model: ModelEvidence, p: LayerTypesParams) -> list[str]:
    arch = model.architecture
    assert arch is not None
    classes = {c for c in arch.layer_classes if c not in _STRUCTURAL}
    problems = []
    bad = sorted(classes & expand_layer_names(p.forbidden))
    if bad:
        problems.append(f"uses {', '.join(bad)}")
    if p.allowed is not None:
        extra = sorted(classes - expand_layer_names(p.allowed))
        if extra:
            problems.append(f"uses layers outside the allowed set: {', '.join(extra)}")
    missing = [r for r in p.required if not classes & expand_layer_names((r,))]
    if missing:
        problems.append(f"has no {', '.join(missing)} layer")
    return problems


@register_check("layer_types", params=LayerTypesParams, needs={"architecture"})
def layer_types(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """Models use only allowed layer types, none of the forbidden ones, and all required ones (`conv`, `pooling` are families)."""
    p: LayerTypesParams = criterion.params  # type: ignore[assignment]
    models = [m for m in p.select.pick(evidence.models) if m.architecture is not None]
    if not models:
        return criterion.failed("No readable model to check the layer types of.")
    report = {m.path: _layer_problems(m, p) for m in models}
    ok = [m for m in models if not report[m.path]]
    detail = "; ".join(f"{path}: {', '.join(pr) or 'ok'}" for path, pr in report.items())
    if (p.aggregate == "all" and len(ok) == len(models)) or (p.aggregate == "any" and ok):
        return criterion.passed(f"Layer types are as the assignment asks ({len(ok)} of {len(models)} models checked).", detail)
    worst = next(m for m in models if report[m.path])
    hint = ""
    if set(p.forbidden) & {"conv", *CONV_LAYERS}:
        hint = " This assignment asks for a network of Dense layers only."
    return criterion.failed(f"{_display(worst)} {'; '.join(report[worst.path])}.{hint}", detail)


class MaxParamsParams(Params):
    max: int = Field(gt=0)
    select: ModelSelector = ModelSelector()
    count: Literal["total", "trainable"] = "total"


@register_check("max_params", params=MaxParamsParams, needs={"architecture"})
def max_params(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """Every selected model has at most N parameters (total or trainable)."""
    p: MaxParamsParams = criterion.params  # type: ignore[assignment]
    models = [m for m in p.select.pick(evidence.models) if m.architecture is not None]
    if not models:
        return criterion.failed("No readable model to count the parameters of.")

    def n(m: ModelEvidence) -> int:
        a = m.architecture
        assert a is not None
        return (a.trainable_params if p.count == "trainable" else a.total_params) or 0

    over = [m for m in models if n(m) > p.max]
    detail = "; ".join(f"{m.path}: {n(m):,}" for m in models)
    if not over:
        return criterion.passed(f"All {len(models)} models have at most {p.max:,} {p.count} parameters.", detail)
    return criterion.failed(
        f"{_display(over[0])} has {n(over[0]):,} {p.count} parameters; the limit is {p.max:,}.", detail
    )


class ModelsPresentParams(Params):
    at_least: int = Field(default=1, ge=1)
    select: ModelSelector = ModelSelector()


@register_check("models_present", params=ModelsPresentParams, needs={"architecture"})
def models_present(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The submission holds at least N readable model files of the selected kind."""
    p: ModelsPresentParams = criterion.params  # type: ignore[assignment]
    models = [m for m in p.select.pick(evidence.models) if m.architecture is not None]
    broken = [m for m in evidence.models if m.architecture is None]
    detail = ", ".join(m.path for m in models) or "none"
    tail = f" Unreadable: {', '.join(f'{_display(m)} ({m.error})' for m in broken)}." if broken else ""
    if len(models) >= p.at_least:
        return criterion.passed(f"Found {_count(len(models), p.select.describe())}.{tail}", detail)
    return criterion.partial(
        len(models) / p.at_least,
        f"Found {_count(len(models), p.select.describe())}; the assignment asks for {p.at_least}. Save each model with model.save('name.keras') and hand the file in.{tail}",
        detail,
    )

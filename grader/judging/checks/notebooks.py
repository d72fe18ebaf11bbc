"""Checks about submitted notebooks: that they run, what they contain, what they claim, how they train.

All read `NotebookEvidence` (static facts from the AST and the saved outputs, and `run` when the
rubric executes notebooks); none reads a file.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from grader.judging.checks._registry import Criterion, Params, register_check
from grader.judging.checks._select import CONV_LAYERS, ModelSelector
from grader.records.evidence import Claim, Evidence, NotebookEvidence
from grader.facts.notebooks import matches_globs
from grader.records.results import CriterionResult

_RERUN = "Restart the kernel and run every cell top to bottom before you hand the notebook in."


def _selected(evidence: Evidence, globs: tuple[str, ...]) -> list[NotebookEvidence]:
    return [nb for nb in evidence.notebooks if matches_globs(nb.path, globs)]


class NotebookGlobs(Params):
    select: tuple[str, ...] = Field(default=("*.ipynb",), min_length=1, description="globs of the notebooks this criterion is about")


class ExecutesParams(NotebookGlobs):
    require: Literal["all", "any"] = Field(default="all", description="every selected notebook must run, or one is enough")


@register_check("notebook_executes", params=ExecutesParams, needs={"notebooks", "notebook_runs"})
def notebook_executes(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The notebook runs from top to bottom in the grader's sandbox without an error (needs notebooks.execute)."""
    p: ExecutesParams = criterion.params  # type: ignore[assignment]
    notebooks = _selected(evidence, p.select)
    if not notebooks:
        return criterion.failed(f"No notebook matching {', '.join(p.select)} was found in your submission.")
    ran = [nb for nb in notebooks if nb.run is not None and nb.run.status != "not_run"]
    if not ran:
        reasons = "; ".join(f"{nb.path}: {nb.run.message if nb.run else nb.error or 'not executed'}" for nb in notebooks)
        return criterion.errored("Your notebook was not executed, so this could not be checked.", reasons)
    good = [nb for nb in ran if nb.run is not None and nb.run.status == "completed"]
    lines = []
    for nb in notebooks:
        run = nb.run
        if run is None or run.status == "not_run":
            lines.append(f"{nb.path}: not executed ({run.message if run else nb.error or 'no run'})")
        elif run.status == "completed":
            lines.append(f"{nb.path}: ran {run.cells_run} code cells in {run.seconds:.0f} s")
        else:
            failing = next((c for c in run.cells if c.index == run.failed_cell and c.error), None)
            why = f" ({failing.error.splitlines()[0][:200]})" if failing and failing.error else ""
            lines.append(f"{nb.path}: {run.message}{why}")
    detail = "; ".join(lines)
    if p.require == "any":
        if good:
            return criterion.passed(f"{good[0].path} runs from top to bottom in the grader's sandbox.", detail)
        return criterion.failed(f"None of your notebooks ran to the end: {detail}. {_RERUN}", detail)
    if len(good) == len(notebooks):
        return criterion.passed(f"{_plural(len(good), 'notebook')} run from top to bottom in the grader's sandbox.", detail)
    bad = [line for line, nb in zip(lines, notebooks, strict=True) if nb not in good]
    return criterion.partial(len(good) / len(notebooks), f"{'; '.join(bad)}. {_RERUN}", detail)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class ContainsParams(NotebookGlobs):
    markdown: tuple[str, ...] = Field(default=(), description="regular expressions; each must match some markdown cell (case-insensitive)")
    code: tuple[str, ...] = Field(default=(), description="regular expressions; each must match some code cell's source")
    imports: tuple[str, ...] = Field(default=(), description="modules the code must import (a prefix: 'tensorflow' matches tensorflow.keras)")
    layers: tuple[str, ...] = Field(default=(), description="Keras layer classes the code must construct, e.g. Conv2D")
    explain: str = Field(default="", description="what to tell a student who misses something, e.g. 'Add a Conclusions section.'")

    @field_validator("markdown", "code")
    @classmethod
    def _compiles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value


@register_check("notebook_contains", params=ContainsParams, needs={"notebooks"})
def notebook_contains(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The notebook has the required markdown sections, code patterns, imports or layers (read, not run)."""
    p: ContainsParams = criterion.params  # type: ignore[assignment]
    notebooks = [nb for nb in _selected(evidence, p.select) if nb.error is None]
    wanted = len(p.markdown) + len(p.code) + len(p.imports) + len(p.layers)
    if not notebooks:
        return criterion.failed(f"No readable notebook matching {', '.join(p.select)} was found in your submission.")
    if wanted == 0:
        return criterion.passed("Nothing to look for (the rubric lists no patterns).")
    cells = [c for nb in notebooks for c in nb.content]
    markdown = [c.source for c in cells if c.cell_type == "markdown"]
    code = [c.source for c in cells if c.cell_type == "code"]
    imports = {i for nb in notebooks for i in nb.imports}
    layers = {name for nb in notebooks for name in nb.layer_calls}
    missing = [f"a markdown cell matching {pat!r}" for pat in p.markdown
               if not any(re.search(pat, text, re.IGNORECASE | re.MULTILINE) for text in markdown)]
    missing += [f"code matching {pat!r}" for pat in p.code if not any(re.search(pat, text, re.MULTILINE) for text in code)]
    missing += [f"an import of {mod}" for mod in p.imports if not any(i == mod or i.startswith(mod + ".") for i in imports)]
    missing += [f"a {layer} layer" for layer in p.layers if layer not in layers]
    detail = f"{len(markdown)} markdown and {len(code)} code cells in {', '.join(nb.path for nb in notebooks)}"
    if not missing:
        return criterion.passed("Your notebook has everything this criterion looks for.", detail)
    hint = f" {p.explain}" if p.explain else ""
    return criterion.partial(1 - len(missing) / wanted, f"Not found in your notebook: {'; '.join(missing)}.{hint}", detail)


class ClaimsParams(NotebookGlobs):
    tolerance: float = Field(default=0.02, ge=0, le=1, description="largest allowed |claimed - measured| accuracy")
    origin: Literal["submitted", "executed"] = Field(default="submitted", description="claims in the outputs as handed in, or printed when the grader ran the notebook")
    models: ModelSelector = ModelSelector()
    required: bool = Field(default=True, description="fail when the notebook prints no test accuracy")


def _last_claim(notebooks: list[NotebookEvidence], origin: str) -> Claim | None:
    claims = [c for nb in notebooks
              for c in (nb.claims if origin == "submitted" else (nb.run.claims if nb.run else ()))
              if c.metric == "test_accuracy"]
    return claims[-1] if claims else None


@register_check("claims_match_measured", params=ClaimsParams, needs={"notebooks", "predictions"})
def claims_match_measured(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """The test accuracy the notebook prints agrees with what the grader measures on the hidden set (within a tolerance)."""
    p: ClaimsParams = criterion.params  # type: ignore[assignment]
    notebooks = _selected(evidence, p.select)
    claim = _last_claim(notebooks, p.origin)
    if claim is None:
        message = ("Your notebook prints no test accuracy the grader could find; print it, e.g. "
                   "print(f\"Test accuracy: {acc:.4f}\").")
        return criterion.failed(message) if p.required else criterion.passed("No printed test accuracy to compare; none is required.")
    measured = [m for m in p.models.pick(evidence.models) if m.metrics is not None]
    if not measured:
        return criterion.errored(f"Your notebook claims a test accuracy of {claim.value:.4f}, but no model of yours "
                                 "could be measured to compare it with.", f"claim from cell {claim.cell}: {claim.text}")
    closest = min(measured, key=lambda m: abs(m.metrics.accuracy - claim.value))  # type: ignore[union-attr]
    acc = closest.metrics.accuracy  # type: ignore[union-attr]
    detail = (f"claimed {claim.value:.4f} (cell {claim.cell}: {claim.text!r}); measured: "
              + ", ".join(f"{m.path} {m.metrics.accuracy:.4f}" for m in measured))  # type: ignore[union-attr]
    gap = abs(acc - claim.value)
    if gap <= p.tolerance:
        return criterion.passed(f"Your notebook claims {claim.value:.4f}; the grader measured {acc:.4f} for "
                                f"{closest.path} (within {p.tolerance:.3f}).", detail)
    return criterion.failed(
        f"Your notebook claims a test accuracy of {claim.value:.4f}, but the grader measured {acc:.4f} for your closest "
        f"model ({closest.path}): a gap of {gap:.4f}, more than the {p.tolerance:.3f} allowed. Check that the saved "
        "model is the one you evaluated, and that your test set is the official test split.", detail)


Practice = Literal["test_as_validation", "conv_layers", "augmentation", "frozen_base", "fine_tuning", "validation"]
_PRACTICE_WORDS: dict[str, tuple[str, str]] = {  # practice -> (what it is, what to do)
    "test_as_validation": ("the test set is used as validation data in fit()",
                           "validate on a split of the training data (validation_split=0.1) and keep the test set for the end"),
    "conv_layers": ("convolutional layers are used", "this assignment asks for Dense layers only"),
    "augmentation": ("data augmentation", "add augmentation (e.g. RandomFlip / RandomRotation layers or ImageDataGenerator)"),
    "frozen_base": ("a frozen base (trainable = False)", "freeze the convolutional base for feature extraction: base.trainable = False"),
    "fine_tuning": ("fine-tuning (unfreezing base layers)", "unfreeze the top of the base, e.g. for layer in base.layers[-4:]: layer.trainable = True"),
    "validation": ("validation during training", "pass validation_split= or validation_data= to fit()"),
}


def practices_found(nb: NotebookEvidence) -> set[str]:
    """Which of the practices a notebook's code shows (from its AST facts)."""
    found: set[str] = set()
    if any(f.validation == "test" for f in nb.fit_calls):
        found.add("test_as_validation")
    if set(nb.layer_calls) & CONV_LAYERS:
        found.add("conv_layers")
    if nb.augmentation or any(f.augmentation for f in nb.fit_calls):
        found.add("augmentation")
    if any(t.value is False for t in nb.trainable_sets):
        found.add("frozen_base")
    if any(t.value is True for t in nb.trainable_sets):
        found.add("fine_tuning")
    if any(f.validation is not None or f.validation_split for f in nb.fit_calls):
        found.add("validation")
    return found


class PracticesParams(NotebookGlobs):
    required: tuple[Practice, ...] = Field(default=(), description="practices the code must show")
    forbidden: tuple[Practice, ...] = Field(default=(), description="practices the code must not show")


@register_check("notebook_practices", params=PracticesParams, needs={"notebooks"})
def notebook_practices(evidence: Evidence, criterion: Criterion) -> CriterionResult:
    """Training practices read from the notebook's code: test set as validation data, Conv2D, augmentation, freezing, fine-tuning."""
    p: PracticesParams = criterion.params  # type: ignore[assignment]
    notebooks = [nb for nb in _selected(evidence, p.select) if nb.error is None]
    if not notebooks:
        return criterion.failed(f"No readable notebook matching {', '.join(p.select)} was found in your submission.")
    found = set().union(*(practices_found(nb) for nb in notebooks))
    problems = [f"{_PRACTICE_WORDS[x][0]} is missing: {_PRACTICE_WORDS[x][1]}" for x in p.required if x not in found]
    problems += [f"{_PRACTICE_WORDS[x][0]}: {_PRACTICE_WORDS[x][1]}" for x in p.forbidden if x in found]
    total = len(p.required) + len(p.forbidden)
    detail = f"found in the code: {', '.join(sorted(found)) or 'none of the listed practices'}"
    if not problems:
        return criterion.passed("Your training code follows the practices this criterion looks for.", detail)
    return criterion.partial(1 - len(problems) / total if total else 0.0, "; ".join(problems).capitalize() + ".", detail)

"""The registry of check kinds: a name, a pure function, and the model of its parameters.

Built-in checks register exactly as a course add-on would (``@register_check``). The table is
private; ``get_check`` and ``check_names`` are the API, and an unknown name is an error that
suggests the closest known one.
"""

from __future__ import annotations

import difflib
import inspect as _pyinspect
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from grader.records.evidence import Evidence
from grader.records.results import CriterionResult, Outcome

Needs = frozenset[str]
# "notebook_runs": the check reads what executing notebooks showed, so the rubric must say
# `notebooks: {execute: true}` (checked when the rubric is read)
KNOWN_NEEDS = frozenset({"competition", "architecture", "predictions", "pretrained", "notebooks", "notebook_runs", "kaggle", "files"})


class Params(BaseModel):
    """Base class of every check's parameter model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Criterion(BaseModel):
    """A rubric criterion with its validated parameters, as a check receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    id: str
    title: str
    points: float
    check: str
    params: Params
    description: str = ""

    def result(self, outcome: Outcome, fraction: float, message: str, detail: str = "") -> CriterionResult:
        """Build this criterion's result; `fraction` of the points is awarded (clamped to [0, 1])."""
        fraction = min(1.0, max(0.0, fraction))
        return CriterionResult(
            id=self.id,
            title=self.title,
            outcome=outcome,
            points=round(self.points * fraction, 2),  # grade books keep hundredths
            max_points=self.points,
            message=message,
            detail=detail,
        )

    def passed(self, message: str, detail: str = "") -> CriterionResult:
        return self.result("pass", 1.0, message, detail)

    def failed(self, message: str, detail: str = "") -> CriterionResult:
        return self.result("fail", 0.0, message, detail)

    def partial(self, fraction: float, message: str, detail: str = "") -> CriterionResult:
        outcome: Outcome = "pass" if fraction >= 1 else ("fail" if fraction <= 0 else "partial")
        return self.result(outcome, fraction, message, detail)

    def errored(self, message: str, detail: str = "") -> CriterionResult:
        return self.result("error", 0.0, message, detail)


CheckFunction = Callable[[Evidence, Criterion], CriterionResult]


@dataclass(frozen=True)
class CheckSpec:
    name: str
    function: CheckFunction
    params: type[Params]
    needs: Needs
    help: str

    def __call__(self, evidence: Evidence, criterion: Criterion) -> CriterionResult:
        return self.function(evidence, criterion)


class Registry:
    """A table of checks. The default one lives in this module; tests may build their own."""

    def __init__(self) -> None:
        self._checks: dict[str, CheckSpec] = {}

    def register(self, name: str, *, params: type[Params], needs: set[str] | frozenset[str] = frozenset()) -> Callable[[CheckFunction], CheckFunction]:
        def decorate(function: CheckFunction) -> CheckFunction:
            if name in self._checks:
                other = self._checks[name].function
                raise ValueError(
                    f"check {name!r} is already registered by {other.__module__}.{other.__qualname__}; "
                    f"{function.__module__}.{function.__qualname__} cannot take the same name"
                )
            if not (isinstance(params, type) and issubclass(params, Params)):
                raise TypeError(f"check {name!r}: params must be a subclass of grader.judging.checks.Params")
            unknown = set(needs) - KNOWN_NEEDS
            if unknown:
                raise ValueError(f"check {name!r}: unknown needs {sorted(unknown)}; known: {sorted(KNOWN_NEEDS)}")
            doc = _pyinspect.getdoc(function) or ""
            if not doc.strip():
                raise ValueError(f"check {name!r} ({function.__qualname__}) needs a docstring: its first line is the help text")
            self._checks[name] = CheckSpec(name, function, params, frozenset(needs), doc.strip().splitlines()[0])
            return function

        return decorate

    def get(self, name: str) -> CheckSpec:
        try:
            return self._checks[name]
        except KeyError:
            raise KeyError(unknown_name_message("check", name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._checks)


def unknown_name_message(kind: str, name: str, known: list[str]) -> str:
    """`unknown check 'acuracy_at_least'; did you mean 'accuracy_at_least'? known: ...`"""
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown {kind} {name!r}{hint} known: {', '.join(known)}"


_REGISTRY = Registry()
register_check = _REGISTRY.register


def get_check(name: str) -> CheckSpec:
    """The registered check called `name`; KeyError with a close match and the known names."""
    return _REGISTRY.get(name)


def check_names() -> list[str]:
    """The names of all registered checks, sorted."""
    return _REGISTRY.names()

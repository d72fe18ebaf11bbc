"""Check kinds: pure functions `check(evidence, criterion) -> CriterionResult`, registered by name.

Importing this package registers the built-in families (`models`, `files`, `kaggle`, `competition`, `notebooks`).
"""

from grader.judging.checks._registry import (
    CheckSpec,
    Criterion,
    Params,
    check_names,
    get_check,
    register_check,
    unknown_name_message,
)
from grader.judging.checks._select import ModelSelector, model_kind
from grader.judging.checks import files as _files  # noqa: F401  (registers the built-in checks)
from grader.judging.checks import competition as _competition  # noqa: F401
from grader.judging.checks import kaggle as _kaggle  # noqa: F401
from grader.judging.checks import models as _models  # noqa: F401
from grader.judging.checks import notebooks as _notebooks  # noqa: F401

__all__ = [
    "CheckSpec",
    "Criterion",
    "ModelSelector",
    "Params",
    "check_names",
    "get_check",
    "model_kind",
    "register_check",
    "unknown_name_message",
]

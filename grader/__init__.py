"""grader: grade machine-learning homework (saved Keras models, notebooks) against a rubric.

The packages follow the data's way (docs/architecture.md): `inputs` (rubric, submissions, data sets)
-> `facts` (static reading, gathering evidence through `sandbox`, whose `worker` runs inside) ->
`scoring` (the only place with labels) -> `judging` (pure checks) -> `report` (sinks); `records`
holds the plain data that travels between them, and `pipeline` and `cli` sit on top.

The names below are imported when first used, so that a sandboxed worker (`python -m
grader.worker.evaluate`), which imports this package first, does not import the judge and its
dependencies.
"""

from __future__ import annotations

from typing import Any

from grader._version import __version__

__all__ = ["CriterionResult", "Evidence", "Results", "Rubric", "__version__", "grade", "judge", "load_rubric"]

_LAZY = {
    "Evidence": ("grader.records.evidence", "Evidence"),
    "CriterionResult": ("grader.records.results", "CriterionResult"),
    "Results": ("grader.records.results", "Results"),
    "Rubric": ("grader.inputs.rubric", "Rubric"),
    "load_rubric": ("grader.inputs.rubric", "load_rubric"),
    "judge": ("grader.judging.judge", "judge"),
    "grade": ("grader.pipeline", "grade"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'grader' has no attribute {name!r}")
    from importlib import import_module

    module, attr = _LAZY[name]
    return getattr(import_module(module), attr)

"""Sinks: each writes files from a Results object and returns their paths. Sinks only read.

`write(results, out_dir) -> list[Path]`, registered by name and chosen with ``--format html,csv``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from grader.checks._registry import unknown_name_message
from grader.results import Results

Sink = Callable[[Results, Path], list[Path]]
_SINKS: dict[str, Sink] = {}


def register_sink(name: str) -> Callable[[Sink], Sink]:
    def decorate(function: Sink) -> Sink:
        if name in _SINKS:
            raise ValueError(f"sink {name!r} is already registered by {_SINKS[name].__module__}")
        _SINKS[name] = function
        return function

    return decorate


def sink_names() -> list[str]:
    return sorted(_SINKS)


def get_sink(name: str) -> Sink:
    if name not in _SINKS:
        raise KeyError(unknown_name_message("format", name, sink_names()))
    return _SINKS[name]


def write_reports(results: Results, out: Path, formats: Iterable[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name in formats:
        written += get_sink(name)(results, out)
    return written


from grader.report import files as _files  # noqa: E402,F401  (registers json and csv)
from grader.report import html as _html  # noqa: E402,F401  (registers html)
from grader.report import autograders as _autograders  # noqa: E402,F401  (classroom, summary, gradescope, canvas, moodle)

__all__ = ["get_sink", "register_sink", "sink_names", "write_reports"]

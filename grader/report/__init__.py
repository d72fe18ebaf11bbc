"""Sinks: each writes files from a Results object and returns their paths. Sinks only read.

`write(results, out_dir, options) -> list[Path]`, registered by name and chosen with ``--format html,csv``.
`options` carries how to render (the pages' words), never anything that changes a score.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from grader.atomic import write_fault
from grader.judging.checks import unknown_name_message
from grader.records.results import Results

@dataclass(frozen=True)
class ReportOptions:
    """How sinks render. `strings`: the pages' words (grader.report.strings.load_strings); `jobs`:
    processes that draw charts (0: up to 4, as the machine has cores)."""

    strings: Mapping[str, str] = field(default_factory=dict)
    jobs: int = 0


Sink = Callable[[Results, Path, ReportOptions], list[Path]]
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


def write_reports(results: Results, out: Path, formats: Iterable[str], options: ReportOptions | None = None) -> list[Path]:
    """Run each sink in `formats`. A sink that fails does not keep the others from writing: every
    sink runs, then the first failure is raised. A write the disk refuses (full, read-only) is a
    GraderFault that names `out` and the fix (exit 1), and leaves no temporary file behind."""
    sinks = [(name, get_sink(name)) for name in formats]  # an unknown name fails before anything is written
    written: list[Path] = []
    first: BaseException | None = None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_fault(exc, out, "the reports") from None
    for _, sink in sinks:
        try:
            written += sink(results, out, options or ReportOptions())
        except OSError as exc:
            raise write_fault(exc, out, "the reports") from None  # the next sink would meet the same disk
        except Exception as exc:  # noqa: BLE001  (raised below, once the other sinks have written)
            first = first or exc
    if first is not None:
        raise first
    return written


from grader.report import files as _files  # noqa: E402,F401  (registers json and csv)
from grader.report import html as _html  # noqa: E402,F401  (registers html)
from grader.report import autograders as _autograders  # noqa: E402,F401  (classroom, summary, gradescope, canvas, moodle)

__all__ = ["ReportOptions", "get_sink", "register_sink", "sink_names", "write_reports"]

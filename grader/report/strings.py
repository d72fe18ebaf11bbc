"""The words of the report pages: English in ``strings/en.yaml``, a teacher's translation on top.

A translation is a YAML mapping of the same keys (``--report-strings FILE``, or ``report_strings``
in ``[tool.grader]``). Keys it leaves out stay English; a key the English file does not have, a
value that is not text, or a placeholder the English text does not offer is an error that names
the file, the line and the key, raised before any submission is graded.
"""

from __future__ import annotations

import difflib
import string
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

import yaml

from grader.errors import GraderError


@cache
def english() -> Mapping[str, str]:
    text = resources.files("grader.report").joinpath("strings/en.yaml").read_text(encoding="utf-8")
    return MappingProxyType({str(k): str(v) for k, v in yaml.safe_load(text).items()})


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def _lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line and not line[0].isspace() and not line.startswith("#") and ":" in line:
            lines.setdefault(line.split(":", 1)[0].strip().strip("'\""), number)
    return lines


def load_strings(path: Path | None) -> Mapping[str, str]:
    """English, with the translation in `path` (if any) applied on top. Raises GraderError."""
    base = english()
    if path is None:
        return base
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise GraderError(f"{path}: cannot read the report strings: {exc}",
                          hint="it must be a YAML mapping of the keys in grader/report/strings/en.yaml") from None
    if not isinstance(data, dict):
        raise GraderError(f"{path}: the report strings must be a YAML mapping (key: text)")
    lines = _lines(text)
    problems = []
    merged = dict(base)
    for key, value in data.items():
        where = f"{path}:{lines.get(str(key), 1)}"
        if key not in base:
            close = difflib.get_close_matches(str(key), list(base), n=1)
            problems.append(f"{where}: unknown key {key!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
        elif not isinstance(value, (str, int, float)):
            problems.append(f"{where}: key {key!r}: must be text; got {type(value).__name__}")
        elif extra := _placeholders(str(value)) - _placeholders(base[key]):
            problems.append(f"{where}: key {key!r}: unknown placeholder(s) {', '.join(sorted('{' + e + '}' for e in extra))}; "
                            f"this text can use: {', '.join(sorted('{' + p + '}' for p in _placeholders(base[key]))) or 'none'}")
        else:
            merged[key] = str(value)
    if problems:
        raise GraderError("; ".join(problems), hint="the English keys and placeholders are in grader/report/strings/en.yaml")
    return MappingProxyType(merged)

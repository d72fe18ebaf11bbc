"""Machine-readable sinks: results.json (everything) and grades.csv (one row per student).

Every CSV the grader writes goes through `csv_text`, which neutralises each cell that a spreadsheet
could take for a formula (`csv_cell`): grades.csv here, the Canvas and Moodle imports in
grader.report.autograders, and any CSV sink added later.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from grader.atomic import write_atomic
from grader.report import ReportOptions, register_sink
from grader.records.results import Results


def _atomic_write(path: Path, text: str) -> Path:
    """`grader.atomic.write_atomic`: whole or not at all, no temporary file left on any error."""
    return write_atomic(path, text)


@register_sink("json")
def write_json(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """results.json: the whole Results object; `grade report results.json` re-renders from it."""
    return [_atomic_write(out / "results.json", results.model_dump_json(indent=1))]


_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_TRIGGERS = frozenset("=+-@")
_CONTROL_START = ("\t", "\r", "\n")


def _first_significant(value: str) -> str:
    """The first character of `value` that is not white space or an invisible format character
    (zero-width space, BOM, direction marks), in its compatibility form: a full-width '＝' is '='."""
    for ch in value:
        if ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc"):
            continue
        return unicodedata.normalize("NFKC", ch)[:1]
    return ""


def csv_cell(value: object) -> str:
    """One CSV cell that no spreadsheet runs as a formula (CSV injection; OWASP's advice).

    A plain number ("3", "-1.5", "2e-3") stays a number. Any other text that starts with '=', '+',
    '-' or '@' (also after white space or invisible characters, and in their full-width or other
    compatibility forms: '＝', '＋', '－', '＠', '﹦', ...) or with a tab, CR or LF gets a leading
    apostrophe, which spreadsheets read as "this is text"."""
    text = "" if value is None else str(value)
    if _NUMBER.fullmatch(text):
        return text
    if text.startswith(_CONTROL_START) or _first_significant(text) in _TRIGGERS:
        return "'" + text
    return text


def csv_text(rows: Iterable[Iterable[object]]) -> str:
    """A CSV file's text (RFC 4180 quoting, CRLF), every cell, header included, through `csv_cell`."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return buffer.getvalue()


@register_sink("csv")
def write_csv(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """grades.csv: student, total, max, status, best accuracy, then points per criterion id."""
    rows: list[list[object]] = [["student", "total", "max", "status", "best_accuracy", *(c.id for c in results.criteria)]]
    for s in results.students:
        by_id = {c.id: c for c in s.criteria}
        rows.append([
            s.student, f"{s.points:g}", f"{s.max_points:g}", s.status,
            "" if s.best_accuracy is None else f"{s.best_accuracy:.4f}",
            *(f"{by_id[c.id].points:g}" if c.id in by_id else "" for c in results.criteria),
        ])
    return [_atomic_write(out / "grades.csv", csv_text(rows))]

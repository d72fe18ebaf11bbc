"""Machine-readable sinks: results.json (everything) and grades.csv (one row per student)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from grader.report import ReportOptions, register_sink
from grader.results import Results


def _atomic_write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@register_sink("json")
def write_json(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """results.json: the whole Results object; `grade report results.json` re-renders from it."""
    return [_atomic_write(out / "results.json", results.model_dump_json(indent=1))]


def _cell(value: str) -> str:
    # Spreadsheet formula injection: a student id like "=HYPERLINK(...)" must stay text.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@register_sink("csv")
def write_csv(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """grades.csv: student, total, max, status, best accuracy, then points per criterion id."""
    path = out / "grades.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["student", "total", "max", "status", "best_accuracy", *(c.id for c in results.criteria)])
        for s in results.students:
            by_id = {c.id: c for c in s.criteria}
            writer.writerow([
                _cell(s.student), f"{s.points:g}", f"{s.max_points:g}", s.status,
                "" if s.best_accuracy is None else f"{s.best_accuracy:.4f}",
                *(f"{by_id[c.id].points:g}" for c in results.criteria),
            ])
    os.replace(tmp, path)
    return [path]

"""HTML sink: index.html for the class and one self-contained page per student.

Jinja2 with autoescaping everywhere: student ids, file names, layer names and error messages are
student-controlled and must never become markup. No CDN, no external file: CSS and SVG inline.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape

from grader.report import register_sink
from grader.results import Results, StudentResult


def file_stem(student: str) -> str:
    """A file name stem for a student's files that cannot escape the report folder."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", student).lstrip(".") or "student"
    return safe[:100]


def page_name(student: str) -> str:
    return f"{file_stem(student)}.html"


def _env() -> Environment:
    env = Environment(loader=PackageLoader("grader", "report/templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["page"] = page_name
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.2f}%"
    env.filters["num"] = lambda v: "–" if v is None else f"{v:,}"
    env.filters["pts"] = lambda v: f"{v:g}"
    return env


def _histogram(results: Results, bins: int = 10) -> list[dict[str, object]]:
    top = results.max_points or 1
    counts = [0] * bins
    for s in results.students:
        counts[min(bins - 1, int(bins * s.points / top))] += 1
    return [{"lo": top * i / bins, "hi": top * (i + 1) / bins, "count": c} for i, c in enumerate(counts)]


def _write(path: Path, text: str) -> Path:
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@register_sink("html")
def write_html(results: Results, out: Path) -> list[Path]:
    """index.html (the class) and <student>.html (feedback per student)."""
    env = _env()
    written = [_write(out / "index.html", env.get_template("index.html.j2").render(r=results, hist=_histogram(results)))]
    student_tpl = env.get_template("student.html.j2")
    for s in results.students:
        written.append(_write(out / page_name(s.student), student_tpl.render(r=results, s=s, base_paths=_base_paths(s))))
    return written


def _base_paths(s: StudentResult) -> dict[str, dict[str, str]]:
    """For each model: '/'-joined layer path -> base display name, to mark base layers in tables."""
    out: dict[str, dict[str, str]] = {}
    for m in s.evidence.models:
        marks: dict[str, str] = {}
        for b in m.architecture.bases if m.architecture else ():
            if b.container:
                marks[b.container] = b.display
            for p in b.layers:
                marks[p] = b.display
        out[m.path] = marks
    return out

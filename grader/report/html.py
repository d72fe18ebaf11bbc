"""HTML sink: the class page for the teacher, and two pages per student.

    index.html                the class (teacher): table, histogram, item analysis, similarity
    students/<student>.html   the teacher's view of one student: everything, with the criteria's
                              details and the similarity flags that involve the student
    feedback/<student>.html   the student's own page, to hand out: no other student, no detail meant
                              for the teacher, nothing about the hidden set but its size

Page names come from `grader.report.names.file_stems`: one file per student, however alike their
ids, and the class page's links follow it.

What a student must not see is left out of the HTML of the feedback pages, not hidden with CSS
(`view == "student"` in the templates; tests read the HTML for it).

Every page is one self-contained file: CSS inline, charts as inline SVG (matplotlib), thumbnails
as data: URIs, no CDN and no request to anywhere (a Content-Security-Policy says so, and allows
only the page's own script, by hash). Jinja2 autoescapes everything: student ids, file names,
layer names, notebook text and error messages are student-controlled and never become markup.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from grader.atomic import write_atomic
from grader.report import ReportOptions, register_sink
from grader.report import charts
from grader.report.names import file_stems, preferred_stem
from grader.report.strings import english
from grader.report.views import StudentView, item_analysis, student_view
from grader.records.results import Results

STUDENT_DIR = "feedback"
TEACHER_DIR = "students"


def page_name(student: str, stems: Mapping[str, str] | None = None) -> str:
    """The page file of `student`: its stem in the class's `stems` (grader.report.names.file_stems),
    else the stem it would have alone. Never leaves the report folder; two students never share one."""
    return f"{(stems or {}).get(student) or preferred_stem(student)}.html"


def _fmt(template: str, **values: object) -> Markup:
    """A translatable string with its placeholders filled; the text and the values are escaped
    (a value that is already Markup, e.g. from the `strong` filter, is kept)."""
    return escape(template).format(**{k: v if isinstance(v, Markup) else escape(str(v)) for k, v in values.items()})


def _env(stems: Mapping[str, str] | None = None) -> Environment:
    env = Environment(loader=PackageLoader("grader", "report/templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["page"] = lambda student: page_name(student, stems)
    env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.2f}%"
    env.filters["num"] = lambda v: "–" if v is None else f"{v:,}"
    env.filters["pts"] = lambda v: f"{v:g}"
    env.filters["fmt"] = _fmt
    env.filters["strong"] = lambda v: Markup("<strong>{}</strong>").format(v)
    env.filters["code"] = lambda v: Markup("<code>{}</code>").format(v)
    return env


def _script(name: str) -> tuple[str, str]:
    """A page script and its CSP hash ('sha256-…')."""
    text = resources.files("grader.report").joinpath(f"templates/{name}").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return text, f"'sha256-{digest}'"


def _csp(script_hash: str | None) -> str:
    scripts = script_hash or "'none'"
    return (f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src {scripts}; "
            "base-uri 'none'; form-action 'none'")


def _write(path: Path, text: str) -> Path:
    return write_atomic(path, text)


def _strings(options: ReportOptions | None) -> Mapping[str, str]:
    return options.strings if options is not None and options.strings else english()


@register_sink("html")
def write_html(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """index.html (the class, for the teacher), students/<student>.html (the teacher's view of each
    student) and feedback/<student>.html (each student's own page).

    Nothing one student handed in can stop the others' pages: a chart that cannot be drawn becomes a
    short note in its place, and a page that cannot be rendered becomes a plain page with the
    student's points, criteria and a note (templates/contained.html.j2)."""
    t = _strings(options)
    stems = file_stems(s.student for s in results.students)
    env = _env(stems)
    cache = charts.ChartCache(out / ".charts")
    script, script_hash = _script("class.js")
    items = item_analysis(results)
    n = len(results.students)
    hist = charts.chart("histogram", [s.points for s in results.students], results.max_points, label=t["hist_label"],
                        xlabel=t["hist_x"], ylabel=t["hist_y"]) if n else None
    rates = charts.chart("pass_rates", [i.id for i in items], [i.passed / max(1, n) for i in items],
                         label=t["pass_rates_label"], xlabel=t["pass_rates_x"]) if items and n else None
    views: list[StudentView | Exception] = []
    for s in results.students:
        try:
            views.append(student_view(results, s, t))
        except Exception as exc:  # noqa: BLE001  (contained: this student's page says so)
            views.append(exc)
    cache.draw_all([c for c in (hist, rates) if c] + [c for v in views if isinstance(v, StudentView) for c in v.charts],
                   jobs=_jobs(options))
    env.globals["svg"] = lambda c: _svg_or_note(cache, c, t)
    similar = {name for f in results.similarity for name in f.students}
    written = [_write(out / "index.html", env.get_template("index.html.j2").render(
        r=results, t=t, hist=hist, rates=rates, items=items, similar=similar, script=script,
        csp=_csp(script_hash), view="teacher", teacher_dir=TEACHER_DIR))]
    if results.leaderboard is not None:  # names and scores only: the page a teacher shows the class
        written.append(_write(out / "leaderboard.html", env.get_template("leaderboard.html.j2").render(
            r=results, t=t, lb=results.leaderboard, csp=_csp(None), view="class")))
    if results.contest is not None:  # the public board, and the private one after the deadline
        written.append(_write(out / "competition.html", env.get_template("competition.html.j2").render(
            r=results, t=t, c=results.contest, csp=_csp(None), view="class")))
    student_tpl = env.get_template("student.html.j2")
    for s, v in zip(results.students, views):
        for view, folder in (("teacher", TEACHER_DIR), ("student", STUDENT_DIR)):
            own_page = f"../{STUDENT_DIR}/{page_name(s.student, stems)}"
            try:
                if isinstance(v, Exception):
                    raise v
                html = student_tpl.render(r=results, s=s, v=v, t=t, view=view, csp=_csp(None), own_page=own_page)
            except Exception as exc:  # noqa: BLE001  (contained to this student's page)
                html = env.get_template("contained.html.j2").render(
                    r=results, s=s, t=t, view=view, csp=_csp(None), own_page=own_page,
                    reason=f"{type(exc).__name__}: {exc}"[:300])
            written.append(_write(out / folder / page_name(s.student, stems), html))
    return written


def _svg_or_note(cache: charts.ChartCache, c: charts.Chart | None, t: Mapping[str, str]) -> Markup:
    """A chart's SVG, or a short note where it could not be drawn (the rest of the page stands)."""
    text = cache.svg(c)
    if text is None:
        return Markup('<p class="note small chart-failed">{}</p>').format(t["chart_failed"])
    return Markup(text)


def _jobs(options: ReportOptions | None) -> int:
    if options is not None and options.jobs:
        return options.jobs
    return min(4, os.cpu_count() or 1)

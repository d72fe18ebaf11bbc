"""Sinks for the places grades go besides our own pages: GitHub Classroom's autograding reporter,
the GitHub job summary, Gradescope, and the gradebook imports of Canvas and Moodle.

All are pure functions of the Results object (`classroom_result`, `gradescope_result`,
`summary_markdown`, `canvas_frame`, `moodle_frame`) plus thin sinks that write them. The formats are
the ones the receiving systems read (docs/autograding.md gives the facts and the sources).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from grader.report import ReportOptions, register_sink
from grader.report.files import _atomic_write, csv_text
from grader.report.names import file_stems
from grader.records.results import CriterionResult, Results, StudentResult

# ------------------------------------------------------------------------------------------------
# GitHub Classroom (classroom-resources/autograding-grading-reporter@v1)

_CLASSROOM_STATUS = {"pass": "pass", "partial": "fail", "fail": "fail", "skipped": "fail", "error": "error"}


def _full(c: CriterionResult) -> bool:
    return c.points >= c.max_points


def classroom_result(results: Results, student: StudentResult) -> dict[str, Any]:
    """The JSON the grading reporter reads from a runner's `result` output (before base64).

    One criterion is one test with its `score` (the reporter sums them; a test without one makes the
    total NaN), `line_no` 0 (else its log prints "line undefined"), and status pass only with full
    points: partial credit is a `fail` with a fractional score.
    """
    tests = []
    for c in student.criteria:
        status = "pass" if c.outcome == "pass" and _full(c) else _CLASSROOM_STATUS[c.outcome]
        tests.append({
            "name": c.title, "status": status, "score": c.points,
            "message": f"{c.points:g}/{c.max_points:g} points. {c.message}",
            "test_code": f"{c.id}: {_check_of(results, c.id)}", "filename": "", "line_no": 0, "duration": 0,
        })
    if student.status != "gathered" or any(t["status"] == "error" for t in tests):
        status = "error"
    elif all(t["status"] == "pass" for t in tests):
        status = "pass"
    else:
        status = "fail"
    return {"version": 1, "status": status, "max_score": results.max_points, "tests": tests}


def _check_of(results: Results, criterion_id: str) -> str:
    return next((c.check for c in results.criteria if c.id == criterion_id), "")


def classroom_output(results: Results, student: StudentResult) -> str:
    """What the grading step sets as its `result` output: base64 of the UTF-8 JSON."""
    return base64.b64encode(json.dumps(classroom_result(results, student), ensure_ascii=False).encode("utf-8")).decode("ascii")


def _one_or_each(results: Results, out: Path, name: str, suffix: str) -> list[tuple[StudentResult, Path]]:
    """One file for a single-submission run (what an autograder runs), one per student otherwise."""
    if len(results.students) == 1:
        return [(results.students[0], out / f"{name}{suffix}")]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    stems = file_stems(s.student for s in results.students)  # one file per student, however alike their names
    return [(s, folder / f"{stems[s.student]}{suffix}") for s in results.students]


@register_sink("classroom")
def write_classroom(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """classroom.json (one submission) or classroom/<student>.json: the reporter's JSON."""
    return [_atomic_write(path, json.dumps(classroom_result(results, s), indent=1, ensure_ascii=False))
            for s, path in _one_or_each(results, out, "classroom", ".json")]


# ------------------------------------------------------------------------------------------------
# GitHub job summary ($GITHUB_STEP_SUMMARY): Markdown

_MARK = {"pass": "✅ pass", "partial": "🟡 partial", "fail": "❌ fail", "error": "⚠️ error", "skipped": "➖ skipped"}


def _md(text: str) -> str:
    """Text for one Markdown table cell: no line breaks, pipes escaped, no HTML."""
    text = " ".join(text.split())
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    return re.sub(r"([`*_\[\]])", r"\\\1", text)


def summary_markdown(results: Results, student: StudentResult) -> str:
    lines = [f"### {_md(results.assignment)}: {_md(student.student)} — {student.points:g} / {student.max_points:g} points", ""]
    if student.best_accuracy is not None:
        lines += [f"Best accuracy measured on the hidden test set: **{student.best_accuracy:.4f}**", ""]
    lines += ["| Criterion | Result | Points | What it means |", "| --- | --- | ---: | --- |"]
    for c in student.criteria:
        lines.append(f"| {_md(c.title)} | {_MARK[c.outcome]} | {c.points:g} / {c.max_points:g} | {_md(c.message)} |")
    if not results.run.sandboxed:
        lines += ["", f"> {_md(results.run.sandbox_note)}"]
    lines += ["", f"grader {results.run.grader_version} · {results.run.hidden_size:,} hidden test images · "
                  f"device {results.run.device}", ""]
    return "\n".join(lines)


@register_sink("summary")
def write_summary(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """summary.md: a Markdown table of criteria per student (the job summary of a workflow)."""
    text = "\n".join(summary_markdown(results, s) for s in results.students)
    return [_atomic_write(out / "summary.md", text)]


# ------------------------------------------------------------------------------------------------
# Gradescope (/autograder/results/results.json)


def _criterion_md(c: CriterionResult) -> str:
    return c.message + (f"\n\n{c.detail}" if c.detail else "")


def gradescope_result(results: Results, student: StudentResult) -> dict[str, Any]:
    """Gradescope's results.json: top-level score, per-test score/max_score/status/output. A grader
    fault gives no score and no tests (Gradescope has no 'errored' test status): the submission is
    not graded rather than failed, and the output says why."""
    if student.status == "grader_fault":
        return {"output": "Not graded: the grader failed on this submission (not a problem with your work); "
                          "your teacher will grade it again.", "output_format": "text", "visibility": "visible",
                "stdout_visibility": "hidden", "tests": [], "extra_data": {"status": "grader_fault"}}
    tests = [{
        "name": c.title, "number": str(i), "score": c.points, "max_score": c.max_points,
        "status": "passed" if c.outcome == "pass" and _full(c) else "failed",
        "output": c.message, "output_format": "md", "visibility": "visible",
    } for i, c in enumerate(student.criteria, 1)]
    output = f"{student.points:g} / {student.max_points:g} points"
    if student.best_accuracy is not None:
        output += f"; best accuracy on the hidden test set: {student.best_accuracy:.4f}"
    if not results.run.sandboxed:
        output += f"\n\n{results.run.sandbox_note}"
    result: dict[str, Any] = {
        "score": student.points, "execution_time": round(results.run.seconds), "output": output,
        "output_format": "md", "visibility": "visible", "stdout_visibility": "hidden", "tests": tests,
    }
    board = gradescope_leaderboard(results, student)
    if board:
        result["leaderboard"] = board
    return result


def gradescope_leaderboard(results: Results, student: StudentResult) -> list[dict[str, Any]]:
    """Gradescope's leaderboard entries for a student: the rubric's leaderboard metric of their best
    model, and the best PUBLIC score of the class competition (the private one never goes there)."""
    entries: list[dict[str, Any]] = []
    if results.leaderboard is not None:
        row = next((r for r in results.leaderboard.rows if r.student == student.student), None)
        if row is not None and row.value is not None:
            entries.append({"name": results.leaderboard.title, "value": round(row.value, 4)})
    if results.contest is not None:
        row = next((r for r in results.contest.public if r.student == student.student), None)
        if row is not None:
            entries.append({"name": f"{results.contest.title} (public)", "value": round(row.score, 4)})
    return entries


@register_sink("gradescope")
def write_gradescope(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """gradescope.json (copy it to /autograder/results/results.json) or gradescope/<student>.json."""
    return [_atomic_write(path, json.dumps(gradescope_result(results, s), indent=1, ensure_ascii=False))
            for s, path in _one_or_each(results, out, "gradescope", ".json")]


# ------------------------------------------------------------------------------------------------
# Gradebook imports


def gradebook_rows(results: Results) -> list[dict[str, str]]:
    """One row per student for a gradebook: the submission folder's name, the total, a feedback line."""
    rows = []
    for s in results.students:
        failed = [c.title for c in s.criteria if c.outcome != "pass"]
        feedback = (f"{s.points:g}/{s.max_points:g}. " + ("Not met: " + "; ".join(failed) if failed else "All criteria met."))
        rows.append({"student": s.student, "points": f"{s.points:g}", "feedback": feedback})
    return rows


def _frame_csv(frame: Any) -> str:
    """A frame's CSV through `csv_text`, so that every cell is neutralised against formulas."""
    return csv_text([list(frame.columns), *(list(row) for row in frame.itertuples(index=False, name=None))])


def canvas_frame(results: Results) -> Any:
    """Canvas gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then one column named
    after the assignment id. The submission folder's name goes in SIS Login ID (Canvas matches rows by
    ID, SIS User ID or SIS Login ID); Canvas ignores the Points Possible row if present."""
    import pandas as pd

    rows = [{"Student": "", "ID": "", "SIS User ID": "", "SIS Login ID": r["student"], "Section": "",
             _assignment_column(results): r["points"]} for r in gradebook_rows(results)]
    return pd.DataFrame(rows, columns=["Student", "ID", "SIS User ID", "SIS Login ID", "Section", _assignment_column(results)])


def moodle_frame(results: Results) -> Any:
    """Moodle grade import (CSV): an identifier column (Username, to map onto the Moodle username),
    one column per grade item and its feedback column, mapped in Moodle's import form."""
    import pandas as pd

    rows = [{"Username": r["student"], results.assignment: r["points"], "Feedback": r["feedback"]}
            for r in gradebook_rows(results)]
    return pd.DataFrame(rows, columns=["Username", results.assignment, "Feedback"])


def _assignment_column(results: Results) -> str:
    # Canvas reads a trailing "(number)" as the id of an existing assignment; a bare name makes a new
    # column on import (rename it "hw10 (1234)" to fill an existing assignment instead).
    return re.sub(r"\s*\(\d+\)$", "", results.assignment)


@register_sink("canvas")
def write_canvas(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """canvas.csv: Canvas gradebook import."""
    return [_atomic_write(out / "canvas.csv", _frame_csv(canvas_frame(results)))]


@register_sink("moodle")
def write_moodle(results: Results, out: Path, options: ReportOptions | None = None) -> list[Path]:
    """moodle.csv: Moodle grade import."""
    return [_atomic_write(out / "moodle.csv", _frame_csv(moodle_frame(results)))]

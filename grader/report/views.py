"""What the pages show, computed from Results: item analysis, per-model claims, chart markup.

Pure functions of the results (no I/O). They summarise and arrange what judging produced; none
of them computes or changes a score.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from grader.records.evidence import Claim, History, ModelEvidence, NotebookEvidence
from grader.report import charts
from grader.report.diagram import Box, boxes
from grader.records.results import Results, SimilarityFlag, StudentResult


@dataclass(frozen=True)
class Item:
    """One criterion across the class."""

    id: str
    title: str
    check: str
    max_points: float
    passed: int
    partial: int
    failed: int  # fail or error
    skipped: int
    mean_points: float
    common: tuple[tuple[str, int], ...]  # the most common messages of students who did not pass, with counts


_NUMBER = re.compile(r"(?<![A-Za-z\d])\d+(?:[.,]\d+)*%?")
_QUOTED = re.compile(r"'[^']*'")


def _pattern(message: str) -> str:
    """A message with its numbers and quoted file names blanked, so that 'reaches 0.8812' and
    'reaches 0.9011' count as one reason."""
    return _NUMBER.sub("#", _QUOTED.sub("'…'", message)).strip()


def item_analysis(results: Results, top: int = 3) -> list[Item]:
    items = []
    for i, c in enumerate(results.criteria):
        outcomes = [s.criteria[i] for s in results.students if i < len(s.criteria)]
        counts = Counter(o.outcome for o in outcomes)
        reasons = Counter(_pattern(o.message) for o in outcomes if o.outcome != "pass" and o.message)
        n = max(1, len(outcomes))
        items.append(Item(id=c.id, title=c.title, check=c.check, max_points=c.max_points, passed=counts["pass"],
                          partial=counts["partial"], failed=counts["fail"] + counts["error"], skipped=counts["skipped"],
                          mean_points=round(sum(o.points for o in outcomes) / n, 2),
                          common=tuple(reasons.most_common(top))))
    return items


def claims_for(model: ModelEvidence, notebooks: tuple[NotebookEvidence, ...], models: int) -> list[tuple[Claim, str]]:
    """Test-accuracy claims that belong to `model`: those of the notebook that wrote it, or, when the
    student has one model only, every test-accuracy claim of their notebooks. With (claim, notebook)."""
    out: list[tuple[Claim, str]] = []
    for nb in notebooks:
        if model.produced_by is not None and nb.path != model.produced_by:
            continue
        if model.produced_by is None and models != 1:
            continue
        claims = list(nb.claims) + (list(nb.run.claims) if nb.run else [])
        out += [(c, nb.path) for c in claims if c.metric == "test_accuracy"]
    return out


def histories(nb: NotebookEvidence) -> tuple[History, ...]:
    """The grader's own run when it printed a history, else what the handed-in notebook shows."""
    if nb.run is not None and nb.run.histories:
        return nb.run.histories
    return nb.histories


@dataclass(frozen=True)
class ModelView:
    model: ModelEvidence
    diagram: list[Box]
    marks: dict[str, str]  # layer path -> base display name
    confusion: charts.Chart | None
    claims: list[tuple[Claim, str]]


@dataclass(frozen=True)
class NotebookView:
    notebook: NotebookEvidence
    curves: list[tuple[History, charts.Chart]]


@dataclass(frozen=True)
class StudentView:
    """Everything a student's page shows beyond the results themselves (shared by both views)."""

    student: StudentResult
    models: list[ModelView]
    notebooks: list[NotebookView]
    similarity: list[SimilarityFlag] = field(default_factory=list)

    @property
    def charts(self) -> list[charts.Chart]:
        return [m.confusion for m in self.models if m.confusion] + [c for nb in self.notebooks for _, c in nb.curves]


def base_paths(model: ModelEvidence) -> dict[str, str]:
    """'/'-joined layer path -> base display name, to mark base layers in tables and diagrams."""
    marks: dict[str, str] = {}
    for b in model.architecture.bases if model.architecture else ():
        if b.container:
            marks[b.container] = b.display
        for p in b.layers:
            marks[p] = b.display
    return marks


def student_view(results: Results, s: StudentResult, t: Mapping[str, str]) -> StudentView:
    """What the student's pages show; charts as requests (grader.report.charts.Chart), drawn later."""
    models = []
    for m in s.evidence.models:
        confusion = None
        if m.metrics and m.metrics.confusion:
            names = [c.name for c in m.metrics.per_class]
            confusion = charts.chart("confusion", m.metrics.confusion, names, label=t["confusion_label"].format(model=m.path),
                                     xlabel=t["confusion_x"], ylabel=t["confusion_y"])
        marks = base_paths(m)
        diagram = boxes(m.architecture, marks) if m.architecture else []
        models.append(ModelView(model=m, diagram=diagram, marks=marks, confusion=confusion,
                                claims=claims_for(m, s.evidence.notebooks, len(s.evidence.models))))
    notebooks = []
    for nb in s.evidence.notebooks:
        curves = [(h, charts.chart("learning_curves", h.metrics, label=t["curves_label"].format(notebook=nb.path, cell=h.cell),
                                   xlabel=t["curves_x"]))
                  for h in histories(nb) if h.metrics]
        notebooks.append(NotebookView(notebook=nb, curves=curves))
    flags = [f for f in results.similarity if s.student in f.students]
    return StudentView(student=s, models=models, notebooks=notebooks, similarity=flags)

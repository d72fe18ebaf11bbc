"""Charts for the report pages, drawn with matplotlib and inlined as SVG (no image files, no CDN).

Each function takes plain numbers and returns SVG markup (a string without the XML prolog) that a
template inserts with ``|safe``. The markup is produced by matplotlib from numbers and from labels
that the caller passes; every label is escaped by matplotlib's SVG writer, so student-controlled
text (class names come from the rubric's data set, metric names from a notebook) cannot become markup.
Text stays text (``svg.fonttype: none``): it scales, it can be read by a screen reader, and it is
small. Output is deterministic (fixed hash salt, no date), so a re-render gives the same page.

The Figure API is used directly (no pyplot): no global figure state, safe in threads.

A chart takes 0.05-0.2 s to draw; a class of 120 students has about 500 of them. Pages therefore
hold `Chart` requests; `ChartCache.draw_all` draws the ones it has not drawn before, in a few
processes, and keeps each SVG on disk under the hash of its inputs, so re-rendering after a rubric
change (same evidence, new points) draws nothing again.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

from matplotlib import rc_context  # noqa: E402
from matplotlib.backends.backend_svg import FigureCanvasSVG  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from grader.atomic import write_atomic  # noqa: E402

_STYLE = {
    "svg.fonttype": "none",
    "svg.hashsalt": "grader-report",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
}
_BLUE, _ORANGE, _GREEN, _RED, _GREY = "#0969da", "#bc4c00", "#1a7f37", "#cf222e", "#57606a"


def _svg(fig: Figure, label: str) -> str:
    """Render `fig` as inline SVG with an accessible name (role=img, <title>)."""
    buffer = io.StringIO()
    FigureCanvasSVG(fig).print_svg(buffer, metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    start = text.find("<svg")
    text = text[start:]
    # width/height in pt make the chart a fixed size; a viewBox with max-width lets it shrink on a phone
    text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="([\d.]+)pt"',
                  lambda m: f'<svg{m.group(1)} width="100%" style="max-width:{float(m.group(2)) * 4 / 3:.0f}px" '
                            f'role="img" aria-label="{_attr(label)}"', text, count=1)
    return text.replace(">", f"><title>{_text(label)}</title>", 1)


def _attr(value: str) -> str:
    return _text(value).replace('"', "&quot;")


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def histogram(scores: Sequence[float], max_points: float, *, label: str, xlabel: str, ylabel: str, bins: int = 10) -> str:
    """Distribution of total scores over [0, max_points]."""
    top = max_points or 1.0
    edges = [top * i / bins for i in range(bins + 1)]
    with rc_context(_STYLE):
        fig = Figure(figsize=(5.6, 2.4), layout="constrained")
        ax = fig.add_subplot()
        counts, _, bars = ax.hist([min(max(s, 0.0), top) for s in scores], bins=edges, color=_BLUE, edgecolor="white")
        for bar, count in zip(bars, counts):
            if count:
                ax.annotate(f"{int(count)}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                            va="bottom", fontsize=8)
        ax.set_xlim(0, top)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.yaxis.get_major_locator().set_params(integer=True)
        return _svg(fig, label)


def pass_rates(names: Sequence[str], rates: Sequence[float], *, label: str, xlabel: str) -> str:
    """Share of students passing each criterion, one horizontal bar per criterion."""
    with rc_context(_STYLE):
        fig = Figure(figsize=(5.6, 0.6 + 0.28 * max(1, len(names))), layout="constrained")
        ax = fig.add_subplot()
        y = list(range(len(names)))[::-1]
        colours = [_GREEN if r >= 0.8 else (_ORANGE if r >= 0.5 else _RED) for r in rates]
        ax.barh(y, [100 * r for r in rates], color=colours)
        for yi, r in zip(y, rates):
            ax.annotate(f"{100 * r:.0f}%", (100 * r, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8)
        ax.set_yticks(y, list(names))
        ax.set_xlim(0, 110)
        ax.set_xlabel(xlabel)
        return _svg(fig, label)


def confusion(matrix: Sequence[Sequence[int]], names: Sequence[str], *, label: str, xlabel: str, ylabel: str) -> str:
    """Confusion matrix as a heat map with the counts written in every cell (numbers only: no image
    of the hidden set is ever drawn). Rows: true class; columns: predicted class."""
    k = len(matrix)
    ticks = list(range(k))
    row_labels = [f"{n} ({t})" for t, n in zip(ticks, names)]
    with rc_context(_STYLE):
        # fixed margins instead of a layout engine: constrained layout measured every one of the
        # k×k labels and was half the time of a chart
        cell, left = 0.42, 0.35 + 0.065 * max((len(r) for r in row_labels), default=4)
        width, height = left + cell * k + 1.1, 0.8 + cell * k
        fig = Figure(figsize=(width, height))
        ax = fig.add_axes((left / width, 0.6 / height, cell * k / width, cell * k / height))
        bar = fig.add_axes(((left + cell * k + 0.2) / width, 0.6 / height, 0.15 / width, cell * k / height))
        # row-normalised colours: a class with few images still shows where its mistakes go
        rows = [max(1, sum(r)) for r in matrix]
        shares = [[v / rows[i] for v in r] for i, r in enumerate(matrix)]
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        for i, r in enumerate(matrix):
            for j, v in enumerate(r):
                ax.text(j, i, f"{v}", ha="center", va="center", fontsize=7 if k <= 10 else 5,
                        color="white" if shares[i][j] > 0.55 else ("#1f2328" if v else "#8c959f"))
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_yticks(ticks, row_labels)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.spines[:].set_visible(False)
        fig.colorbar(image, cax=bar, format=lambda v, _: f"{100 * v:.0f}%")
        return _svg(fig, label)


PLOT_LIMIT = 1e6  # a printed metric beyond ± this is drawn at the limit: the run diverged, the axis stays usable


def plottable(values: Sequence[float]) -> list[float]:
    """A series as a chart can draw it: NaN and ±inf (and anything that is not a number) become gaps
    (NaN), finite values beyond ±PLOT_LIMIT are clipped to it. The numbers come from a notebook's
    saved output, which a student controls: ``loss: 1e308`` then ``-1e308`` overflows matplotlib's
    axis arithmetic and would stop the drawing of the whole class's pages."""
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(min(max(f, -PLOT_LIMIT), PLOT_LIMIT) if math.isfinite(f) else math.nan)
    return out


def learning_curves(metrics: Mapping[str, Sequence[float]], *, label: str, xlabel: str) -> str:
    """Loss (left) and accuracy-like metrics (right) per epoch, train solid and validation dashed.
    Values go through `plottable` first (gaps for non-finite values, clipped at ±PLOT_LIMIT)."""
    metrics = {k: plottable(v) for k, v in metrics.items()}
    losses = {k: v for k, v in metrics.items() if "loss" in k}
    others = {k: v for k, v in metrics.items() if "loss" not in k and k not in ("lr", "learning_rate")}
    panels = [p for p in (losses, others) if p]
    with rc_context(_STYLE):
        fig = Figure(figsize=(2.9 * max(1, len(panels)), 2.3))
        fig.subplots_adjust(left=0.14 if len(panels) < 2 else 0.08, right=0.98, bottom=0.2, top=0.96, wspace=0.25)
        for n, series in enumerate(panels or [{}]):
            ax = fig.add_subplot(1, max(1, len(panels)), n + 1)
            for i, (name, values) in enumerate(sorted(series.items(), key=lambda kv: (kv[0].startswith("val_"), kv[0]))):
                epochs = list(range(1, len(values) + 1))
                base = name.removeprefix("val_")
                colour = [_BLUE, _ORANGE, _GREEN, _GREY][sorted({k.removeprefix("val_") for k in series}).index(base) % 4]
                ax.plot(epochs, values, marker="o", markersize=3, color=colour,
                        linestyle="--" if name.startswith("val_") else "-", label=name)
            ax.set_xlabel(xlabel)
            ax.xaxis.get_major_locator().set_params(integer=True)
            if series:
                ax.legend(fontsize=7, frameon=False)
        return _svg(fig, label)


CHART_FORMAT = "2"  # bump when a chart's drawing changes, so cached SVGs are not reused across it
_CHARTS: dict[str, Callable[..., str]] = {"histogram": histogram, "pass_rates": pass_rates, "confusion": confusion,
                                          "learning_curves": learning_curves}


@dataclass(frozen=True)
class Chart:
    """A chart to draw: which one, with what (JSON-able) inputs. Pages hold these; `ChartCache.draw_all`
    turns them into SVG, in parallel and only for the ones not drawn before."""

    name: str
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        text = json.dumps([self.name, CHART_FORMAT, matplotlib.__version__, self.args, self.kwargs], sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def chart(name: str, *args: Any, **kwargs: Any) -> Chart:
    if name not in _CHARTS:
        raise KeyError(f"unknown chart {name!r}; known: {', '.join(sorted(_CHARTS))}")
    return Chart(name=name, args=args, kwargs=tuple(sorted(kwargs.items())))


def draw(c: Chart) -> str:
    return _CHARTS[c.name](*c.args, **dict(c.kwargs))


def _draw_or_none(c: Chart) -> str | None:
    """`draw`, or None when the chart cannot be drawn: one student's numbers never stop the class."""
    try:
        return draw(c)
    except Exception:  # noqa: BLE001  (the page shows a note in the chart's place)
        return None


class ChartCache:
    """SVG charts by key, memoised on disk (`folder`; None: in memory only)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._svg: dict[str, str] = {}
        self.failed: set[str] = set()  # keys of charts that could not be drawn (never kept on disk)
        self.hits = 0
        self.drawn = 0

    def _read(self, key: str) -> str | None:
        if self.folder is None:
            return None
        try:
            return (self.folder / f"{key}.svg").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def _keep(self, key: str, text: str | None) -> None:
        if text is None:
            self.failed.add(key)
            return
        self._svg[key] = text
        if self.folder is None:
            return
        try:
            write_atomic(self.folder / f"{key}.svg", text)
        except OSError:  # a read-only or full report folder: charts are drawn, just not kept
            pass

    def draw_all(self, charts: Iterable[Chart], jobs: int = 1) -> None:
        """Draw every chart not yet drawn; with jobs > 1 in that many processes (matplotlib holds the
        GIL: threads would not help). Processes are spawned, not forked: the grader has threads."""
        missing: dict[str, Chart] = {}
        for c in charts:
            if c.key in self._svg or c.key in missing or c.key in self.failed:
                continue
            text = self._read(c.key)
            if text is not None:
                self._svg[c.key] = text
                self.hits += 1
            else:
                missing[c.key] = c
        todo = list(missing.values())
        if jobs > 1 and len(todo) >= 8:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            try:
                with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                    for c, text in zip(todo, pool.map(_draw_or_none, todo, chunksize=max(1, len(todo) // (4 * jobs)))):
                        self._keep(c.key, text)
            except BrokenProcessPool:  # a drawing process died: draw what is left here, one by one
                pass
        for c in todo:
            if c.key not in self._svg and c.key not in self.failed:
                self._keep(c.key, _draw_or_none(c))
        self.drawn += len(todo)

    def svg(self, c: Chart | None) -> str | None:
        """The SVG of `c` (drawn now if draw_all did not); "" for no chart, None when it could not be drawn."""
        if c is None:
            return ""
        if c.key not in self._svg and c.key not in self.failed:
            self.draw_all([c])
        return self._svg.get(c.key)

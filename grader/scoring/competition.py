"""A local, Kaggle-like competition: students hand in prediction CSVs, the grader scores them.

The pieces, each usable alone:

- `CompetitionSpec`: the rules (columns, public/private split, metric, limits, deadline, selection).
- `public_private_split`: which test ids count for the public board and which are kept for the end.
- `read_predictions`: a student's CSV -> `Predictions`, or every problem found, each naming the
  file, the line and what to do.
- `score`: predictions + hidden labels -> public and private `Scores`. Pure.
- `Ledger` + `submit` / `select`: an append-only JSON Lines log of every submission, which enforces
  the daily and total limits and the deadline, and survives restarts and crashes.
- `select_for_final` and `leaderboard`: pure functions of the ledger's records.

Labels are read only by `score` (in the grader's process); `read_predictions` never sees them.
No function here reads the clock: the caller passes `now`, so every decision is reproducible.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import fcntl
import hashlib
import io
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError, model_validator

from grader.records.competition import ContestRow, SubmissionRecord, UtcDatetime
from grader.records.frozen import Frozen

__all__ = [
    "MAX_BYTES",
    "CompetitionError",
    "CompetitionSpec",
    "CsvProblem",
    "Ledger",
    "LedgerState",
    "ContestRow",
    "MetricFunction",
    "Predictions",
    "Scores",
    "SelectionEvent",
    "SubmissionRecord",
    "deselect",
    "get_metric",
    "ids_naming_classes",
    "ids_problem",
    "leaderboard",
    "metric_names",
    "public_private_split",
    "read_predictions",
    "register_metric",
    "score",
    "select",
    "select_for_final",
    "submit",
]

MAX_BYTES = 20 * 1024**2  # a 10,000-row predictions file is about 100 KB; 20 MB is room for any honest one
MAX_PROBLEMS = 20  # errors reported per file (each one already groups every row of its kind)
_EXAMPLES = 5  # ids or lines quoted in one message


class CompetitionError(ValueError):
    """A competition action that cannot be done as asked (selecting too many, an unknown metric...)."""


# --------------------------------------------------------------------------------------------------
# Metrics: a private table, public accessors (as scikit-learn's get_scorer / get_scorer_names)

MetricFunction = Callable[[Sequence[int], Sequence[int]], float]  # (y_true, y_pred) -> score
_METRICS: dict[str, MetricFunction] = {}


def register_metric(name: str) -> Callable[[MetricFunction], MetricFunction]:
    """Decorator: make `function(y_true, y_pred) -> float` available as ``metric: name``."""

    def decorate(function: MetricFunction) -> MetricFunction:
        if name in _METRICS:
            other = _METRICS[name]
            raise ValueError(
                f"metric {name!r} is already registered by {other.__module__}.{other.__qualname__}; "
                f"{function.__module__}.{function.__qualname__} cannot take the same name"
            )
        _METRICS[name] = function
        return function

    return decorate


def metric_names() -> list[str]:
    """The names of all registered metrics, sorted."""
    return sorted(_METRICS)


def _unknown_metric(name: str) -> str:
    known = metric_names()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"unknown metric {name!r}{hint} known: {', '.join(known)}"


def get_metric(name: str) -> MetricFunction:
    """The metric registered as `name`; CompetitionError with a close match and the known names."""
    try:
        return _METRICS[name]
    except KeyError:
        raise CompetitionError(_unknown_metric(name)) from None


@register_metric("accuracy")
def _accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    if len(y_true) != len(y_pred) or not y_true:
        raise ValueError(f"accuracy needs two equally long, non-empty sequences; got {len(y_true)} and {len(y_pred)}")
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def _known_metric(name: str) -> str:
    if name not in _METRICS:
        raise ValueError(_unknown_metric(name))
    return name


# The registry is the constraint (like scikit-learn's StrOptions(set(get_scorer_names()))): a
# Literal would list the names a second time, and a registered add-on metric could not be used.
MetricName = Annotated[str, AfterValidator(_known_metric)]


# --------------------------------------------------------------------------------------------------
# The rules


class CompetitionSpec(Frozen):
    """The rules of one competition, as a teacher writes them (YAML or Python)."""

    id_column: str = Field("id", min_length=1, description="header of the id column (any case)")
    label_column: str = Field("label", min_length=1, description="header of the predicted class (any case)")
    public_fraction: float = Field(0.3, gt=0, lt=1, description="share of the test ids on the public board")
    seed: int = Field(0, description="seed of the public/private split")
    metric: MetricName = Field("accuracy", description="a registered metric, see metric_names()")
    max_per_day: int | None = Field(None, ge=1, description="scored submissions per student per UTC day")
    max_total: int | None = Field(None, ge=1, description="scored submissions per student in all")
    deadline: UtcDatetime | None = Field(None, description="last moment a submission is accepted (timezone-aware)")
    select: int = Field(2, ge=1, description="submissions per student that count for the final board")
    higher_is_better: bool = True

    @model_validator(mode="after")
    def _distinct_columns(self) -> CompetitionSpec:
        if self.id_column.strip().lower() == self.label_column.strip().lower():
            raise ValueError(f"id_column and label_column must differ; both are {self.id_column!r}")
        return self


# --------------------------------------------------------------------------------------------------
# The public/private split


def _rank_key(seed: int, ident: str) -> bytes:
    return hashlib.blake2b(f"{seed}:{ident}".encode(), digest_size=16).digest()


def public_private_split(ids: Sequence[str], fraction: float, seed: int) -> tuple[frozenset[str], frozenset[str]]:
    """Split `ids` into (public, private), the same for a seed whatever order the ids come in.

    Ids are ranked by blake2b("seed:id"); the first ``round(fraction * n)`` (n distinct ids; Python's
    round, half to even) are public. A hash rather than a seeded shuffle: a shuffle depends on the
    input order, and a teacher's test file may be re-sorted between runs.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")
    unique = sorted(set(ids), key=lambda i: _rank_key(seed, i))
    k = round(fraction * len(unique))
    return frozenset(unique[:k]), frozenset(unique[k:])


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def ids_naming_classes(ids: Sequence[str], labels: Sequence[int], class_names: Sequence[str]) -> int:
    """How many test ids name their own image's class (``cat/img_001.png``, ``dog_17.jpg``): ids
    that students see must not tell them the labels. Class names shorter than three letters or
    digits are not looked for (``"0"``, ``"1"`` would match by chance)."""
    squashed = [_squash(c) for c in class_names]
    count = 0
    for ident, label in zip(ids, labels, strict=True):
        name = squashed[int(label)] if 0 <= int(label) < len(squashed) else ""
        if len(name) >= 3 and name in _squash(ident):
            count += 1
    return count


def ids_problem(ids: Sequence[str], labels: Sequence[int], class_names: Sequence[str], *, by_folder: bool) -> str | None:
    """Why a competition cannot use these ids as they are (None: it can). `by_folder`: the test set is
    in the one-folder-per-class layout, where every id starts with its class folder."""
    if by_folder:
        example = ids[0] if ids else "cat/img_001.png"
        return ("a competition of prediction files needs test ids that do not name the class, but in the "
                f"folder-per-class layout every id does (for example {example!r})")
    named = ids_naming_classes(ids, labels, class_names)
    if named and named * 2 >= len(ids):
        example = next(i for i, lab in zip(ids, labels) if len(_squash(class_names[int(lab)])) >= 3
                       and _squash(class_names[int(lab)]) in _squash(i))
        return (f"{named:,} of {len(ids):,} test ids name their own class (for example {example!r}); students "
                "who see the ids would read the labels off them")
    return None


# --------------------------------------------------------------------------------------------------
# Reading a predictions CSV

ProblemKind = Literal[
    "too_large", "unreadable", "binary", "encoding", "empty", "no_rows", "csv_syntax", "missing_column",
    "duplicate_column", "extra_columns", "short_rows", "ragged_rows", "empty_id", "duplicate_ids", "unknown_ids",
    "missing_ids", "empty_label", "invalid_label", "float_labels",
]


class CsvProblem(Frozen):
    """One thing wrong (error) or odd (warning) in a predictions file. `text` is the line to show."""

    file: str
    line: int | None = None  # 1-based line of the file (the first one concerned); None: the whole file
    kind: ProblemKind
    severity: Literal["error", "warning"] = "error"
    message: str  # what is wrong
    hint: str = ""  # what to do about it

    @property
    def text(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.severity}: {self.message}" + (f". {self.hint}" if self.hint else "")


class Predictions(Frozen):
    """A valid predictions file: one class index per expected id, in the order of `ids`."""

    file: str
    ids: tuple[str, ...]  # the expected ids, in the order the caller gave them
    labels: tuple[int, ...]  # class index of ids[i]
    warnings: tuple[CsvProblem, ...] = ()

    @model_validator(mode="after")
    def _aligned(self) -> Predictions:
        if len(self.ids) != len(self.labels):
            raise ValueError(f"{len(self.ids)} ids but {len(self.labels)} labels")
        return self

    def by_id(self) -> dict[str, int]:
        return dict(zip(self.ids, self.labels, strict=True))


def _few(items: Sequence[str], total: int | None = None) -> str:
    """"'a', 'b', 'c' and 7 more" (items are already formatted)."""
    total = len(items) if total is None else total
    shown = ", ".join(items[:_EXAMPLES])
    return shown + (f" and {total - _EXAMPLES:,} more" if total > _EXAMPLES else "")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    if n < 1024**2:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024**2:.1f} MB"


def _decode(raw: bytes, name: str) -> tuple[str | None, list[CsvProblem]]:
    """Text of the file, or None with the reason. Tries UTF-8 (with or without BOM), then cp1252."""
    save_utf8 = "Save the file as UTF-8 (in Excel: 'CSV UTF-8'; in pandas: to_csv(..., encoding='utf-8'))"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [CsvProblem(file=name, kind="encoding", message="the file is UTF-16 text, not UTF-8",
                                 hint=save_utf8)]
    if b"\x00" in raw:
        return None, [CsvProblem(file=name, kind="binary", line=raw.count(b"\n", 0, raw.index(b"\x00")) + 1,
                                 message="the file holds binary data (NUL bytes), not CSV text",
                                 hint="Hand in the CSV written by e.g. pandas' to_csv, not a model, image or archive")]
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        first_bad = raw[exc.start:exc.start + 1].hex()
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        return None, [CsvProblem(file=name, kind="encoding", line=line,
                                 message=f"the file is not UTF-8 text (byte 0x{first_bad} on this line) "
                                         "and not Windows-1252 either", hint=save_utf8)]
    text = text.removeprefix("\u00ef\u00bb\u00bf")  # a UTF-8 BOM read as cp1252
    return text, [CsvProblem(file=name, kind="encoding", line=line, severity="warning",
                             message=f"the file is not UTF-8 (byte 0x{first_bad} on this line); "
                                     "it was read as Windows-1252", hint=save_utf8)]


_QUOTED = re.compile(r'"[^"]*"')


def _sniff_separator(text: str) -> str:
    """The separator of the header line: the most frequent of , ; and tab outside quotes (',' if none)."""
    header = _QUOTED.sub("", text.splitlines()[0] if text else "")
    counts = {sep: header.count(sep) for sep in (",", ";", "\t")}
    best = max(counts, key=lambda s: counts[s])  # ties keep the first: ',' then ';' then tab
    return best if counts[best] else ","


def _sep_name(sep: str) -> str:
    return {",": "','", ";": "';'", "\t": "tab"}[sep]


def _column_name(name: str) -> str:
    return repr(name) if name else "(unnamed)"


_INDEX = re.compile(r"\+?([0-9]+)(\.0*)?")  # 3, +3, 3.0 (pandas writes float columns so); not 1_0 or 1e1


class _LabelReader:
    """Class names (any case) or indices 0..K-1 -> index; None when the text is no valid class."""

    def __init__(self, class_names: Sequence[str] | None) -> None:
        self.names = tuple(class_names) if class_names is not None else None
        self.by_name: dict[str, int] = {}
        for i, n in enumerate(self.names or ()):
            self.by_name.setdefault(n.strip().lower(), i)  # a name equal to an index ("3") wins over it

    def read(self, text: str) -> tuple[int | None, bool]:
        """(index or None, whether it was written as a decimal such as '3.0')."""
        if self.names is not None and text.lower() in self.by_name:
            return self.by_name[text.lower()], False
        match = _INDEX.fullmatch(text)
        if match is None:
            return None, False
        value, as_float = int(match[1]), match[2] is not None
        if self.names is not None and value >= len(self.names):
            return None, False
        return value, as_float

    def valid(self) -> str:
        if self.names is None:
            return "a class index (a whole number, 0 or more)"
        k = len(self.names)
        listed = ", ".join(self.names) if k <= 20 else ", ".join(self.names[:20]) + ", ..."
        return f"a class name (any case: {listed}) or its index 0-{k - 1}"


def read_predictions(
    path_or_text: Path | str | bytes,
    spec: CompetitionSpec,
    expected_ids: Sequence[str],
    class_names: Sequence[str] | None,
    *,
    name: str | None = None,
    max_bytes: int = MAX_BYTES,
) -> Predictions | list[CsvProblem]:
    """Parse a student's predictions CSV; return `Predictions` or every problem found (errors first).

    `path_or_text`: a `Path` is read from disk (its size checked before reading), `bytes` are the
    file's content, a `str` is its text. `name` is the file name used in messages (default: the
    path's name, else "predictions.csv"). Labels may be class names (any case) or indices 0..K-1;
    without `class_names`, any whole number 0 or more is accepted.
    """
    if len(set(expected_ids)) != len(expected_ids):
        raise ValueError("expected_ids has duplicates; the test set's ids must be unique")
    name = name or (path_or_text.name if isinstance(path_or_text, Path) else "predictions.csv")
    header_hint = (f"The first line must be the header '{spec.id_column},{spec.label_column}', "
                   f"then one row per test image ({len(expected_ids):,} rows)")

    def too_large(size: int) -> list[CsvProblem]:
        have, limit = _size(size), _size(max_bytes)
        if have == limit:  # just over: say it in bytes
            have, limit = f"{size:,} bytes", f"{max_bytes:,} bytes"
        return [CsvProblem(file=name, kind="too_large", message=f"the file is {have}, over the {limit} limit",
                           hint=f"Write only the columns '{spec.id_column}' and '{spec.label_column}', one short "
                                "row per test image (class labels, not probabilities or images)")]

    warnings: list[CsvProblem] = []
    if isinstance(path_or_text, Path):
        try:
            size = path_or_text.stat().st_size
            if size > max_bytes:
                return too_large(size)
            with open(path_or_text, "rb") as fh:
                raw = fh.read(max_bytes + 1)
        except OSError as exc:
            return [CsvProblem(file=name, kind="unreadable", message=f"cannot read the file: {exc.strerror or exc}",
                               hint="Check that the file exists and is readable")]
    elif isinstance(path_or_text, bytes):
        raw = path_or_text
    else:
        raw = path_or_text.encode("utf-8")
    if len(raw) > max_bytes:
        return too_large(len(raw))
    text, problems = _decode(raw, name)
    if text is None:
        return problems
    warnings += problems
    if not text.strip():
        return [CsvProblem(file=name, kind="empty", message="the file is empty", hint=header_hint)]

    sep = _sniff_separator(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, skipinitialspace=True)
    errors: list[CsvProblem] = []
    try:
        header = [h.strip() for h in next(reader)]
    except csv.Error as exc:
        return [CsvProblem(file=name, line=1, kind="csv_syntax", message=f"cannot read the header: {exc}",
                           hint=header_hint)]
    lowered = [h.lower() for h in header]
    want = {"id": spec.id_column.strip(), "label": spec.label_column.strip()}
    index: dict[str, int] = {}
    missing_cols: list[str] = []
    for role, column in want.items():
        hits = [i for i, h in enumerate(lowered) if h == column.lower()]
        if len(hits) > 1:
            errors.append(CsvProblem(file=name, line=1, kind="duplicate_column",
                                     message=f"the header has {len(hits)} columns named {column!r}",
                                     hint=f"Keep one '{column}' column"))
        elif hits:
            index[role] = hits[0]
        else:
            missing_cols.append(column)
    if missing_cols:
        found = ", ".join(_column_name(h) for h in header) or "none"
        errors.append(CsvProblem(
            file=name, line=1, kind="missing_column",
            message=(f"no {' and no '.join(repr(c) for c in missing_cols)} column in the header "
                     f"(read with separator {_sep_name(sep)}); found columns: {found}; "
                     f"expected: {want['id']!r} and {want['label']!r} (any case)"),
            hint=f"{header_hint}; separate the columns with ',', ';' or a tab"))
    if errors:
        return errors + warnings
    extra = [h for i, h in enumerate(header) if i not in index.values()]
    if extra:
        unnamed = " An unnamed first column is usually the pandas index: write with to_csv(..., index=False)" \
            if "" in extra else ""
        warnings.append(CsvProblem(
            file=name, line=1, kind="extra_columns", severity="warning",
            message=f"{_plural(len(extra), 'column')} ignored: {', '.join(_column_name(h) for h in extra)}",
            hint=f"Only '{want['id']}' and '{want['label']}' are read.{unnamed}"))

    labels_reader = _LabelReader(class_names)
    expected = set(expected_ids)
    id_at, label_at = index["id"], index["label"]
    needed = max(id_at, label_at) + 1
    seen: dict[str, int] = {}  # id -> first line
    labels: dict[str, int] = {}
    duplicates: dict[str, list[int]] = {}
    unknown: list[tuple[str, int]] = []
    empty_ids: list[int] = []
    empty_labels: list[tuple[str, int]] = []
    bad_labels: list[tuple[str, int]] = []
    short_rows: list[tuple[int, int]] = []
    ragged: list[int] = []
    float_labels: list[int] = []
    rows = 0
    previous = reader.line_num
    while True:
        line = previous + 1  # physical line where this record starts (a quoted field may span lines)
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(CsvProblem(file=name, line=line, kind="csv_syntax", message=f"cannot read this line: {exc}",
                                     hint="Check the quotes on this line: a quoted field must end with a quote"))
            break
        previous = reader.line_num
        if not any(field.strip() for field in row):
            continue  # blank line
        rows += 1
        if len(row) < needed:
            short_rows.append((line, len(row)))
            if id_at < len(row) and row[id_at].strip():
                seen.setdefault(row[id_at].strip(), line)  # present, so not also reported as missing
            continue
        if len(row) > len(header):
            ragged.append(line)
        ident, label = row[id_at].strip(), row[label_at].strip()
        if not ident:
            empty_ids.append(line)
            continue
        if ident in seen:
            duplicates.setdefault(ident, [seen[ident]]).append(line)
            continue
        seen[ident] = line
        if ident not in expected:
            unknown.append((ident, line))
            continue
        if not label:
            empty_labels.append((ident, line))
            continue
        value, as_float = labels_reader.read(label)
        if value is None:
            bad_labels.append((label, line))
            continue
        if as_float:
            float_labels.append(line)
        labels[ident] = value

    if rows == 0 and not errors:
        return [CsvProblem(file=name, line=1, kind="no_rows", message="the file has a header but no rows",
                           hint=header_hint)] + warnings
    id_hint = f"Use the ids exactly as in the test set (for example {expected_ids[0]!r})" if expected_ids else ""
    if short_rows:
        n = len(short_rows)
        errors.append(CsvProblem(
            file=name, line=short_rows[0][0], kind="short_rows",
            message=(f"{_plural(n, 'row')} {'has' if n == 1 else 'have'} fewer fields than the header "
                     f"({len(header)}): " + _few([f"line {ln} has {_plural(k, 'field')}" for ln, k in short_rows])),
            hint=(f"The separator is {_sep_name(sep)} (read from the header line): use it on every line, "
                  "and put quotes around a field that contains it")))
    if empty_ids:
        errors.append(CsvProblem(
            file=name, line=empty_ids[0], kind="empty_id",
            message=f"{_plural(len(empty_ids), 'row')} without an id: " + _few([f"line {ln}" for ln in empty_ids]),
            hint=f"Write the id of the test image in column '{want['id']}' of every row"))
    if duplicates:
        first_line = min(lines[1] for lines in duplicates.values())
        described = [f"{i!r} (lines {', '.join(map(str, lines[:4]))}{', ...' if len(lines) > 4 else ''})"
                     for i, lines in sorted(duplicates.items(), key=lambda kv: kv[1][1])]
        errors.append(CsvProblem(
            file=name, line=first_line, kind="duplicate_ids",
            message=(f"{_plural(len(duplicates), 'id')} {'appears' if len(duplicates) == 1 else 'appear'} more than once: "
                     f"{_few(described)}"),
            hint="Keep exactly one row per id"))
    if unknown:
        errors.append(CsvProblem(
            file=name, line=unknown[0][1], kind="unknown_ids",
            message=(f"{_plural(len(unknown), 'id')} {'is' if len(unknown) == 1 else 'are'} not in the test set: "
                     + _few([f"{i!r} (line {ln})" for i, ln in unknown])),
            hint=f"{id_hint}; do not renumber them or add rows"))
    if empty_labels:
        errors.append(CsvProblem(
            file=name, line=empty_labels[0][1], kind="empty_label",
            message=(f"{_plural(len(empty_labels), 'row')} without a {want['label']!r}: "
                     + _few([f"line {ln} (id {i!r})" for i, ln in empty_labels])),
            hint=f"Write {labels_reader.valid()} in every row"))
    if bad_labels:
        errors.append(CsvProblem(
            file=name, line=bad_labels[0][1], kind="invalid_label",
            message=(f"{_plural(len(bad_labels), 'label')} {'is' if len(bad_labels) == 1 else 'are'} not a valid "
                     "class: " + _few([f"{v!r} (line {ln})" for v, ln in bad_labels])),
            hint=f"Write {labels_reader.valid()}"))
    missing = [i for i in expected_ids if i not in seen]
    if missing:
        errors.append(CsvProblem(
            file=name, kind="missing_ids",
            message=(f"{len(missing):,} of {len(expected_ids):,} test ids have no row: "
                     + _few([repr(i) for i in missing])),
            hint=f"Write one row for every id of the test set ({len(expected_ids):,} rows)"))
    if ragged:
        warnings.append(CsvProblem(
            file=name, line=ragged[0], kind="ragged_rows", severity="warning",
            message=(f"{_plural(len(ragged), 'row')} {'has' if len(ragged) == 1 else 'have'} more fields than the "
                     f"header ({len(header)}): " + _few([f"line {ln}" for ln in ragged])),
            hint="The extra fields were ignored; check that the separator is used the same way on every line"))
    if float_labels:
        warnings.append(CsvProblem(
            file=name, line=float_labels[0], kind="float_labels", severity="warning",
            message=f"{_plural(len(float_labels), 'label')} written as decimals (such as '3.0') were read as whole numbers",
            hint="Write class indices as integers, e.g. predictions.astype(int)"))
    if errors:
        return errors[:MAX_PROBLEMS] + warnings
    return Predictions(file=name, ids=tuple(expected_ids), labels=tuple(labels[i] for i in expected_ids),
                       warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------------
# Scoring


class Scores(Frozen):
    public: float
    private: float
    n_public: int
    n_private: int


def score(
    predictions: Predictions,
    labels_by_id: Mapping[str, int],
    public_ids: Collection[str],
    private_ids: Collection[str],
    metric: str | MetricFunction = "accuracy",
) -> Scores:
    """Score each part of the test set with `metric` (a registered name or a function). Pure."""
    fn = get_metric(metric) if isinstance(metric, str) else metric
    if set(public_ids) & set(private_ids):
        raise ValueError("public_ids and private_ids overlap; take both from public_private_split")
    predicted = predictions.by_id()

    def part(ids: Collection[str], which: str) -> float:
        if not ids:
            raise ValueError(f"the {which} part of the test set is empty; choose a public_fraction that leaves ids in both")
        order = sorted(ids)
        missing = [i for i in order if i not in predicted or i not in labels_by_id]
        if missing:
            raise ValueError(f"{len(missing)} {which} ids have no prediction or no label, e.g. {missing[:3]}")
        return float(fn([labels_by_id[i] for i in order], [predicted[i] for i in order]))

    return Scores(public=part(public_ids, "public"), private=part(private_ids, "private"),
                  n_public=len(public_ids), n_private=len(private_ids))


# --------------------------------------------------------------------------------------------------
# The ledger

class SelectionEvent(Frozen):
    """A student (de)selects one of their scored submissions for the final leaderboard."""

    kind: Literal["selection"] = "selection"
    student: str
    sha256: str
    selected: bool
    at: UtcDatetime


_Entry = Annotated[SubmissionRecord | SelectionEvent, Field(discriminator="kind")]
_ENTRY: TypeAdapter[SubmissionRecord | SelectionEvent] = TypeAdapter(_Entry)


class LedgerState(Frozen):
    """What the ledger holds: submissions in the order written, selection applied."""

    records: tuple[SubmissionRecord, ...] = ()
    warnings: tuple[str, ...] = ()  # lines that could not be read (a crash while writing)


def _fold(entries: Iterable[SubmissionRecord | SelectionEvent]) -> tuple[SubmissionRecord, ...]:
    records: list[SubmissionRecord] = []
    where: dict[tuple[str, str], int] = {}  # (student, sha256) -> index of the scored record
    for entry in entries:
        if isinstance(entry, SubmissionRecord):
            if entry.status == "scored":
                where.setdefault((entry.student, entry.sha256), len(records))
            records.append(entry.model_copy(update={"selected": False}))
        elif (entry.student, entry.sha256) in where:
            i = where[(entry.student, entry.sha256)]
            records[i] = records[i].model_copy(update={"selected": entry.selected})
    return tuple(records)


class Ledger:
    """An append-only JSON Lines file of submissions and selections; the file is the whole state.

    Each entry is one line, written with a single ``write`` on an ``O_APPEND`` descriptor and
    fsynced. Writers hold an exclusive ``flock`` while they read the state, decide and append, so
    two graders submitting at once cannot both take the last allowed slot. A line that cannot be
    read (a crash mid-write leaves a truncated last line) is skipped with a warning; before the
    next append the writer ends that line, so a new entry is never glued onto a broken one, and
    nothing already written is ever changed.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> LedgerState:
        """The current state (under a shared lock, so no half-written line is seen)."""
        if not self.path.exists():
            return LedgerState()
        with open(self.path, "rb") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
            try:
                return self._parse(fh.read())
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def records(self) -> tuple[SubmissionRecord, ...]:
        return self.read().records

    def _parse(self, raw: bytes) -> LedgerState:
        entries: list[SubmissionRecord | SelectionEvent] = []
        warnings: list[str] = []
        lines = raw.split(b"\n")
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entries.append(_ENTRY.validate_json(line))
            except (ValidationError, ValueError) as exc:
                last = number == len(lines)  # no newline after it: the write was cut short
                what = "a truncated last line (a crash while writing?)" if last else "an unreadable line"
                first = str(exc).splitlines()[0][:200]
                warnings.append(f"{self.path.name}:{number}: ignored {what}: {first}")
        return LedgerState(records=_fold(entries), warnings=tuple(warnings))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Writer]:
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if created:
                _fsync_dir(self.path.parent)
            yield _Writer(self, fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class _Writer:
    """The ledger while a writer holds its exclusive lock."""

    def __init__(self, ledger: Ledger, fd: int) -> None:
        self.ledger, self.fd = ledger, fd

    def state(self) -> LedgerState:
        size = os.fstat(self.fd).st_size
        return self.ledger._parse(os.pread(self.fd, size, 0) if size else b"")

    def append(self, entry: SubmissionRecord | SelectionEvent) -> None:
        line = entry.model_dump_json().encode() + b"\n"
        size = os.fstat(self.fd).st_size
        if size and os.pread(self.fd, 1, size - 1) != b"\n":
            line = b"\n" + line  # end the line a crash left unfinished
        view = memoryview(line)
        while view:  # a regular file takes it in one write; loop in case it does not
            view = view[os.write(self.fd, view):]
        os.fsync(self.fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _when(*moments: datetime) -> list[str]:
    """UTC times as 'YYYY-MM-DD HH:MM UTC', with seconds for all when any has them."""
    utc = [m.astimezone(UTC) for m in moments]
    fmt = "%Y-%m-%d %H:%M" if all(m.second == 0 and m.microsecond == 0 for m in utc) else "%Y-%m-%d %H:%M:%S"
    return [m.strftime(fmt) + " UTC" for m in utc]


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    return now.astimezone(UTC)


def _decide(
    records: Sequence[SubmissionRecord],
    spec: CompetitionSpec,
    student: str,
    file_name: str,
    content: bytes,
    now: datetime,
    expected_ids: Sequence[str],
    labels_by_id: Mapping[str, int],
    class_names: Sequence[str] | None,
) -> tuple[SubmissionRecord, bool]:
    """The record for this submission, and whether it is new (False: an earlier one is returned). Pure."""
    now = _require_aware(now)
    sha = hashlib.sha256(content).hexdigest()
    mine = [r for r in records if r.student == student]
    for r in mine:
        # The same bytes are the same submission: return its record rather than count it again.
        # A refused one is not reused: the same file may be accepted the next day.
        if r.sha256 == sha and r.status in ("scored", "invalid"):
            return r, False
    base = dict(student=student, submitted_at=now, file_name=file_name, sha256=sha)
    if spec.deadline is not None and now > spec.deadline:
        submitted, deadline = _when(now, spec.deadline)
        return SubmissionRecord(**base, status="refused", reason=f"late: submitted {submitted}, deadline {deadline}"), True
    # Only scored submissions count against the limits. A file that cannot be scored (or a refusal)
    # uses up nothing: a format slip should not cost a day's quota, and Kaggle does not count
    # errored submissions either.
    scored = [r for r in mine if r.status == "scored"]
    today = now.date()
    if spec.max_per_day is not None:
        n_today = sum(r.submitted_at.date() == today for r in scored)
        if n_today >= spec.max_per_day:
            tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
            return SubmissionRecord(**base, status="refused", reason=(
                f"daily limit: {n_today} scored submissions on {today.isoformat()} (UTC) already, at most "
                f"{spec.max_per_day} a day; submit again from {_when(tomorrow)[0]}")), True
    if spec.max_total is not None and len(scored) >= spec.max_total:
        return SubmissionRecord(**base, status="refused", reason=(
            f"total limit: {len(scored)} scored submissions already, at most {spec.max_total} in all")), True
    parsed = read_predictions(content, spec, expected_ids, class_names, name=file_name)
    if isinstance(parsed, list):
        errors = [p for p in parsed if p.severity == "error"]
        texts = tuple(p.text for p in errors) + tuple(p.text for p in parsed if p.severity == "warning")
        return SubmissionRecord(**base, status="invalid", reason=errors[0].text if errors else "invalid file",
                                problems=texts), True
    public, private = public_private_split(expected_ids, spec.public_fraction, spec.seed)
    s = score(parsed, labels_by_id, public, private, spec.metric)
    return SubmissionRecord(**base, status="scored", public_score=s.public, private_score=s.private,
                            warnings=tuple(w.text for w in parsed.warnings)), True


def submit(
    ledger: Ledger,
    spec: CompetitionSpec,
    student: str,
    file_name: str,
    content: bytes,
    now: datetime,
    expected_ids: Sequence[str],
    labels_by_id: Mapping[str, int],
    class_names: Sequence[str] | None,
) -> SubmissionRecord:
    """Check, score and record one submission; return its record (the earlier one for the same bytes).

    Order of the rules: the same content as an earlier scored/invalid submission -> that record;
    after the deadline -> refused; over the daily (UTC) or total limit -> refused; a file that cannot
    be read -> invalid, with every problem; else scored on both parts of the test set.
    """
    with ledger._locked() as writer:
        record, new = _decide(writer.state().records, spec, student, file_name, content, now,
                              expected_ids, labels_by_id, class_names)
        if new:
            writer.append(record)
        return record


def _mark(ledger: Ledger, spec: CompetitionSpec, student: str, sha256: str, now: datetime, on: bool) -> SubmissionRecord:
    now = _require_aware(now)
    if spec.deadline is not None and now > spec.deadline:
        # After the deadline private scores may be known: changing the choice then would be picking by them.
        raise CompetitionError(f"the final selection closed at the deadline, {_when(spec.deadline)[0]}")
    with ledger._locked() as writer:
        records = [r for r in writer.state().records if r.student == student and r.status == "scored"]
        target = next((r for r in records if r.sha256 == sha256), None)
        if target is None:
            raise CompetitionError(f"{student} has no scored submission with sha256 {sha256[:12]}...; "
                                   "only scored submissions can be selected")
        if target.selected == on:
            return target
        chosen = [r for r in records if r.selected]
        if on and len(chosen) >= spec.select:
            names = ", ".join(f"{r.file_name} ({r.sha256[:8]})" for r in chosen)
            raise CompetitionError(f"{student} has already selected {len(chosen)} submissions ({names}); "
                                   f"at most {spec.select} count; deselect one first")
        writer.append(SelectionEvent(student=student, sha256=sha256, selected=on, at=now))
        return target.model_copy(update={"selected": on})


def select(ledger: Ledger, spec: CompetitionSpec, student: str, sha256: str, now: datetime) -> SubmissionRecord:
    """Mark one of the student's scored submissions for the final leaderboard (at most `spec.select`)."""
    return _mark(ledger, spec, student, sha256, now, True)


def deselect(ledger: Ledger, spec: CompetitionSpec, student: str, sha256: str, now: datetime) -> SubmissionRecord:
    """Undo `select`."""
    return _mark(ledger, spec, student, sha256, now, False)


# --------------------------------------------------------------------------------------------------
# Final selection and leaderboards (pure)


def _by_student(records: Iterable[SubmissionRecord]) -> dict[str, list[SubmissionRecord]]:
    out: dict[str, list[SubmissionRecord]] = {}
    for r in records:
        if r.status == "scored":
            out.setdefault(r.student, []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r.submitted_at)
    return out


def select_for_final(records: Iterable[SubmissionRecord], spec: CompetitionSpec) -> list[SubmissionRecord]:
    """The submissions that count for the final board, for every student (by student, then time).

    A student's explicit selection, if any (more than `spec.select` is an error); otherwise, as
    Kaggle does, their best `spec.select` by PUBLIC score, the earlier one first on ties.
    """
    out: list[SubmissionRecord] = []
    sign = -1.0 if spec.higher_is_better else 1.0
    for student, scored in sorted(_by_student(records).items()):
        chosen = [r for r in scored if r.selected]
        if len(chosen) > spec.select:
            raise CompetitionError(f"{student} has {len(chosen)} selected submissions; at most {spec.select} count")
        if not chosen:
            ranked = sorted(scored, key=lambda r: (sign * (r.public_score or 0.0), r.submitted_at))
            chosen = sorted(ranked[:spec.select], key=lambda r: r.submitted_at)
        out.extend(chosen)
    return out


def leaderboard(
    records: Iterable[SubmissionRecord], spec: CompetitionSpec, which: Literal["public", "private"]
) -> list[ContestRow]:
    """Rank students by their best public score, or by the best private score of their final selection.

    Tied students share a rank (1, 2, 2, 4) and are listed by name. Students without a scored
    submission are not on the board. Pure.
    """
    if which not in ("public", "private"):
        raise ValueError(f"which must be 'public' or 'private'; got {which!r}")
    records = list(records)
    groups = _by_student(records)
    pool = _by_student(select_for_final(records, spec)) if which == "private" else groups
    best = max if spec.higher_is_better else min
    rows: list[tuple[float, str]] = []
    for student, rs in pool.items():
        values = [r.private_score if which == "private" else r.public_score for r in rs]
        present = [v for v in values if v is not None]
        if present:
            rows.append((best(present), student))
    sign = -1.0 if spec.higher_is_better else 1.0
    rows.sort(key=lambda t: (sign * t[0], t[1]))
    out: list[ContestRow] = []
    for position, (value, student) in enumerate(rows, start=1):
        rank = out[-1].rank if out and out[-1].score == value else position
        out.append(ContestRow(rank=rank, student=student, score=value, submissions=len(groups[student]),
                                  last_submitted_at=groups[student][-1].submitted_at))
    return out

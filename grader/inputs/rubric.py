"""Rubrics: YAML files a teacher reads and edits, validated whole before any submission is touched.

Every problem is collected and reported on its own line, naming the file, the line, the criterion
and the field, with what is allowed::

    rubrics/hw10.yaml:14: criterion 'vgg-base': field 'params.threshold': must be a number in [0, 1]; got '91%'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from grader.judging.checks import Criterion, get_check
from grader.errors import RubricError
from grader.scoring.competition import CompetitionSpec
from grader.judging.leaderboard import LeaderboardSpec

_TOP_KEYS = {"assignment": str, "title": str, "dataset": str, "description": str, "notebooks": dict, "leaderboard": dict,
             "competition": dict, "images": dict, "plausibility": dict, "sandbox": dict, "criteria": list}


_TOP_WORDS = {list: "a list of criteria", dict: "a mapping of settings", str: "text"}


class NotebookPolicy(BaseModel):
    """The rubric's `notebooks:` section: whether and how submitted notebooks are executed.

    Executing trains the student's models again, which can take long: `execute: false` (the default)
    reads notebooks statically (code, saved outputs, printed claims) and never runs them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    execute: bool = Field(default=False, description="run each notebook in the sandbox")
    select: tuple[str, ...] = Field(default=("*.ipynb",), min_length=1, description="globs of the notebooks to execute")
    timeout: float = Field(default=1800.0, gt=0, le=86400, description="seconds for a whole notebook")
    cell_timeout: float = Field(default=600.0, gt=0, le=86400, description="seconds for one cell")
    allow_errors: bool = Field(default=False, description="go on after a cell raises (default: stop there)")
    max_output_chars: int = Field(default=20_000, ge=100, le=10_000_000, description="text one cell may print; the rest is cut")
    max_processes: int = Field(default=64, ge=4, le=4096, description="processes a notebook may run at once")
class ImagesPolicy(BaseModel):
    """The rubric's `images:` section: the data set is a folder of images (grader.inputs.image_folder), one
    folder per class or a labels.csv, found in hidden_tests/<dataset>/test/ (hidden) and
    hidden_tests/<dataset>/train/ (public), or where --hidden-tests and --public-data say."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    classes: tuple[str, ...] | None = Field(default=None, min_length=2, description="class names in the order of the models' outputs (default: labels.txt, else the sorted folder names)")
    size: tuple[Annotated[int, Field(ge=8, le=1024)], Annotated[int, Field(ge=8, le=1024)]] = Field(
        default=(128, 128), description="height and width every image is resized to before it is adapted to each model")
    color: Literal["rgb", "gray"] = Field(default="rgb", description="read the images in colour or as grayscale")
    csv: str | None = Field(default=None, description="name of the filename,label CSV (default labels.csv, when there is one)")


class PlausibilityPolicy(BaseModel):
    """The rubric's `plausibility:` section: when a model's accuracy on the hidden set is too good to
    be true, the teacher's pages flag it (never the student's page; points do not change). A public
    test set (Fashion-MNIST's hidden set is the official t10k split, which anyone can download) can be
    learnt by heart: a model with no code, whose weights hold the test images and their labels, scores
    1.0. Such a model scores far higher on the test set than on the PUBLIC training sample that the
    grader also measures, and higher than any honest model reaches."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_accuracy: float | None = Field(default=None, ge=0, le=1, description="flag a hidden-set accuracy above this "
                                       "(default: the data set's, 0.96 for fashion-mnist; none for an image folder)")
    margin: float = Field(default=0.05, ge=0, le=1, description="flag a hidden-set accuracy that exceeds the model's "
                          "accuracy on the public training sample by more than this")


class SandboxPolicy(BaseModel):
    """The rubric's `sandbox:` section: what one submission's sandbox may use while it is graded (its
    model evaluation or its notebook). `grade --disk-limit` overrides `disk_gb` for one run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    disk_gb: float = Field(default=2.0, gt=0, le=1024, description="what the submission may write: its files, /tmp "
                           "and /dev/shm are size-capped memory that vanishes with it (never the host's disk)")
    max_tasks: int = Field(default=512, ge=16, le=65536, description="processes and threads it may hold at once "
                           "(a pids cgroup, where the machine lets the grader make one)")


class CompetitionPolicy(CompetitionSpec):
    """The rubric's `competition:` section: students hand in prediction files (`id,label` CSVs) that
    the grader scores on the hidden set, split into a public and a private part, with limits per day
    and in total kept in a ledger that survives restarts (grader.scoring.competition)."""

    title: str = Field(default="Class competition", description="heading of the leaderboards")
    files: tuple[str, ...] = Field(default=("predictions*.csv", "submission*.csv"), min_length=1,
                                   description="globs of the prediction files in a submission")
    selection_file: str = Field(default="selected.txt", description="a file in the submission naming, one per line, "
                                "the prediction files chosen for the final board (none: the best by public score)")


_CRITERION_KEYS = ("id", "title", "points", "check", "params", "description")


class Rubric(BaseModel):
    """A validated rubric. `criteria` carry their parsed parameter models."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    assignment: str
    title: str
    dataset: str = "fashion-mnist"
    description: str = ""
    notebooks: NotebookPolicy = NotebookPolicy()
    leaderboard: LeaderboardSpec | None = None  # a class contest ranked by a measured score (grader.judging.leaderboard)
    competition: CompetitionPolicy | None = None  # a contest of prediction files (grader.scoring.competition)
    images: ImagesPolicy | None = None  # the data set is an image folder (grader.inputs.image_folder)
    plausibility: PlausibilityPolicy = PlausibilityPolicy()  # when a hidden-set accuracy is flagged (grader.judging.plausibility)
    sandbox: SandboxPolicy = SandboxPolicy()  # what one submission's sandbox may write and start
    criteria: tuple[Criterion, ...]

    @property
    def max_points(self) -> float:
        return sum(c.points for c in self.criteria)


@dataclass
class _Problems:
    path: str
    lines: dict[tuple[Any, ...], int]
    items: list[str] = field(default_factory=list)

    def add(self, where: tuple[Any, ...], message: str, criterion: str | None = None, field_name: str | None = None) -> None:
        line = self._line(where)
        parts = [f"{self.path}:{line}" if line else self.path]
        if criterion is not None:
            parts.append(f"criterion {criterion!r}")
        if field_name is not None:
            parts.append(f"field {field_name!r}")
        parts.append(message)
        self.items.append(": ".join(parts))

    def _line(self, where: tuple[Any, ...]) -> int | None:
        while where:
            if where in self.lines:
                return self.lines[where]
            where = where[:-1]
        return self.lines.get((), None)


def _line_map(node: yaml.Node, path: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), lines)


def _close(name: str, known: list[str]) -> str:
    match = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {match[0]!r}?" if match else ""


def _field_bounds(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """'a number in [0, 1]' for a constrained float field, found by walking the params model."""
    current: Any = model
    info = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        info = current.model_fields[part]
        current = info.annotation
    if info is None:
        return None
    lo = hi = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            lo = f"[{meta.ge}"
        elif isinstance(meta, annotated_types.Gt):
            lo = f"({meta.gt}"
        elif isinstance(meta, annotated_types.Le):
            hi = f"{meta.le}]"
        elif isinstance(meta, annotated_types.Lt):
            hi = f"{meta.lt})"
    kind = "a whole number" if info.annotation in (int, int | None) else "a number"
    if lo and hi:
        return f"{kind} in {lo}, {hi}"
    if lo:
        return f"{kind} {'>=' if lo[0] == '[' else '>'} {lo[1:]}"
    if hi:
        return f"{kind} {'<=' if hi[-1] == ']' else '<'} {hi[:-1]}"
    return None


def _explain(error: dict[str, Any], model: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    got = error.get("input")
    loc = tuple(p for p in error["loc"] if not isinstance(p, int))
    bounds = _field_bounds(model, loc)
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        parent: Any = model
        for part in loc[:-1]:
            info = parent.model_fields.get(part) if isinstance(parent, type) and issubclass(parent, BaseModel) else None
            parent = info.annotation if info else None
        known = sorted(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        return f"unknown field{_close(str(loc[-1]), known)} known: {', '.join(known)}"
    if bounds and kind in {"float_parsing", "float_type", "int_parsing", "int_type", "int_from_float",
                           "greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        message = f"must be {bounds}"
    elif kind in {"float_parsing", "float_type"}:
        message = "must be a number"
    elif kind in {"int_parsing", "int_type", "int_from_float"}:
        message = "must be a whole number"
    elif kind in {"bool_parsing", "bool_type"}:
        message = "must be true or false"
    elif kind == "literal_error":
        message = f"must be one of {ctx.get('expected', '')}"
    elif kind in {"string_type"}:
        message = "must be text"
    elif kind in {"tuple_type", "list_type"}:
        message = "must be a list"
    elif kind == "too_short":
        message = f"must have at least {ctx.get('min_length')} item(s)"
    elif kind in {"model_type", "model_attributes_type", "dict_type"}:
        message = "must be a mapping of fields"
    elif kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
    else:
        message = error["msg"]
    if not isinstance(got, dict) and kind not in {"value_error"}:
        message += f"; got {got!r}"
    return message


_Section = TypeVar("_Section", bound=BaseModel)


def _section(data: dict[str, Any], key: str, model: type[_Section], problems: _Problems) -> _Section | None:
    """A top-level settings section (`notebooks:`, `images:`, ...) validated into `model`; None when
    absent or invalid (every problem is added, with its line and field)."""
    if not isinstance(data.get(key), dict):
        return None
    try:
        return model.model_validate(data[key])
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            name = key + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            problems.add((key,) + loc, _explain(error, model), field_name=name)
        return None


def load_rubric(path: str | Path) -> Rubric:
    """Read and validate a rubric file. Raises RubricError listing every problem found."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RubricError([f"{shown}: no such rubric file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RubricError([f"{shown}: cannot read the rubric: {exc}"]) from None
    return parse_rubric(text, shown)


def parse_rubric(text: str, shown: str) -> Rubric:
    """Validate rubric YAML `text`; `shown` is the file name used in messages."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}" if mark else shown
        raise RubricError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from None
    finally:
        loader.dispose()
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_map(node, (), lines)
    problems = _Problems(shown, lines)
    if not isinstance(data, dict):
        problems.add((), "a rubric is a mapping with 'assignment', 'title' and 'criteria'")
        raise RubricError(problems.items)

    for key in data:
        if key not in _TOP_KEYS:
            problems.add((key,), f"unknown key {key!r}{_close(str(key), list(_TOP_KEYS))} known: {', '.join(_TOP_KEYS)}")
    for key, kind in _TOP_KEYS.items():
        if key in data and not isinstance(data[key], kind):
            problems.add((key,), f"{key!r} must be {_TOP_WORDS[kind]}; got {data[key]!r}")
    for key in ("assignment", "criteria"):
        if key not in data:
            problems.add((), f"missing {key!r}")
    dataset = data.get("dataset", "fashion-mnist")
    images = _section(data, "images", ImagesPolicy, problems)
    if isinstance(dataset, str) and "images" not in data:
        from grader.inputs.datasets import dataset_names

        if dataset not in dataset_names():
            problems.add(("dataset",), f"unknown dataset {dataset!r}{_close(dataset, dataset_names())} known: {', '.join(dataset_names())}; "
                         "for a folder of images add an `images:` section (e.g. images: {size: [128, 128]})")
    if "images" in data and isinstance(data.get("notebooks"), dict) and data["notebooks"].get("execute"):
        problems.add(("notebooks", "execute"), "notebooks cannot be executed yet when the data set is an image folder "
                     "(the sandbox has no copy of the public images for them); set execute: false", field_name="notebooks.execute")

    notebooks = _section(data, "notebooks", NotebookPolicy, problems) or NotebookPolicy()

    leaderboard = _section(data, "leaderboard", LeaderboardSpec, problems)

    competition = _section(data, "competition", CompetitionPolicy, problems)

    plausibility = _section(data, "plausibility", PlausibilityPolicy, problems) or PlausibilityPolicy()

    sandbox = _section(data, "sandbox", SandboxPolicy, problems) or SandboxPolicy()

    criteria: list[Criterion] = []
    seen: dict[str, int] = {}
    raw_criteria = data.get("criteria") if isinstance(data.get("criteria"), list) else []
    if isinstance(data.get("criteria"), list) and not raw_criteria:
        problems.add(("criteria",), "the rubric has no criteria")
    for i, raw in enumerate(raw_criteria):
        criterion = _parse_criterion(raw, i, problems, seen)
        if criterion is not None:
            criteria.append(criterion)
    if not notebooks.execute:
        for i, c in enumerate(criteria):
            if "notebook_runs" in get_check(c.check).needs:
                problems.add(("criteria", i, "check"), f"check {c.check!r} needs the notebooks to be executed: add "
                             "`notebooks: {execute: true}` at the top of the rubric", c.id, "check")
    if competition is None:
        for i, c in enumerate(criteria):
            if "competition" in get_check(c.check).needs:
                problems.add(("criteria", i, "check"), f"check {c.check!r} needs a `competition:` section at the top of the rubric",
                             c.id, "check")
    if problems.items:
        raise RubricError(problems.items)
    return Rubric(
        path=shown,
        assignment=str(data["assignment"]),
        title=str(data.get("title") or data["assignment"]),
        dataset=str(dataset),
        description=str(data.get("description") or ""),
        notebooks=notebooks,
        leaderboard=leaderboard,
        competition=competition,
        images=images,
        plausibility=plausibility,
        sandbox=sandbox,
        criteria=tuple(criteria),
    )


def _parse_criterion(raw: Any, i: int, problems: _Problems, seen: dict[str, int]) -> Criterion | None:
    where = ("criteria", i)
    if not isinstance(raw, dict):
        problems.add(where, f"criterion #{i + 1} must be a mapping with id, points, check and params; got {raw!r}")
        return None
    cid = raw.get("id")
    label = str(cid) if cid is not None else f"#{i + 1}"
    ok = True
    for key in raw:
        if key not in _CRITERION_KEYS:
            problems.add(where + (key,), f"unknown key{_close(str(key), list(_CRITERION_KEYS))} known: {', '.join(_CRITERION_KEYS)}", label, str(key))
            ok = False
    if not isinstance(cid, str) or not cid.strip():
        problems.add(where + ("id",), "every criterion needs an 'id' (text, unique in the rubric)", label, "id")
        ok = False
    elif cid in seen:
        problems.add(where + ("id",), f"duplicate id; criterion #{seen[cid] + 1} has it already", label, "id")
        ok = False
    else:
        seen[cid] = i
    points = raw.get("points")
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        problems.add(where + ("points",), f"must be a number >= 0; got {points!r}", label, "points")
        ok = False
    check_name = raw.get("check")
    params_raw = raw.get("params", {}) or {}
    if not isinstance(check_name, str):
        problems.add(where + ("check",), "every criterion needs a 'check' (see `grade checks`)", label, "check")
        return None
    try:
        spec = get_check(check_name)
    except KeyError as exc:
        problems.add(where + ("check",), str(exc.args[0]), label, "check")
        return None
    if not isinstance(params_raw, dict):
        problems.add(where + ("params",), f"must be a mapping of the check's parameters; got {params_raw!r}", label, "params")
        return None
    try:
        params = spec.params.model_validate(params_raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            name = "params" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
            problems.add(where + ("params",) + loc, _explain(error, spec.params), label, name)
        return None
    if not ok:
        return None
    return Criterion(
        id=cid,
        title=str(raw.get("title") or cid),
        points=float(points),
        check=check_name,
        params=params,
        description=str(raw.get("description") or ""),
    )

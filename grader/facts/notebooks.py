"""Static facts from submitted notebooks: what their code does and what their saved outputs say.

Nothing is executed here (running a notebook is `grader.sandbox.notebook_sandbox`'s job). Code facts come from
the AST of each code cell: a cell is parsed as written and, when that fails, again with IPython-only
syntax blanked (`!shell`, `%magic`, `obj?`, cell magics), line numbers unchanged. So a comment or a
string that mentions ``VGG16(weights='imagenet')`` or ``validation_data=(x_test, y_test)`` does not
count; a real call does.

Saved outputs become text (`outputs_text`): streams and ``text/plain`` as printed, an image as a line
such as ``[image/png]``, an error as ``ename: evalue`` and the last lines of its traceback. ANSI
colour codes are removed and progress bars redrawn with ``\\r`` and backspaces keep only their final
state. Scores printed in that text become claims (`claims_from_cells`), shown beside what the grader
measures and never used as a grade.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
import warnings
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grader.records.evidence import AppCall, Claim, FitCall, History, NotebookCell, NotebookEvidence, TrainableSet

APPLICATION_NAMES = frozenset({
    "VGG16", "VGG19", "ResNet50", "ResNet50V2", "ResNet101", "ResNet152", "MobileNet", "MobileNetV2",
    "MobileNetV3Small", "MobileNetV3Large", "InceptionV3", "InceptionResNetV2", "Xception", "DenseNet121",
    "DenseNet169", "DenseNet201", "NASNetMobile", "NASNetLarge", "ConvNeXtTiny",
    *(f"EfficientNetB{i}" for i in range(8)), *(f"EfficientNetV2B{i}" for i in range(4)),
})
# Keras layer classes whose construction is recorded in `layer_calls` (every name the checks' layer
# families use is here, so `conv` / `pooling` / `recurrent` match notebook code too)
LAYER_NAMES = frozenset({
    "Dense", "Conv1D", "Conv2D", "Conv3D", "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
    "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution1D", "Convolution2D", "Convolution3D",
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D", "MaxPool2D", "MaxPool3D", "AveragePooling1D",
    "AveragePooling2D", "AveragePooling3D", "AvgPool2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "GaussianNoise", "GaussianDropout", "BatchNormalization", "LayerNormalization", "GroupNormalization",
    "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Reshape", "Permute", "RepeatVector",
    "UpSampling1D", "UpSampling2D", "ZeroPadding1D", "ZeroPadding2D", "Cropping2D", "Resizing", "Rescaling",
    "CenterCrop", "Normalization", "Lambda", "Input", "InputLayer", "Embedding", "LSTM", "GRU", "SimpleRNN",
    "Bidirectional", "ConvLSTM2D", "TimeDistributed", "Concatenate", "Add", "Multiply", "Average", "Maximum",
    "Subtract", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast", "RandomCrop",
    "RandomBrightness",
})
# data-augmentation APIs recorded in `augmentation`; `tf.image.random_*` calls are recorded by their own name
AUGMENTATION_NAMES = frozenset({
    "ImageDataGenerator", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
    "RandomCrop", "RandomBrightness", "AutoAugment", "RandAugment",
})
MAX_NOTEBOOK_BYTES = 200 * 1024**2
MAX_SOURCE_CHARS = 20_000  # per cell, in `content`
MAX_OUTPUT_CHARS = 8_000  # per cell, in `content` and in the text claims are read from (the end is kept)
MAX_CONTENT_CHARS = 400_000  # per notebook: later cells keep their place in `content`, with empty texts
MAX_CLAIMS = 50  # per notebook: the last ones, since final results matter
MAX_HISTORIES = 10  # training histories per notebook: the last ones
MAX_HISTORY_EPOCHS = 1_000  # per history: the first ones
MAX_HISTORY_METRICS = 12  # per history: the first ones printed
TRUNCATED = "… [truncated]"

_RAW_OUTPUT_CHARS = 2_000_000  # a cell's raw output is cut to its end before progress bars are redrawn
_TRACEBACK_LINES = 5
_CLAIM_TEXT_CHARS = 200
_CELL_TYPES: dict[str, Literal["code", "markdown", "raw"]] = {"code": "code", "markdown": "markdown", "raw": "raw"}
# cell magics whose body is Python (only the magic line is blanked); any other `%%` cell is blanked whole
_PYTHON_CELL_MAGICS = frozenset({"capture", "time", "timeit", "prun"})
_FIT_NAMES = frozenset({"fit", "fit_generator"})
_LOOPS = (ast.For, ast.AsyncFor, ast.While)

# ---- output text (regexes over OUTPUT text only; code is read through the AST)
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_NUMBER = r"(?<![\w.])(?P<num>\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?(?P<pct>\s*%)?(?!\w)"
_NUMBER_RE = re.compile(_NUMBER)
_ACC_KEY = r"(?:sparse_categorical_accuracy|categorical_accuracy|binary_accuracy|compile_metrics|accuracy|acc)"
# `accuracy: 0.88` in a Keras log or a print, not `val_accuracy`, `test_acc`, `Test accuracy:`, `Validation accuracy:`
_LOG_ACC = re.compile(rf"(?<![\w])(?<!val )(?<!validation )(?<!test )(?<!testing ){_ACC_KEY}\s*[:=]\s*{_NUMBER}",
                      re.IGNORECASE)
_VAL_ACC = re.compile(rf"(?<![\w])(?:val_|validation[ _]){_ACC_KEY}\s*[:=]\s*{_NUMBER}", re.IGNORECASE)
_EPOCH_HEADER = re.compile(r"^Epoch \d+/\d+$")
_FIELD_SEPARATORS = re.compile(r"[,;|\t]| - ")
_NOT_TEST = re.compile(r"\bval|\btrain", re.IGNORECASE)
_WORDS_BEFORE_VALUE = frozenset({"is", "was", "of", "are", "=", ":"})
# training histories: "Epoch 3/10" headers and the progress lines under them
_FIT_HEADER = re.compile(r"Epoch (\d{1,9})/(\d{1,9})")
_PROGRESS_START = re.compile(r"(?:(?P<steps>\d{1,12})/(?P<total>\d{1,12}|Unknown)(?![\w/])|-\s)")
_METRIC_FIELD = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63})\s*:\s*"
                           r"(?P<value>[-+]?(?:\d{1,40}(?:\.\d{0,40})?|\.\d{1,40})(?:[eE][-+]?\d{1,4})?|[-+]?(?:nan|inf))",
                           re.IGNORECASE)
_HISTORY_LINE_CHARS = 2_000  # the start of a progress line is read; Keras' lines are far shorter
_HISTORY_FIELDS = 64  # " - "-separated fields read on a line


# ------------------------------------------------------------------------------------------------
# Output text


def _text(value: Any) -> str:
    """A notebook string field, saved either as one string or as a list of lines."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(item if isinstance(item, str) else str(item) for item in value)
    return "" if value is None else str(value)


def _final_segment(line: str) -> str:
    """What a terminal shows for a line redrawn with carriage returns and backspaces: the last
    non-blank part after a `\\r`, with its backspaces applied."""
    for segment in reversed(line.split("\r")):
        if "\b" in segment:
            kept: list[str] = []
            for char in segment:
                if char != "\b":
                    kept.append(char)
                elif kept:
                    kept.pop()
            segment = "".join(kept)
        if segment.strip():
            return segment
    return ""


def _clean_text(text: str) -> str:
    """Output text as it last looked on screen: no ANSI codes, progress bars in their final state,
    no trailing spaces."""
    text = _ANSI.sub("", text).replace("\r\n", "\n")
    lines = []
    for line in text.split("\n"):
        if "\r" in line or "\b" in line:
            line = _final_segment(line)
        lines.append(line.rstrip())
    return "\n".join(lines).strip("\n")


def _keep_end(text: str, limit: int) -> str:
    """The end of `text` within `limit` characters, from a line start, after a marker."""
    if len(text) <= limit:
        return text
    tail = text[len(text) - (limit - len(TRUNCATED) - 1):]
    if "\n" in tail:  # drop the cut line: "accuracy: 0.9" cut from "val_accuracy: 0.9" would mislead
        tail = tail.split("\n", 1)[1]
    return f"{TRUNCATED}\n{tail}"


def _keep_start(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATED) - 1] + "\n" + TRUNCATED


def _error_text(output: Mapping[str, Any]) -> str:
    head = f"{_text(output.get('ename'))}: {_text(output.get('evalue'))}"
    trace = output.get("traceback")
    lines = _ANSI.sub("", "\n".join(_text(x) for x in trace) if isinstance(trace, list) else _text(trace)).split("\n")
    tail = [line.rstrip() for line in lines if line.strip()][-_TRACEBACK_LINES:]
    return "\n".join([head, *tail])


def _data_text(data: Any) -> str:
    """A rich output: its `text/plain`, or a line naming what cannot be read as text ("[image/png]")."""
    if not isinstance(data, Mapping) or not data:
        return ""
    image = next((str(kind) for kind in data if str(kind).startswith("image/")), None)
    if image is not None:
        return f"[{image}]"
    if "text/plain" in data:
        return _text(data["text/plain"])
    return f"[{next(iter(data))}]"


def outputs_text(outputs: Any, limit: int | None = MAX_OUTPUT_CHARS) -> str:
    """The text of a code cell's outputs (nbformat output dicts), cleaned and capped at `limit`
    characters, keeping the end. Used for saved outputs and for the grader's own run; `limit=None`
    gives the whole cleaned text (of the raw output's last _RAW_OUTPUT_CHARS), which training
    histories are read from, since a long training log does not fit in MAX_OUTPUT_CHARS."""
    if not isinstance(outputs, (list, tuple)):
        return ""
    pieces: list[str] = []
    for output in outputs:
        if not isinstance(output, Mapping):
            continue
        kind = output.get("output_type")
        if kind == "stream":
            pieces.append(_text(output.get("text")))  # joined as is: a `\r` may redraw across chunks
            continue
        if kind in ("execute_result", "display_data", "update_display_data"):
            piece = _data_text(output.get("data"))
        elif kind == "error":
            piece = _error_text(output)
        else:
            continue
        if piece:
            if pieces and not pieces[-1].endswith("\n"):
                pieces.append("\n")
            pieces.append(piece + "\n")
    text = _clean_text("".join(pieces)[-_RAW_OUTPUT_CHARS:])
    return text if limit is None else _keep_end(text, limit)


# ------------------------------------------------------------------------------------------------
# Claims


def _fraction(number: str, percent: bool) -> float | None:
    """A printed score as a fraction: 0.91 stays, 91.2 and 91.2% read 0.912; anything else is None."""
    try:
        value = float(number)
    except ValueError:
        return None
    if not 0 <= value <= 100:
        return None
    return value / 100 if percent or value > 1 else value


def _value_from(match: re.Match[str]) -> float | None:
    return _fraction(match.group("num"), bool(match.group("pct")))


def _labelled_test_values(line: str) -> Iterator[tuple[int, float]]:
    """(column, value) of each number labelled as a test accuracy: ``Test accuracy: 0.91``,
    ``test_acc = 91.2%``, ``Test Accuracy 0.88``, ``Test loss: 0.3, accuracy: 0.9``."""
    lower = line.lower()
    if "test" not in lower or "acc" not in lower:
        return
    start = 0
    for separator in [*_FIELD_SEPARATORS.finditer(line), None]:
        end = separator.start() if separator else len(line)
        segment_start = start
        for match in _NUMBER_RE.finditer(line, start, end):
            label = line[segment_start:match.start()]
            if "acc" not in label.lower():  # "Test accuracy after 5 epochs: 0.91": the label spans the field
                label = line[start:match.start()]
            segment_start = match.end()
            if not _labels_test_accuracy(label, line[:start]):
                continue
            value = _value_from(match)
            if value is not None:
                yield match.start(), value
        start = separator.end() if separator else len(line)


def _labels_test_accuracy(label: str, before: str) -> bool:
    lower = label.lower()
    if "acc" not in lower:
        return False
    if "test" not in lower and ("test" not in before.lower() or _NOT_TEST.search(label)):
        return False
    stripped = label.rstrip()
    if stripped.endswith((":", "=")):
        return True
    if not stripped or stripped == label:  # glued to the number: "test_acc0.9", "(top-5"
        return False
    last = stripped.split()[-1].lower()
    return "acc" in last or last in _WORDS_BEFORE_VALUE or last.endswith(")")


def _parse(source: str) -> tuple[ast.Module | None, str]:
    """The AST of a cell (as written, else with IPython syntax blanked) or why it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning / DeprecationWarning for the student's escapes
        try:
            return ast.parse(source), ""
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            pass
        try:
            return ast.parse(_clean(source)), ""
        except SyntaxError as exc:
            return None, f"{exc.msg} (line {exc.lineno})" if exc.lineno else str(exc.msg)
        except ValueError as exc:  # null bytes
            return None, str(exc)
        except (RecursionError, MemoryError):
            return None, "the code is nested too deeply to read"


def _mentions_test(node: ast.AST) -> bool:
    """Whether an expression names the test split: ``x_test``, ``test_images[:1000]``, ``data.x_test / 255``."""
    for child in ast.walk(node):
        name = child.id if isinstance(child, ast.Name) else child.attr if isinstance(child, ast.Attribute) else ""
        if "test" in name.lower():
            return True
    return False


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position and not any(isinstance(a, ast.Starred) for a in call.args[: position + 1]):
        return call.args[position]
    return next((kw.value for kw in call.keywords if kw.arg == keyword), None)


def _evaluates_test(tree: ast.Module | None) -> bool:
    """The cell calls ``.evaluate(x_test, ...)`` with its progress shown (not ``verbose=0``)."""
    if tree is None:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "evaluate":
            data = _argument(node, 0, "x")
            silent = any(kw.arg == "verbose" and isinstance(kw.value, ast.Constant) and kw.value.value == 0
                         for kw in node.keywords)
            if data is not None and _mentions_test(data) and not silent:
                return True
    return False


def _after_training(lines: list[str]) -> int:
    """Index of the first line after the last epoch of a Keras training log (its "Epoch N/M"
    header and the progress line under it); 0 when the cell shows no training."""
    header = max((n for n, line in enumerate(lines) if _EPOCH_HEADER.match(line)), default=None)
    if header is None:
        return 0
    progress = next((n for n in range(header + 1, len(lines)) if lines[n]), len(lines) - 1)
    return progress + 1


def _cell_claims(index: int, source: str, outputs: str, origin: Literal["submitted", "executed"]) -> list[Claim]:
    lines = [line.strip() for line in _clean_text(outputs).split("\n")]

    def claim(metric: Literal["test_accuracy", "val_accuracy", "accuracy"], n: int, value: float) -> Claim:
        return Claim(metric=metric, value=value, text=lines[n][:_CLAIM_TEXT_CHARS], cell=index, origin=origin)

    found: list[tuple[int, int, Claim]] = []  # (line, column, claim): sorted into the order they were printed
    labelled: set[int] = set()
    for n, line in enumerate(lines):
        for column, value in _labelled_test_values(line):
            found.append((n, column, claim("test_accuracy", n, value)))
            labelled.add(n)
    accuracies = [(n, m.start(), value) for n, line in enumerate(lines) if n not in labelled
                  for m in _LOG_ACC.finditer(line) if (value := _value_from(m)) is not None]
    validation = [(n, m.start(), value) for n, line in enumerate(lines)
                  for m in _VAL_ACC.finditer(line) if (value := _value_from(m)) is not None]
    if validation:
        n, column, value = validation[-1]
        found.append((n, column, claim("val_accuracy", n, value)))
    training = accuracies
    if accuracies and _evaluates_test(_parse(source)[0]):
        start = _after_training(lines)
        evaluated = [a for a in accuracies if a[0] >= start]  # the evaluate() progress output
        training = [a for a in accuracies if a[0] < start]
        if evaluated and not labelled:
            n, column, value = evaluated[-1]
            found.append((n, column, claim("test_accuracy", n, value)))
    if training:
        n, column, value = training[-1]
        found.append((n, column, claim("accuracy", n, value)))
    return [c for _, _, c in sorted(found, key=lambda item: (item[0], item[1]))]


def claims_from_cells(cells: Sequence[tuple[int, str, str]],
                      origin: Literal["submitted", "executed"]) -> tuple[Claim, ...]:
    """Scores printed in cells' outputs, as claims. Each cell is (index, source, outputs text as
    `outputs_text` gives it). Per cell: every labelled test accuracy (``Test accuracy: 0.91``);
    else the last accuracy that ``model.evaluate(x_test, ...)`` printed; the last ``val_accuracy``
    and the last other ``accuracy`` of a training log. At most MAX_CLAIMS, the last ones."""
    claims: list[Claim] = []
    for index, source, outputs in cells:
        claims += _cell_claims(index, source, outputs, origin)
    return tuple(claims[-MAX_CLAIMS:])


# ------------------------------------------------------------------------------------------------
# Training histories


@dataclass(frozen=True)
class _Progress:
    """A Keras progress line: ``1875/1875 ━━━━ 5s 2ms/step - accuracy: 0.81 - loss: 0.52`` (Keras 3),
    ``1875/1875 [=====] - 6s 3ms/step - loss: 0.5 - accuracy: 0.82`` (tf.keras), ``469/469 - 5s -
    10ms/step - loss: ...`` (verbose=2), `` - 5s - loss: ...`` (old Keras, verbose=2)."""

    total: int | None  # steps in the epoch; None where not printed or "Unknown"
    done: bool  # all steps done and no ETA: the line Keras prints when the epoch ends
    metrics: dict[str, float]  # in printed order


@dataclass
class _Epoch:
    """The progress lines under one "Epoch N/M" header: the epoch's final line is kept, not lines of a
    later ``evaluate()`` or callback messages."""

    line: _Progress | None = None

    def feed(self, progress: _Progress) -> None:
        kept = self.line
        if kept is None:
            self.line = progress
            return
        if kept.total is not None and progress.total is not None and kept.total != progress.total:
            return  # another progress bar: evaluate(x_test) after the last epoch
        if not kept.done or progress.done and progress.metrics.keys() > kept.metrics.keys():
            # a later step of the epoch; or its final line redrawn with the val_ metrics, after a
            # callback's message broke the line (an evaluate() on the same steps has no more metrics)
            self.line = progress


def _progress_line(line: str) -> _Progress | None:
    """The metrics of a Keras progress line (stripped), or None when it is not one."""
    start = _PROGRESS_START.match(line)
    if start is None:
        return None
    metrics: dict[str, float] = {}
    eta = False
    for part in line[:_HISTORY_LINE_CHARS].split(" - ", _HISTORY_FIELDS):
        part = part.strip()
        if part.startswith("ETA"):
            eta = True
        elif len(metrics) < MAX_HISTORY_METRICS and (field := _METRIC_FIELD.fullmatch(part)) is not None:
            metrics.setdefault(field["name"], float(field["value"]))
    if not metrics:
        return None
    steps, total = start["steps"], start["total"]
    if steps is None:  # " - 5s - loss: ...": printed once, at the epoch's end
        return _Progress(total=None, done=not eta, metrics=metrics)
    if total == "Unknown" or int(total) == 0:
        return _Progress(total=None, done=False, metrics=metrics)
    return _Progress(total=int(total), done=int(steps) >= int(total) and not eta, metrics=metrics)


def _finished(epochs: list[_Progress]) -> list[_Progress]:
    """A run's epochs without its last ones when they never ended (interrupted mid-epoch)."""
    end = len(epochs)
    while end and not epochs[end - 1].done:
        end -= 1
    return epochs[:end]


def _fit_runs(text: str) -> Iterator[list[_Progress]]:
    """Each training run a cleaned output text shows, as the final progress line of each epoch. A run is
    a sequence of headers "Epoch 1/M", "Epoch 2/M", ...; a header that does not continue it (another
    M, or "Epoch 1/" again: a second fit() in the cell) begins a new one."""
    run: list[_Progress] = []
    run_total = last_number = 0
    epoch: _Epoch | None = None
    for line in text.split("\n"):
        line = line.strip()
        header = _FIT_HEADER.fullmatch(line) if line.startswith("Epoch") else None
        if header is None:
            if epoch is not None and (progress := _progress_line(line)) is not None:
                epoch.feed(progress)
            continue
        number, total = int(header[1]), int(header[2])
        if not 1 <= number <= total:
            continue
        if epoch is not None and epoch.line is None:  # an epoch that printed nothing ends its run
            yield _finished(run)
            run = []
        elif epoch is not None and epoch.line is not None and len(run) < MAX_HISTORY_EPOCHS:
            run.append(epoch.line)
        if run and (total != run_total or number != last_number + 1):
            yield _finished(run)
            run = []
        run_total, last_number, epoch = total, number, _Epoch()
    if epoch is not None and epoch.line is not None and len(run) < MAX_HISTORY_EPOCHS:
        run.append(epoch.line)
    yield _finished(run)


def _series(text: str) -> Iterator[dict[str, tuple[float, ...]]]:
    """Per training run an output text shows: each metric printed in all its epochs, one value an epoch."""
    if not isinstance(text, str) or "Epoch" not in text:
        return
    for run in _fit_runs(_clean_text(text[-_RAW_OUTPUT_CHARS:])):
        if run:
            names = [name for name in run[0].metrics if all(name in epoch.metrics for epoch in run)]
            if names:
                yield {name: tuple(epoch.metrics[name] for epoch in run) for name in names}


def histories_from_text(text: str, cell: int = 0,
                        origin: Literal["submitted", "executed"] = "submitted") -> tuple[History, ...]:
    """The training histories one cell's output text shows (raw, or cleaned as `outputs_text` gives
    it): one History per ``fit()``, with one value per finished epoch for each metric Keras printed in
    every epoch (``loss``, ``accuracy``, ``val_loss``, ``learning_rate``, ...), read from the epoch's final
    progress line. Keras 3 and tf.keras, verbose 1 (progress bars redrawn with ``\\r`` and backspaces)
    and 2. An epoch interrupted before its end is left out. At most MAX_HISTORIES (the last ones),
    MAX_HISTORY_EPOCHS epochs each (the first ones) and MAX_HISTORY_METRICS metrics (the first printed)."""
    return histories_from_cells([(cell, text)], origin)


def histories_from_cells(cells: Sequence[tuple[int, str]],
                         origin: Literal["submitted", "executed"]) -> tuple[History, ...]:
    """Training histories printed in cells' outputs, in notebook order; each cell is (index, output text)
    as `histories_from_text` reads it. At most MAX_HISTORIES per notebook: the last ones, since the final
    training matters most."""
    kept: deque[tuple[int, dict[str, tuple[float, ...]]]] = deque(maxlen=MAX_HISTORIES)
    for index, text in cells:
        kept.extend((index, series) for series in _series(text))
    return tuple(History(cell=index, epochs=len(next(iter(series.values()))), metrics=series, origin=origin)
                 for index, series in kept)


# ------------------------------------------------------------------------------------------------
# Code


def _is_help(stripped: str) -> bool:
    """IPython help syntax (``model.fit?``, ``??obj``, ``np.*load*?``): never valid Python, since it
    has neither spaces nor a comment and starts or ends with a question mark."""
    if not stripped.startswith("?") and not stripped.endswith("?"):
        return False
    core = stripped.strip("?")
    return bool(core) and "#" not in core and not any(char.isspace() for char in core)


def _clean(source: str) -> str:
    """The cell with IPython-only syntax blanked, line numbers unchanged: shell escapes (``!pip``),
    line magics (``%matplotlib``) and help (``obj?``) become ``pass``; a ``%%capture`` / ``%%time``
    cell keeps its Python body, and any other cell magic (``%%bash``, ``%%writefile``) is blanked whole."""
    lines = source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    first = next((n for n, line in enumerate(lines) if line.strip()), None)
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].strip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in _PYTHON_CELL_MAGICS:
            return "\n" * (len(lines) - 1)
        lines[first] = ""
    cleaned = []
    for line in lines:
        stripped = line.strip()
        blank = stripped.startswith(("!", "%")) or _is_help(stripped)
        cleaned.append(line[: len(line) - len(line.lstrip())] + "pass" if blank else line)
    return "\n".join(cleaned)


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant):
        return None if node.value is None else str(node.value)
    return "<expr>"


def _call_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _int_literal(node: ast.expr | None) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    return None


def _walk(node: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node under `node` in source order, with whether it sits inside a for/while loop.
    Iterative, so deeply nested student code cannot exhaust the stack."""
    stack: list[tuple[ast.AST, bool]] = [(node, False)]
    while stack:
        current, in_loop = stack.pop()
        yield current, in_loop
        inner = in_loop or isinstance(current, _LOOPS)
        stack.extend((child, inner) for child in reversed(list(ast.iter_child_nodes(current))))


def _is_flow(node: ast.expr | None) -> bool:
    """A generator call such as ``datagen.flow(x, y)`` / ``flow_from_directory(...)``."""
    return isinstance(node, ast.Call) and (_call_name(node.func) or "").startswith("flow")


def _tf_image_augmentation(func: ast.expr) -> str | None:
    """``tf.image.random_flip_left_right`` and friends: the function's name."""
    if not isinstance(func, ast.Attribute) or not (func.attr.startswith("random_") or func.attr == "flip_left_right"):
        return None
    base = func.value
    module = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
    return func.attr if module == "image" else None


@dataclass
class _Facts:
    """What the code cells show, gathered cell by cell in notebook order."""

    imports: set[str] = field(default_factory=set)
    app_calls: list[AppCall] = field(default_factory=list)
    layers: set[str] = field(default_factory=set)
    fit_calls: list[FitCall] = field(default_factory=list)
    trainable_sets: list[TrainableSet] = field(default_factory=list)
    augmentation: set[str] = field(default_factory=set)
    constants: dict[str, int | None] = field(default_factory=dict)  # top-level NAME = <int literal> so far
    flows: set[str] = field(default_factory=set)  # names assigned from datagen.flow(...)

    def scan(self, tree: ast.Module, cell: int) -> None:
        for statement in tree.body:  # statement by statement, so `epochs=EPOCHS` sees only earlier assignments
            for node, in_loop in _walk(statement):
                if isinstance(node, ast.Import):
                    self.imports.update(alias.name for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    self.imports.add(node.module)
                elif isinstance(node, ast.Call):
                    self._call(node, cell)
                elif isinstance(node, ast.Assign):
                    self._assign(node, cell, in_loop)
            self._remember_constants(statement)

    def _call(self, node: ast.Call, cell: int) -> None:
        name = _call_name(node.func)
        if name in APPLICATION_NAMES:
            weights: str | None = "imagenet"  # the Keras default when `weights=` is not given
            for kw in node.keywords:
                if kw.arg == "weights":
                    weights = _literal(kw.value)
            self.app_calls.append(AppCall(name=name, weights=weights, line=node.lineno, cell=cell))
        if name in LAYER_NAMES:
            self.layers.add(name)
        if name in AUGMENTATION_NAMES:
            self.augmentation.add(name)
        if (image_op := _tf_image_augmentation(node.func)) is not None:
            self.augmentation.add(image_op)
        if isinstance(node.func, ast.Attribute) and name in _FIT_NAMES:
            self.fit_calls.append(self._fit(node, cell))

    def _fit(self, node: ast.Call, cell: int) -> FitCall:
        keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        epochs_node = keywords.get("epochs")
        epochs = _int_literal(epochs_node)
        if isinstance(epochs_node, ast.Name):
            epochs = self.constants.get(epochs_node.id)
        validation: Literal["test", "other"] | None = None
        if "validation_data" in keywords:
            data = keywords["validation_data"]
            first = data.elts[0] if isinstance(data, (ast.Tuple, ast.List)) and data.elts else data
            validation = "test" if _mentions_test(first) else "other"
        x = _argument(node, 0, "x")
        augmented = _is_flow(x) or isinstance(x, ast.Name) and x.id in self.flows
        return FitCall(cell=cell, line=node.lineno, epochs=epochs, validation=validation,
                       validation_split="validation_split" in keywords, augmentation=augmented)

    def _assign(self, node: ast.Assign, cell: int, in_loop: bool) -> None:
        for target in node.targets:
            if isinstance(target, ast.Attribute) and target.attr == "trainable":
                value = node.value.value if isinstance(node.value, ast.Constant) and isinstance(node.value.value, bool) \
                    else None
                self.trainable_sets.append(TrainableSet(target=ast.unparse(target.value), value=value, cell=cell,
                                                        line=node.lineno, in_loop=in_loop))
            elif isinstance(target, ast.Name) and _is_flow(node.value):
                self.flows.add(target.id)

    def _remember_constants(self, statement: ast.stmt) -> None:
        """`EPOCHS = 10` at the top level of a cell; any other assignment to the name forgets it."""
        pairs: list[tuple[ast.expr, ast.expr | None]] = []
        if isinstance(statement, ast.Assign):
            for target in statement.targets:
                value = statement.value
                if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                        and len(target.elts) == len(value.elts):
                    pairs += zip(target.elts, value.elts)
                elif isinstance(target, (ast.Tuple, ast.List)):
                    pairs += [(element, None) for element in target.elts]
                else:
                    pairs.append((target, value))
        elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
            pairs.append((statement.target, statement.value if isinstance(statement, ast.AnnAssign) else None))
        for target, value in pairs:
            if isinstance(target, ast.Name):
                self.constants[target.id] = _int_literal(value)


# ------------------------------------------------------------------------------------------------
# The notebook


def read_notebook(path: Path, label: str) -> NotebookEvidence:
    """Cells, code facts, printed claims and training histories of one notebook, read without running it; a file that
    is too large or not a notebook becomes evidence with an error."""
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            return NotebookEvidence(path=label, error=f"the notebook is larger than {MAX_NOTEBOOK_BYTES // 1024**2} MB")
        data = json.loads(path.read_text(encoding="utf-8"))
        cells = data["cells"] if isinstance(data, dict) else None
        if not isinstance(cells, list):
            raise ValueError("no 'cells' list")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError) as exc:
        return NotebookEvidence(path=label, error=f"not a readable notebook (invalid JSON after a hand edit?): {exc}")
    facts = _Facts()
    content: list[NotebookCell] = []
    printed: list[tuple[int, str, str]] = []
    logs: list[tuple[int, str]] = []  # (cell, whole output text): training logs outgrow MAX_OUTPUT_CHARS
    syntax_errors: list[str] = []
    code_cells = 0
    budget = MAX_CONTENT_CHARS
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            content.append(NotebookCell(index=index, cell_type="raw", source=""))
            continue
        cell_type = _CELL_TYPES.get(str(cell.get("cell_type")), "raw")
        source = _text(cell.get("source"))
        outputs = ""
        count = cell.get("execution_count")
        if cell_type == "code":
            code_cells += 1
            whole = outputs_text(cell.get("outputs"), limit=None)
            outputs = _keep_end(whole, MAX_OUTPUT_CHARS)
            printed.append((index, source, outputs))
            logs.append((index, whole))
            tree, error = _parse(source)
            if tree is None:
                syntax_errors.append(f"cell {index}: {error}")
            else:
                facts.scan(tree, index)
        shown = _keep_start(_ANSI.sub("", source), MAX_SOURCE_CHARS)
        if len(shown) + len(outputs) > budget:
            budget = 0  # from here on, cells keep their place without their text
            shown, outputs = "", ""
        budget -= len(shown) + len(outputs)
        content.append(NotebookCell(
            index=index, cell_type=cell_type, source=shown, outputs=outputs,
            execution_count=count if cell_type == "code" and isinstance(count, int) and not isinstance(count, bool) else None,
        ))
    return NotebookEvidence(
        path=label, cells=len(cells), code_cells=code_cells, imports=tuple(sorted(facts.imports)),
        app_calls=tuple(facts.app_calls), layer_calls=tuple(sorted(facts.layers)), fit_calls=tuple(facts.fit_calls),
        trainable_sets=tuple(facts.trainable_sets), augmentation=tuple(sorted(facts.augmentation)),
        claims=claims_from_cells(printed, "submitted"), content=tuple(content), syntax_errors=tuple(syntax_errors),
        histories=histories_from_cells(logs, "submitted"),
    )


def matches_globs(path: str, globs: tuple[str, ...] | list[str]) -> bool:
    """Whether a notebook's path ("part1/hw10.ipynb", "work.zip!hw10.ipynb") or its file name matches
    one of the globs, case-insensitively: how the rubric's `notebooks.select` and a check's `select` pick."""
    name = path.rsplit("/", 1)[-1].rsplit("!", 1)[-1].lower()
    return any(fnmatch.fnmatch(path.lower(), g.lower()) or fnmatch.fnmatch(name, g.lower()) for g in globs)

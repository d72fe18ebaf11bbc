"""Evidence: the plain facts gathered about one submission, before any judgement.

Everything here is produced by gathering (`discover`, `inspect`, `evaluate`, `notebooks`,
`kaggle`) and read by the pure checks in `grader.judging.checks`. Records are frozen pydantic models so that
they cross process boundaries as JSON (never pickle) and can be cached on disk.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np

from pydantic import AfterValidator, ConfigDict, Field

from grader.records.frozen import Frozen
from grader.records.competition import SubmissionRecord
from grader.records.tflite import TFLiteInfo

# grader_fault: the grader or the machine failed (not the student): not graded, never cached, `grade` exits 1
# Text that a submission's own process reports (a worker runs the student's code in its process): what
# it may look like when it is shown. Escape sequences and control characters (bidi overrides, zero-width
# characters, C0/C1 controls) are removed; newlines and tabs too where the text is one line.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|.)")
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]")


def clean_text(value: str, limit: int, *, lines: bool = False) -> str:
    """`value` as the grader shows it: escape sequences and control characters removed (newlines and
    tabs kept only with `lines`), at most `limit` characters ("…" marks a cut)."""
    text = _CONTROLS.sub("", _ESCAPES.sub("", value))
    if not lines:
        text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(limit: int) -> AfterValidator:
    return AfterValidator(lambda v: v if v is None else clean_text(v, limit))


MAX_REPORTED_SECONDS = 7 * 86400.0  # no evaluation of one model is allowed to run a week
MAX_BATCH = 1 << 16
MAX_PEAK_BYTES = 1 << 50  # a petabyte

EvidenceStatus = Literal["gathered", "failed", "timeout", "limit", "grader_fault"]
ModelStatus = Literal["evaluated", "inspected", "needs_sandbox", "error"]
FileKind = Literal["model", "notebook", "csv", "archive", "other"]


class LayerInfo(Frozen):
    """One layer of a model, read statically from the saved config.

    `path` is the chain of container names from the top model down to this layer, so a layer of a
    nested VGG16 base reads ``("vgg16", "block1_conv1")``. `trainable` says whether the layer
    trains under the rules of the Keras that wrote the file: Keras 2 freezes every layer of a
    frozen container; Keras 3 lets a layer unfrozen after ``base.trainable = False`` train again.
    This keeps trainable counts equal to Keras' own for both.
    """

    path: tuple[str, ...]
    class_name: str
    trainable: bool
    params: int | None = None
    summary: str = ""
    is_container: bool = False
    has_code: bool = False

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def depth(self) -> int:
        return len(self.path) - 1


class BaseMatch(Frozen):
    """A known application network (VGG16, ResNet50, ...) found in a model by its structure."""

    name: str  # registry key, e.g. "vgg16"
    display: str  # e.g. "VGG16"
    nested: bool  # True when the base is a nested model layer, False when its layers are inlined
    container: str | None = None  # name of the nested model layer, when nested
    layers: tuple[str, ...] = ()  # '/'-joined paths of the base's weighted layers, in order
    trainable_layers: int = 0  # weighted base layers that are trainable
    frozen_layers: int = 0  # weighted base layers that are frozen
    params: int | None = None


class Architecture(Frozen):
    """What the saved config says about a model. Read without running any student code."""

    format: Literal["h5", "keras", "tflite"]
    keras_version: str | None = None
    model_class: str = "Model"
    input_shape: tuple[int | None, ...] | None = None
    output_units: int | None = None
    output_activation: str | None = None
    layers: tuple[LayerInfo, ...] = ()
    total_params: int | None = None
    trainable_params: int | None = None
    bases: tuple[BaseMatch, ...] = ()
    code_layers: tuple[str, ...] = ()  # '/'-joined paths of Lambda / custom-object layers

    @property
    def layer_classes(self) -> set[str]:
        return {layer.class_name for layer in self.layers if not layer.is_container}


class Pretrained(Frozen):
    """Whether a model starts from pretrained weights, and which evidence decided it."""

    value: bool | None  # None: the grader cannot tell
    source: Literal["reference_weights", "notebook", "base_present", "no_base"]
    evidence: str


class Preprocessing(Frozen):
    """How the grader turned 28x28 grayscale images into what the model takes.

    Chosen on a labelled sample of the PUBLIC train split (never the hidden set): every candidate is
    scored there (after screening, when there are many) and the best one is used for the hidden set.
    """

    scale: str  # key of the pixel scale, see grader.worker.adapt.SCALES
    geometry: str  # "flatten", "as-is", "channel", "resize", "pad"
    input_shape: tuple[int | None, ...]
    description: str
    candidates: dict[str, float] = Field(default_factory=dict)  # candidate key -> accuracy on the public sample
    public_sample_size: int = 0
    # When there were many candidates, all were first scored on a smaller class-balanced part of the
    # sample (see grader.worker.adapt.shortlist); only the shortlisted ones appear in `candidates`.
    screening: dict[str, float] = Field(default_factory=dict)  # candidate key -> accuracy on the screening part
    screening_sample_size: int = 0


class ClassMetrics(Frozen):
    label: int
    name: str
    precision: float
    recall: float
    f1: float
    support: int


class Metrics(Frozen):
    """Scores computed by the grader, outside any sandbox, from predictions and hidden labels."""

    accuracy: float
    n: int
    macro_f1: float
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[tuple[int, ...], ...]
    # the flowers contest's score (grader.scoring.confidence): per image the % the model gives the true class
    # when its top prediction is right, else 0; summed over the hidden set, and its mean
    confidence_sum: float | None = None
    confidence_mean: float | None = None


class PublicExample(Frozen):
    """An image of the PUBLIC train split that the model got wrong (never a hidden-test image): shown to
    the student as an example of its mistakes. `png` is a small base64 PNG made by the grader."""

    index: int  # index in the public sample the grader used to choose the preprocessing
    label: int
    predicted: int
    confidence: float  # the model's confidence in the wrong class, in [0, 1]
    png: str = ""


class EvaluationRun(Frozen):
    """Where and how the hidden set went through one model, as the evaluation process reported it
    (the sandboxed worker, grader.worker.evaluate, which runs the submission's own code in its process).

    Nothing here is believed as it comes: the types and ranges below are checked when the worker's
    answer is read (an answer outside them is refused as interference), strings are capped and
    stripped of control characters, and grader.facts.gather checks `device` against the devices the
    grader gave and replaces `device_name` with the grader's own name for that device. What is left
    (seconds, batch, peak memory, backend) is shown labelled "reported by the evaluation process"."""

    reported_by: Literal["evaluation process"] = "evaluation process"  # whose word these facts are
    device: str = Field(default="cpu", pattern=r"^(cpu|gpu:[0-9]{1,3})$")  # "cpu", "gpu:0", ... as the backend saw it
    device_name: Annotated[str | None, _line(120)] = None  # e.g. "NVIDIA H200": the grader's name for the device
    backend: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,23}$")  # tensorflow, jax, torch; tflite
    # the batch size that worked (smaller than asked when it was halved on out-of-memory)
    batch_size: int = Field(default=0, ge=0, le=MAX_BATCH)
    batch_halvings: int = Field(default=0, ge=0, le=32)  # times the batch was halved after the device ran out of memory
    # predicting the hidden set only (the model's `seconds` includes loading and screening)
    seconds: float = Field(default=0.0, ge=0.0, le=MAX_REPORTED_SECONDS, allow_inf_nan=False)
    # the device's peak (GPU) or the worker's peak resident set (CPU)
    peak_memory_bytes: int | None = Field(default=None, ge=0, le=MAX_PEAK_BYTES)


class ModelEvidence(Frozen):
    """One model file in a submission: its architecture and, when evaluated, its measured scores."""

    path: str  # relative to the submission; a zip member reads "models.zip!cnn.h5"
    produced_by: str | None = None  # the notebook whose execution wrote this file (then `path` is "nb.ipynb→cnn.h5")
    size_bytes: int
    sha256: str
    status: ModelStatus
    architecture: Architecture | None = None
    pretrained: Pretrained | None = None
    loader: str | None = None  # which loader read it, e.g. "keras 3.15.1 (safe mode, jax backend)"
    preprocessing: Preprocessing | None = None
    metrics: Metrics | None = None
    output_note: str | None = None  # e.g. "outputs are logits; softmax applied for confidences"
    error: str | None = None
    # how the process that evaluated it ended, when it did not end well: timeout, out_of_memory, killed, error
    outcome: Literal["timeout", "out_of_memory", "killed", "error", "disk_full", "too_many_tasks"] | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    # Fingerprints for finding near-identical submissions (grader.judging.similarity); teacher-only, never on a
    # student's page. `weights_fingerprint`: sha256 over the sorted per-tensor hashes of the stored
    # weights, so it does not change when layers are renamed or reordered (grader.facts.fingerprints).
    weights_fingerprint: str | None = None
    # The predicted class of every hidden-test image, in order: base64 of uint8 (encode_labels, below)
    predicted: str | None = None
    public_errors: tuple[PublicExample, ...] = ()  # a few misclassified PUBLIC images, with thumbnails
    tflite: TFLiteInfo | None = None  # a .tflite model: what its FlatBuffer says (grader.formats.tflite_file)
    run: EvaluationRun | None = None  # device, backend, batch size, time and peak memory of the evaluation

    @property
    def accuracy(self) -> float | None:
        return self.metrics.accuracy if self.metrics else None


class AppCall(Frozen):
    """A call such as ``VGG16(weights='imagenet', include_top=False)`` found in notebook code."""

    name: str
    weights: str | None  # the literal value of `weights=`, "<expr>" when it is not a literal
    line: int
    cell: int


class FitCall(Frozen):
    """A ``model.fit(...)`` call in notebook code, read from the AST (never run)."""

    cell: int
    line: int
    epochs: int | None = None  # literal `epochs=` (None: not a literal, or the Keras default of 1 not stated)
    # what `validation_data=` names: "test" when it is the test split (x_test / test_images ...), a common
    # mistake that tunes the model on the data it is graded on; "other"; None when absent
    validation: Literal["test", "other"] | None = None
    validation_split: bool = False
    augmentation: bool = False  # the data comes from a generator / augmentation pipeline


class TrainableSet(Frozen):
    """An assignment such as ``base.trainable = False`` or ``layer.trainable = True`` in a loop."""

    target: str  # the expression assigned to, as written (``base_model``, ``layer``)
    value: bool | None  # None: not a literal
    cell: int
    line: int
    in_loop: bool = False  # inside a for loop (fine-tuning the last N layers)


class Claim(Frozen):
    """A score a notebook printed, e.g. ``Test accuracy: 0.9123``. Shown beside the measured value,
    labelled as a claim; never used as a grade."""

    metric: Literal["test_accuracy", "val_accuracy", "accuracy"]
    value: float  # as a fraction in [0, 1] (a printed 91.2% reads 0.912)
    text: str  # the line it was read from, trimmed
    cell: int
    origin: Literal["submitted", "executed"] = "submitted"  # outputs as handed in, or from the grader's run


class NotebookCell(Frozen):
    """One cell as handed in: its source and the text of its saved outputs (both capped)."""

    index: int
    cell_type: Literal["code", "markdown", "raw"]
    source: str
    outputs: str = ""  # text outputs; an image reads "[image/png]"
    execution_count: int | None = None


class CellRun(Frozen):
    """One code cell as the grader executed it."""

    index: int  # index among all cells of the notebook
    status: Literal["ok", "error", "timeout"]
    seconds: float = 0.0
    outputs: str = ""  # text outputs of the grader's run, capped
    error: str | None = None  # "ValueError: ..." and the traceback's last lines


NotebookRunStatus = Literal["completed", "error", "timeout", "out_of_memory", "killed", "not_run"]


class NotebookRun(Frozen):
    """What happened when the grader executed a notebook in the sandbox. Kept up to the point where
    it stopped: a notebook that fails or hangs in cell 7 still shows cells 0-6."""

    status: NotebookRunStatus
    message: str = ""  # what happened, in a sentence for the student
    seconds: float = 0.0
    cells_run: int = 0
    failed_cell: int | None = None  # index of the cell that raised or timed out
    cells: tuple[CellRun, ...] = ()
    neutralised: tuple[str, ...] = ()  # Colab-only lines the grader did not run, and what it did instead
    artifacts: tuple[str, ...] = ()  # model files the notebook wrote (paths relative to its folder)
    claims: tuple[Claim, ...] = ()  # scores the executed notebook printed
    histories: tuple[History, ...] = ()  # training histories printed in the grader's run
    peak_memory_mb: float | None = None
    log_tail: str = ""  # the runner's last lines, when it did not end well


class History(Frozen):
    """A training history read from the text Keras prints during ``fit()`` ("Epoch 3/10 ... loss: 0.31 -
    accuracy: 0.89 - val_loss: ..."): one value per epoch for every metric printed, in epoch order.
    A diverged run prints ``nan``: kept as NaN in JSON too (pydantic would write null and refuse it back)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")

    cell: int
    epochs: int  # epochs printed (len of every series)
    metrics: dict[str, tuple[float, ...]]  # "loss", "accuracy", "val_loss", "val_accuracy", ...
    origin: Literal["submitted", "executed"] = "submitted"


class NotebookEvidence(Frozen):
    """A notebook found in a submission: read statically (AST of its code cells, its saved outputs),
    and, when the rubric asks for it, executed in the sandbox (`run`)."""

    path: str
    cells: int = 0
    code_cells: int = 0
    imports: tuple[str, ...] = ()
    app_calls: tuple[AppCall, ...] = ()
    layer_calls: tuple[str, ...] = ()  # Keras layer classes the code constructs (Conv2D, Dense, ...), sorted
    fit_calls: tuple[FitCall, ...] = ()
    trainable_sets: tuple[TrainableSet, ...] = ()
    augmentation: tuple[str, ...] = ()  # augmentation APIs used (ImageDataGenerator, RandomFlip, ...), sorted
    claims: tuple[Claim, ...] = ()  # scores printed in the outputs as handed in
    content: tuple[NotebookCell, ...] = ()
    syntax_errors: tuple[str, ...] = ()  # "cell 4: invalid syntax (line 2)": cells the AST could not read
    histories: tuple[History, ...] = ()  # training histories printed in the outputs as handed in
    # winnowed hashes of the normalised code (grader.facts.fingerprints.code_fingerprints); teacher-only
    code_fingerprints: tuple[int, ...] = ()
    run: NotebookRun | None = None
    error: str | None = None


class KaggleSubmission(Frozen):
    file_name: str
    date: str
    description: str = ""
    status: str = ""
    public_score: float | None = None
    private_score: float | None = None


class KaggleEvidence(Frozen):
    """The list a student exports with ``kaggle competitions submissions -c NAME --csv``."""

    path: str
    submissions: tuple[KaggleSubmission, ...] = ()
    error: str | None = None


class CompetitionEvidence(Frozen):
    """A student's entries in the class competition's ledger (grader.scoring.competition), as they stood when
    this run judged: every prediction file handed in, scored, refused (late, over a limit) or invalid.
    Added by the pipeline after gathering, from the ledger; not part of the cached evidence."""

    records: tuple[SubmissionRecord, ...] = ()
    files: tuple[str, ...] = ()  # the prediction files found in the submission this run
    notes: tuple[str, ...] = ()  # what happened to the student's selection file, in a sentence each


class FileInfo(Frozen):
    path: str
    size_bytes: int
    kind: FileKind


class Evidence(Frozen):
    """Everything gathered about one submission. Input of every check; cached by content hash."""

    student: str
    status: EvidenceStatus = "gathered"
    files: tuple[FileInfo, ...] = ()
    models: tuple[ModelEvidence, ...] = ()
    notebooks: tuple[NotebookEvidence, ...] = ()
    kaggle: KaggleEvidence | None = None
    competition: CompetitionEvidence | None = None
    errors: tuple[str, ...] = ()
    dataset: str = ""
    content_hash: str = ""
    grader_version: str = ""
    sandboxed: bool = False
    executor: str | None = None  # where it was gathered: "local", "ray (node 10.0.0.5)" (grader.sandbox.executors)
    seconds: float = 0.0


@dataclass(frozen=True)
class Gathered:
    """A submission's evidence before scoring: evaluated models have status "evaluated" and no
    metrics yet; `outputs` holds their raw hidden-set outputs, by model path (float32, n × classes)."""

    evidence: Evidence
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def encode_labels(labels: np.ndarray) -> str:
    """A 1-D array of class indices in [0, 255] as base64 of uint8 (for `ModelEvidence.predicted`)."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"labels must be a 1-D array of class indices; got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "biu":
        raise ValueError(f"labels must be integer class indices; got dtype {arr.dtype}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError(f"labels must lie in [0, 255]; got values in [{arr.min()}, {arr.max()}]")
    return base64.b64encode(arr.astype(np.uint8).tobytes()).decode("ascii")


def decode_labels(text: str) -> np.ndarray:
    """The uint8 array that `encode_labels` wrote; ValueError for anything that is not its output."""
    if not isinstance(text, str):
        raise ValueError(f"encoded labels must be text; got {type(text).__name__}")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"encoded labels are not valid base64 ({exc})") from None
    return np.frombuffer(raw, dtype=np.uint8).copy()

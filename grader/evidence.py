"""Evidence: the plain facts gathered about one submission, before any judgement.

Everything here is produced by gathering (`discover`, `inspect`, `evaluate`, `notebooks`,
`kaggle`) and read by the pure checks in `grader.checks`. Records are frozen pydantic models so that
they cross process boundaries as JSON (never pickle) and can be cached on disk.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from grader._frozen import Frozen

EvidenceStatus = Literal["gathered", "failed", "timeout", "limit"]
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

    format: Literal["h5", "keras"]
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

    scale: str  # key of the pixel scale, see grader.adapt.SCALES
    geometry: str  # "flatten", "as-is", "channel", "resize", "pad"
    input_shape: tuple[int | None, ...]
    description: str
    candidates: dict[str, float] = Field(default_factory=dict)  # candidate key -> accuracy on the public sample
    public_sample_size: int = 0
    # When there were many candidates, all were first scored on a smaller class-balanced part of the
    # sample (see grader.adapt.shortlist); only the shortlisted ones appear in `candidates`.
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


class ModelEvidence(Frozen):
    """One model file in a submission: its architecture and, when evaluated, its measured scores."""

    path: str  # relative to the submission; a zip member reads "models.zip!cnn.h5"
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
    outcome: Literal["timeout", "out_of_memory", "killed", "error"] | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def accuracy(self) -> float | None:
        return self.metrics.accuracy if self.metrics else None


class AppCall(Frozen):
    """A call such as ``VGG16(weights='imagenet', include_top=False)`` found in notebook code."""

    name: str
    weights: str | None  # the literal value of `weights=`, "<expr>" when it is not a literal
    line: int
    cell: int


class NotebookEvidence(Frozen):
    """A notebook found in a submission, read statically (it is not executed here)."""

    path: str
    cells: int = 0
    code_cells: int = 0
    imports: tuple[str, ...] = ()
    app_calls: tuple[AppCall, ...] = ()
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
    errors: tuple[str, ...] = ()
    dataset: str = ""
    content_hash: str = ""
    grader_version: str = ""
    sandboxed: bool = False
    seconds: float = 0.0

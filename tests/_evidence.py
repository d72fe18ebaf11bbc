"""Hand-made evidence for testing checks and reports without any model file."""

from __future__ import annotations

import hashlib
import itertools

from grader.records.evidence import (
    Architecture,
    BaseMatch,
    ClassMetrics,
    Evidence,
    FileInfo,
    KaggleEvidence,
    KaggleSubmission,
    LayerInfo,
    Metrics,
    ModelEvidence,
    Pretrained,
)

_FILES = itertools.count()  # every hand-made model is a different file, unless a test says otherwise
NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def metrics(accuracy: float, weak: int = 6) -> Metrics:
    per_class = tuple(
        ClassMetrics(label=i, name=NAMES[i], precision=accuracy, recall=(accuracy - 0.2 if i == weak else accuracy),
                     f1=accuracy, support=1000)
        for i in range(10)
    )
    confusion = tuple(tuple(int(1000 * accuracy) if i == j else 0 for j in range(10)) for i in range(10))
    return Metrics(accuracy=accuracy, n=10000, macro_f1=accuracy, per_class=per_class, confusion=confusion)


def layers(*classes: str) -> tuple[LayerInfo, ...]:
    return tuple(LayerInfo(path=(f"{c.lower()}_{i}",), class_name=c, trainable=True, params=10) for i, c in enumerate(classes))


def arch(*classes: str, bases: tuple[BaseMatch, ...] = (), params: int = 1000, trainable: int | None = None) -> Architecture:
    return Architecture(format="h5", keras_version="3.15.1", model_class="Sequential", input_shape=(None, 28, 28, 1),
                        output_units=10, output_activation="softmax", layers=layers(*classes), total_params=params,
                        trainable_params=params if trainable is None else trainable, bases=bases)


def vgg16(trainable: int = 0, frozen: int = 13, nested: bool = True) -> BaseMatch:
    return BaseMatch(name="vgg16", display="VGG16", nested=nested, container="vgg16" if nested else None,
                     layers=tuple(f"vgg16/block{i}_conv1" for i in range(13)), trainable_layers=trainable,
                     frozen_layers=frozen, params=14_714_688)


def model(path: str, a: Architecture | None, accuracy: float | None = None, status: str | None = None,
          pretrained: bool | None = None, error: str | None = None) -> ModelEvidence:
    if pretrained is None:
        pre = Pretrained(value=bool(a and a.bases), source="base_present" if a and a.bases else "no_base", evidence="test")
    else:
        pre = Pretrained(value=pretrained, source="notebook", evidence="test")
    return ModelEvidence(
        path=path, size_bytes=1234, sha256=hashlib.sha256(f"{path}-{next(_FILES)}".encode()).hexdigest(),  # each its own file
        status=status or ("evaluated" if accuracy is not None else ("inspected" if a else "error")),
        architecture=a, pretrained=pre if a else None, metrics=metrics(accuracy) if accuracy is not None else None,
        error=error,
    )


CNN = ("InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense")
MLP = ("InputLayer", "Flatten", "Dense", "Dense")


def evidence(*models: ModelEvidence, files: tuple[str, ...] = (), kaggle: int | None = None, student: str = "alice") -> Evidence:
    k = None
    if kaggle is not None:
        k = KaggleEvidence(path="kaggle_submissions.csv", submissions=tuple(
            KaggleSubmission(file_name=f"sub{i}.csv", date=f"2026-03-0{i + 1}", public_score=0.8) for i in range(kaggle)))
    infos = tuple(FileInfo(path=m.path, size_bytes=1, kind="model") for m in models) + tuple(
        FileInfo(path=f, size_bytes=1, kind="notebook" if f.endswith(".ipynb") else "other") for f in files)
    return Evidence(student=student, models=tuple(models), files=infos, kaggle=k, dataset="fashion-mnist")

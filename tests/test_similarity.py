"""grader.facts.fingerprints (real Keras files, real notebook code) and grader.judging.similarity (hand-made evidence)."""

from __future__ import annotations

import hashlib
import random
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from grader.records.evidence import Evidence, ModelEvidence, NotebookEvidence
from grader.facts.fingerprints import code_fingerprints, weights_fingerprint
from grader.records.evidence import decode_labels, encode_labels
from grader.records.results import SimilarityFlag
from grader.judging.similarity import SimilarityRules, find_similar, flags_for
from tests._evidence import metrics
from tests._models import k2, k3, rewrite_keras_zip, save

# ---------------------------------------------------------------------------------------------
# Real model files


def _cnn(prefix: str = "", weights: list[np.ndarray] | None = None) -> Any:
    """A tiny CNN whose layer names all start with `prefix` (so a rebuild can rename every layer)."""
    keras = k3()
    L = keras.layers
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        L.Conv2D(4, 3, activation="relu", name=f"{prefix}conv"),
        L.BatchNormalization(name=f"{prefix}bn"),
        L.Flatten(name=f"{prefix}flat"),
        L.Dropout(0.1, name=f"{prefix}drop"),
        L.Dense(10, activation="softmax", name=f"{prefix}out"),
    ], name=f"{prefix}model")
    if weights is not None:
        model.set_weights(weights)
    return model


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cnn() -> Any:
    return _cnn()


@pytest.mark.parametrize("ext", ["h5", "keras"])
def test_same_model_saved_twice_same_fingerprint(cnn: Any, tmp_path: Path, ext: str) -> None:
    first = save(cnn, tmp_path / f"a.{ext}")
    second = save(cnn, tmp_path / f"b.{ext}")
    fp = weights_fingerprint(first)
    assert fp is not None and len(fp) == 64
    assert weights_fingerprint(second) == fp


def test_fingerprint_is_the_same_in_every_format(cnn: Any, tmp_path: Path) -> None:
    """Legacy .h5, .keras, a re-zipped (compressed) .keras and save_weights hold the same tensors."""
    h5 = save(cnn, tmp_path / "m.h5")
    keras_file = save(cnn, tmp_path / "m.keras")
    compressed = rewrite_keras_zip(keras_file, tmp_path / "zipped.keras", compress=True)
    with zipfile.ZipFile(compressed) as zf:
        assert zf.getinfo("model.weights.h5").compress_type == zipfile.ZIP_DEFLATED
    cnn.save_weights(tmp_path / "m.weights.h5")
    fps = {weights_fingerprint(p) for p in (h5, keras_file, compressed, tmp_path / "m.weights.h5")}
    assert len(fps) == 1 and None not in fps


def test_renamed_layers_same_weights_other_file(cnn: Any, tmp_path: Path) -> None:
    renamed = _cnn("student_", weights=cnn.get_weights())
    for ext in ("h5", "keras"):
        a = save(cnn, tmp_path / f"a.{ext}")
        b = save(renamed, tmp_path / f"b.{ext}")
        assert _sha(a) != _sha(b)
        assert weights_fingerprint(a) == weights_fingerprint(b)


def test_one_changed_weight_changes_fingerprint(cnn: Any, tmp_path: Path) -> None:
    weights = [w.copy() for w in cnn.get_weights()]
    weights[-2][3, 7] += 1e-3  # one value of the last kernel
    changed = _cnn(weights=weights)
    for ext in ("h5", "keras"):
        assert weights_fingerprint(save(cnn, tmp_path / f"a.{ext}")) != weights_fingerprint(
            save(changed, tmp_path / f"b.{ext}"))


def test_optimizer_state_is_not_part_of_the_fingerprint(cnn: Any, tmp_path: Path) -> None:
    plain = weights_fingerprint(save(cnn, tmp_path / "plain.keras"))
    copy = _cnn(weights=cnn.get_weights())
    copy.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    copy.optimizer.build(copy.trainable_variables)
    for ext in ("keras", "h5"):
        path = save(copy, tmp_path / f"compiled.{ext}")
        with (zipfile.ZipFile(path).open("model.weights.h5") if ext == "keras" else open(path, "rb")) as fh, \
                h5py.File(fh, "r") as f:
            assert "optimizer" in f or "optimizer_weights" in f
        assert weights_fingerprint(path) == plain


def test_keras2_files(tmp_path: Path) -> None:
    keras = k2()
    L = keras.layers
    model = keras.Sequential([L.Dense(6, activation="relu", input_shape=(5,), name="hidden"), L.Dense(3, name="top")])
    other = keras.Sequential([L.Dense(6, activation="relu", input_shape=(5,), name="h"), L.Dense(3, name="t")])
    other.set_weights(model.get_weights())
    a, b = save(model, tmp_path / "a.h5"), save(other, tmp_path / "b.h5")
    model.save_weights(tmp_path / "w.h5")
    assert _sha(a) != _sha(b)
    assert weights_fingerprint(a) == weights_fingerprint(b) == weights_fingerprint(tmp_path / "w.h5") is not None


def test_bad_files_give_none(cnn: Any, tmp_path: Path) -> None:
    good = save(cnn, tmp_path / "good.keras")
    h5 = save(cnn, tmp_path / "good.h5")
    cases = {
        "random.h5": bytes(random.Random(1).randrange(256) for _ in range(4096)),
        "empty.keras": b"",
        "truncated.h5": h5.read_bytes()[: h5.stat().st_size // 2],
        "truncated.keras": good.read_bytes()[: good.stat().st_size // 2],
        "text.keras": b"PK\x03\x04 not really a zip",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert weights_fingerprint(tmp_path / name) is None, name
    no_weights = tmp_path / "no_weights.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(no_weights, "w") as dst:
        dst.writestr("config.json", src.read("config.json"))
    assert weights_fingerprint(no_weights) is None
    with h5py.File(tmp_path / "strings.h5", "w") as f:
        f["names"] = np.array([b"a", b"b"], dtype=object)
    assert weights_fingerprint(tmp_path / "strings.h5") is None  # no numeric tensor
    assert weights_fingerprint(tmp_path / "missing.h5") is None
    assert weights_fingerprint(tmp_path) is None


def test_links_are_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.h5"
    with h5py.File(target, "w") as f:
        f["secret"] = np.arange(100, dtype=np.float32)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["layer/kernel"] = np.ones((3, 3), dtype=np.float32)
    with h5py.File(tmp_path / "linked.h5", "w") as f:
        f["layer/kernel"] = np.ones((3, 3), dtype=np.float32)
        f["outside"] = h5py.ExternalLink(str(target), "/")
        f["again"] = h5py.SoftLink("/layer/kernel")
        f["layer/loop"] = f["layer"]  # a hard link back up: walked once
        raw = tmp_path / "raw.bin"
        raw.write_bytes(np.arange(100, dtype=np.float32).tobytes())
        f.create_dataset("stored_elsewhere", shape=(100,), dtype="<f4", external=[(str(raw), 0, 400)])
    with h5py.File(tmp_path / "only_link.h5", "w") as f:
        f["outside"] = h5py.ExternalLink(str(target), "/secret")
    plain = weights_fingerprint(tmp_path / "plain.h5")
    assert plain is not None
    assert weights_fingerprint(tmp_path / "linked.h5") == plain
    assert weights_fingerprint(tmp_path / "only_link.h5") is None


def test_tensor_order_and_names_do_not_matter_values_do(tmp_path: Path) -> None:
    a, b = np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros(5, dtype=np.float32)
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f["x/k"], f["y/b"] = a, b
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["zz/deep/b"], f["aa/k"] = b, a
    with h5py.File(tmp_path / "reshaped.h5", "w") as f:
        f["x/k"], f["y/b"] = a.reshape(4, 3), b
    with h5py.File(tmp_path / "big_endian.h5", "w") as f:
        f["x/k"], f["y/b"] = a.astype(">f4"), b
    fp = weights_fingerprint(tmp_path / "one.h5")
    assert weights_fingerprint(tmp_path / "two.h5") == fp
    assert weights_fingerprint(tmp_path / "big_endian.h5") == fp  # same values, same dtype
    assert weights_fingerprint(tmp_path / "reshaped.h5") != fp  # the shape is part of a tensor


# ---------------------------------------------------------------------------------------------
# Labels


def test_labels_round_trip_and_garbage() -> None:
    labels = np.array([0, 9, 3, 3, 255], dtype=np.int64)
    text = encode_labels(labels)
    assert isinstance(text, str)
    out = decode_labels(text)
    assert out.dtype == np.uint8 and out.tolist() == labels.tolist()
    for garbage in ("not base64!", "abc", "äöü", "AAAA\nAAAA"):
        with pytest.raises(ValueError):
            decode_labels(garbage)
    for bad in (np.array([1.5]), np.array([-1]), np.array([256]), np.zeros((2, 2), dtype=int)):
        with pytest.raises(ValueError):
            encode_labels(bad)


# ---------------------------------------------------------------------------------------------
# Code fingerprints

STARTER = '''
import numpy as np
import matplotlib.pyplot as plt
from tensorflow import keras
(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
x_train = x_train.astype("float32") / 255.0
x_test = x_test.astype("float32") / 255.0
class_names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
'''

ORIGINAL = [
    "!pip install -q tensorflow\n%matplotlib inline\n" + STARTER,
    '''
def build_model(filters=32, dropout=0.3):
    model = keras.Sequential([
        keras.layers.Input((28, 28, 1)),
        keras.layers.Conv2D(filters, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(filters * 2, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model
''',
    '''
net = build_model(48)
history = net.fit(x_train[..., None], y_train, epochs=12, batch_size=64, validation_split=0.1)
for key in ["accuracy", "val_accuracy"]:
    plt.plot(history.history[key], label=key)
plt.legend()
plt.show()
''',
    '''
loss, acc = net.evaluate(x_test[..., None], y_test)
print(f"Test accuracy: {acc:.4f}")
preds = np.argmax(net.predict(x_test[..., None]), axis=1)
wrong = np.nonzero(preds != y_test)[0]
for i, idx in enumerate(wrong[:9]):
    plt.subplot(3, 3, i + 1)
    plt.imshow(x_test[idx], cmap="gray")
    plt.title(class_names[preds[idx]])
net.save("cnn.keras")
''',
]

# The same code with every variable and parameter renamed, comments added, spacing and line breaks changed.
DISGUISED = [
    STARTER,
    '''
# my own model!!
def make_net(n_filt = 32, drop_rate = 0.3):
    m = keras.Sequential([keras.layers.Input((28, 28, 1)), keras.layers.Conv2D(n_filt, 3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(), keras.layers.Conv2D(n_filt*2, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dropout(drop_rate),


        keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax"),])
    m.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])  # compile
    return m
''',
    '''
classifier = make_net(48)
h = classifier.fit(x_train[..., None], y_train, epochs=12, batch_size=64, validation_split=0.1)
for k in ['accuracy', 'val_accuracy']:
        plt.plot(h.history[k], label=k)
plt.legend()
plt.show()
''',
    '''
l, a = classifier.evaluate(x_test[..., None], y_test)
print(f"my accuracy is {a}")
p = np.argmax(classifier.predict(x_test[..., None]), axis=1)
bad = np.nonzero(p != y_test)[0]
for j, ix in enumerate(bad[:9]):
    plt.subplot(3, 3, j + 1)
    plt.imshow(x_test[ix], cmap="gray")
    plt.title(class_names[p[ix]])
classifier.save("cnn.keras")
''',
]

UNRELATED = [
    STARTER,
    '''
from sklearn.model_selection import train_test_split
xs, xv, ys, yv = train_test_split(x_train.reshape(-1, 784), y_train, test_size=0.2, random_state=0)
mlp = keras.models.Sequential()
mlp.add(keras.layers.Dense(512, activation="relu", input_shape=(784,)))
mlp.add(keras.layers.BatchNormalization())
mlp.add(keras.layers.Dense(256, activation="tanh"))
mlp.add(keras.layers.Dense(10, activation="softmax"))
mlp.compile(keras.optimizers.SGD(learning_rate=0.05, momentum=0.9), "sparse_categorical_crossentropy", ["accuracy"])
stop = keras.callbacks.EarlyStopping(patience=3, restore_best_weights=True)
log = mlp.fit(xs, ys, validation_data=(xv, yv), epochs=40, callbacks=[stop], verbose=2)
''',
    '''
import pandas as pd
frame = pd.DataFrame(log.history)
frame.plot(figsize=(8, 5))
plt.grid(True)
plt.gca().set_ylim(0, 1)
matrix = np.zeros((10, 10), dtype=int)
guess = mlp.predict(x_test.reshape(-1, 784)).argmax(-1)
for t, g in zip(y_test, guess):
    matrix[t, g] += 1
print(pd.DataFrame(matrix, index=class_names, columns=class_names))
mlp.save("mlp.h5")
''',
]


def _jaccard(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    return len(set(a) & set(b)) / len(set(a) | set(b))


def test_disguised_copy_has_the_same_fingerprints() -> None:
    original = code_fingerprints(ORIGINAL)
    assert len(original) >= 30
    assert all(isinstance(h, int) and -(2**63) <= h < 2**63 for h in original)
    assert list(original) == sorted(set(original))
    disguised = code_fingerprints(DISGUISED)
    # everything but the changed print line matches
    assert _jaccard(original, disguised) > 0.9


def test_unrelated_code_shares_little() -> None:
    starter = set(code_fingerprints([STARTER]))
    original = set(code_fingerprints(ORIGINAL)) - starter
    unrelated = set(code_fingerprints(UNRELATED)) - starter
    assert len(original & unrelated) / len(original | unrelated) < 0.1


def test_magics_and_broken_cells_are_skipped() -> None:
    body = ORIGINAL[1] + ORIGINAL[2]
    with_noise = ["%load_ext autoreload\n!ls -l\nfiles = !ls\nnet?\n" + body, "%%bash\necho hi; for f in *; do ls; done\n",
                  "def broken(:\n    return (\n"]
    assert code_fingerprints(with_noise) == code_fingerprints([body])
    timed = code_fingerprints(["%%time\n" + body])
    assert timed == code_fingerprints([body])
    assert code_fingerprints([]) == () and code_fingerprints(["x = 1"]) == ()


def test_fingerprints_are_stable_across_runs() -> None:
    """blake2b, not hash(): pinned so that a change (which invalidates cached evidence) is deliberate."""
    fps = code_fingerprints(["for i in range(10):\n    total = total + values[i] * weights[i] / 2\n"])
    assert fps == (-8764024093025480145, -7901866419935743589)


# ---------------------------------------------------------------------------------------------
# find_similar with hand-made evidence

N = 10_000


def _model(path: str, *, sha: str | None = None, weights: str | None = None, predicted: np.ndarray | str | None = None,
           size: int = 1234) -> ModelEvidence:
    pred = encode_labels(predicted) if isinstance(predicted, np.ndarray) else predicted
    return ModelEvidence(path=path, size_bytes=size, sha256=sha or hashlib.sha256(path.encode()).hexdigest(),
                         status="evaluated" if pred is not None else "inspected", metrics=metrics(0.9) if pred else None,
                         weights_fingerprint=weights, predicted=pred)


def _student(name: str, *models: ModelEvidence, notebooks: tuple[NotebookEvidence, ...] = ()) -> Evidence:
    return Evidence(student=name, models=models, notebooks=notebooks)


def _notebook(path: str, sources: list[str]) -> NotebookEvidence:
    return NotebookEvidence(path=path, code_fingerprints=code_fingerprints(sources))


def _noisy(truth: np.ndarray, rng: np.random.Generator, rate: float = 0.1) -> np.ndarray:
    """The true labels with about `rate` of them replaced by a different random class."""
    out = truth.copy()
    wrong = rng.random(len(truth)) < rate
    out[wrong] = (out[wrong] + rng.integers(1, 10, wrong.sum())) % 10
    return out


def _flip(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    out = labels.copy()
    idx = rng.choice(len(out), count, replace=False)
    out[idx] = (out[idx] + 1) % 10
    return out


def _class(students: int = 20, seed: int = 0) -> tuple[list[Evidence], np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, N).astype(np.uint8)
    evidences = [_student(f"s{i:02d}", _model(f"s{i:02d}/cnn.h5", predicted=_noisy(truth, rng)))
                 for i in range(students)]
    return evidences, truth


def test_identical_files_flagged_once() -> None:
    labels = np.arange(N) % 10
    shared = "ab" * 32
    evs = [
        _student("bob", _model("model.keras", sha=shared, weights="w1", predicted=labels)),
        _student("alice", _model("cnn.h5", sha=shared, weights="w1", predicted=labels), _model("other.h5")),
        _student("carol", _model("mine.h5")),
    ]
    flags = find_similar(evs)
    assert [(f.kind, f.students, f.what, f.strength) for f in flags] == [
        ("identical_file", ("alice", "bob"), ("cnn.h5", "model.keras"), 1.0)]
    assert "same file" in flags[0].detail


def test_same_weights_flagged_once_and_not_again_as_predictions() -> None:
    labels = np.arange(N) % 10
    evs = [
        _student("alice", _model("cnn.h5", weights="f" * 64, predicted=labels),
                 _model("cnn.keras", weights="f" * 64, predicted=labels)),
        _student("bob", _model("renamed.keras", weights="f" * 64, predicted=labels)),
    ]
    flags = find_similar(evs)
    assert [(f.kind, f.students) for f in flags] == [("same_weights", ("alice", "bob"))]
    assert flags[0].what == ("cnn.h5", "renamed.keras")


def test_predictions_only_the_copied_pair() -> None:
    evs, truth = _class(20)
    rng = np.random.default_rng(7)
    copied = decode_labels(evs[3].models[0].predicted or "")
    evs[11] = _student("s11", _model("s11/final.keras", predicted=_flip(copied, 5, rng)))
    # a student's own two models agree fully: never compared with each other
    own = evs[5].models[0]
    evs[5] = _student("s05", own, _model("s05/again.keras", predicted=decode_labels(own.predicted or "")))
    flags = find_similar(evs)
    assert [(f.kind, f.students, f.what) for f in flags] == [("predictions", ("s03", "s11"), ("s03/cnn.h5", "s11/final.keras"))]
    flag = flags[0]
    assert flag.strength == pytest.approx(9995 / N)
    assert flag.detail.startswith("s03/cnn.h5 and s11/final.keras predict the same class for 9,995 of 10,000 hidden images "
                                  "(99.95%); the median pair in this class agrees on ")
    median = float(flag.detail.rsplit(" ", 1)[1].rstrip("%"))
    assert 80 < median < 84  # two 90% models with independent errors agree on ~81.4%


def test_outlier_rule_catches_a_retrained_copy_in_a_weak_class() -> None:
    """98.8% agreement is below the 99.5% always-rule but far outside a 60%-accuracy class."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 10, N).astype(np.uint8)
    evs = [_student(f"s{i}", _model(f"m{i}.h5", predicted=_noisy(truth, rng, 0.4))) for i in range(8)]
    evs.append(_student("copy", _model("copy.h5", predicted=_flip(decode_labels(evs[0].models[0].predicted or ""), 120, rng))))
    flags = find_similar(evs)
    assert [(f.students, f.strength) for f in flags] == [(("copy", "s0"), pytest.approx(0.988))]
    assert find_similar(evs, rules=SimilarityRules(outlier_factor=1000)) == ()  # the always-rule alone misses it


def test_always_rule_in_a_tiny_class_and_nothing_for_one_student() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 10, N).astype(np.uint8)
    a = _noisy(truth, rng)
    evs = [_student("a", _model("a.h5", predicted=a)), _student("b", _model("b.h5", predicted=_flip(a, 10, rng)))]
    flags = find_similar(evs)
    assert len(flags) == 1 and "too few students" in flags[0].detail
    assert find_similar(evs[:1]) == ()
    assert find_similar([]) == ()
    # the two models of one student are never a pair
    assert find_similar([_student("a", _model("a.h5", predicted=a), _model("b.h5", predicted=a))]) == ()


def test_degenerate_and_hostile_predictions_are_skipped() -> None:
    evs, _ = _class(6)
    constant = np.full(N, 8, dtype=np.uint8)
    evs += [
        _student("bag1", _model("bag.h5", predicted=constant)),
        _student("bag2", _model("bag2.h5", predicted=constant)),
        _student("junk", _model("junk.h5", predicted="not base64 at all!!")),
        _student("short", _model("short.h5", predicted=evs[0].models[0].predicted[:400])),  # type: ignore[index]
        _student("empty", _model("empty.h5", predicted="")),
        _student("huge", notebooks=(NotebookEvidence(path="nb.ipynb", code_fingerprints=(2**70, -(2**80), 5)),)),
        _student("huge2", notebooks=(NotebookEvidence(path="nb.ipynb", code_fingerprints=(2**70, 5)),)),
    ]
    assert find_similar(evs) == ()


def test_results_are_deterministic() -> None:
    evs, _ = _class(12, seed=2)
    rng = np.random.default_rng(9)
    base = decode_labels(evs[0].models[0].predicted or "")
    evs += [_student(f"c{i}", _model(f"c{i}.h5", predicted=_flip(base, 3 + i, rng))) for i in range(3)]
    evs.append(_student("dup", _model("x.h5", sha="cd" * 32), _model("y.h5", weights="w")))
    evs.append(_student("dup2", _model("x2.h5", sha="cd" * 32), _model("y2.h5", weights="w")))
    first = find_similar(evs)
    shuffled = list(evs)
    random.Random(4).shuffle(shuffled)
    assert find_similar(shuffled) == first
    kinds = [f.kind for f in first]
    assert kinds == sorted(kinds, key=["identical_file", "same_weights", "predictions", "notebook_code"].index)
    preds = [f for f in first if f.kind == "predictions"]
    assert len(preds) == 6  # every pair among s00, c0, c1, c2
    assert [f.strength for f in preds] == sorted((f.strength for f in preds), reverse=True)
    assert all(f.students == tuple(sorted(f.students)) for f in first)


def test_handed_out_files_are_not_flagged() -> None:
    evs = [_student(f"s{i}", _model("vgg16_notop.h5", sha="ee" * 32, weights="vgg"), _model(f"own{i}.h5"))
           for i in range(5)]
    assert find_similar(evs) == ()  # held by more than half of the class
    few = [*evs[:2], *(_student(f"t{i}", _model(f"m{i}.h5")) for i in range(4))]
    assert [f.kind for f in find_similar(few)] == ["identical_file"]
    assert find_similar(few, starter_files=frozenset({"ee" * 32})) == ()


def test_notebook_copy_flagged_boilerplate_and_starter_not() -> None:
    evs = [
        _student("alice", notebooks=(_notebook("hw10.ipynb", ORIGINAL),)),
        _student("bob", notebooks=(_notebook("hw10.ipynb", DISGUISED),)),
        _student("carol", notebooks=(_notebook("work.ipynb", UNRELATED),)),
    ]
    flags = find_similar(evs)
    assert [(f.kind, f.students, f.what) for f in flags] == [("notebook_code", ("alice", "bob"), ("hw10.ipynb", "hw10.ipynb"))]
    assert flags[0].strength > 0.9 and "code fingerprints" in flags[0].detail
    # two notebooks that share only the starter: flagged without the starter's fingerprints, not with
    starter_only = [_student("x", notebooks=(_notebook("a.ipynb", [STARTER, "print(x_train.shape)"]),)),
                    _student("y", notebooks=(_notebook("b.ipynb", [STARTER, "print(len(y_test))"]),))]
    assert [f.kind for f in find_similar(starter_only)] == ["notebook_code"]
    assert find_similar(starter_only, starter_fingerprints=frozenset(code_fingerprints([STARTER]))) == ()


def test_notebook_boilerplate_rule_needs_four_students() -> None:
    """Code in the notebooks of more than half of 4+ students is boilerplate; a real copy still shows."""
    def nb(student: str, cells: list[str]) -> Evidence:
        return _student(student, notebooks=(_notebook("nb.ipynb", cells),))

    x, y = nb("x", [STARTER, "print(x_train.shape)"]), nb("y", [STARTER, "print(len(y_test))"])
    small = [x, y, nb("carol", UNRELATED)]
    assert [f.students for f in find_similar(small)] == [("x", "y")]  # 3 students: the starter still counts
    large = [*small, nb("alice", ORIGINAL), nb("bob", DISGUISED)]
    assert [f.students for f in find_similar(large)] == [("alice", "bob")]


def test_containment_of_a_padded_copy() -> None:
    padded = DISGUISED + UNRELATED[1:]  # the copy plus as much code of its own
    evs = [_student("alice", notebooks=(_notebook("a.ipynb", ORIGINAL),)),
           _student("bob", notebooks=(_notebook("b.ipynb", padded),))]
    flags = find_similar(evs)
    assert len(flags) == 1 and flags[0].strength > 0.8
    assert "of the smaller notebook's" in flags[0].detail


def test_flags_for_and_json_round_trip() -> None:
    labels = np.arange(N) % 10
    evs = [_student(s, _model(f"{s}.h5", sha="aa" * 32, predicted=labels)) for s in ("a", "b", "c")]
    flags = find_similar(evs)
    assert len(flags) == 3
    assert [f.students for f in flags_for("b", flags)] == [("a", "b"), ("b", "c")]
    assert flags_for("nobody", flags) == ()
    for flag in flags:
        assert SimilarityFlag.model_validate_json(flag.model_dump_json()) == flag

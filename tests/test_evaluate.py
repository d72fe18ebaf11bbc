"""grader.worker.evaluate on files written by OLD Keras 2 releases (committed fixtures from TensorFlow 2.12
and 2.15, see tests/fixtures/keras2/make_fixtures.py), nested VGG16 files saved by Keras 2, and the
screening of preprocessing candidates."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from grader.worker import adapt
from grader.worker.evaluate import WorkerModel, _load, evaluate_one
from grader.facts.keras_file import inspect_model_file
from grader.pipeline import _public_sample
from tests._models import Built, shared_built

FIXTURES = Path(__file__).parent / "fixtures" / "keras2"
OLD_FILES = [
    ("2.12.0", "cnn", "h5"), ("2.12.0", "mlp", "h5"), ("2.12.0", "nested", "h5"),
    ("2.15.0", "cnn", "h5"), ("2.15.0", "mlp", "h5"), ("2.15.0", "nested", "h5"), ("2.15.0", "cnn", "keras"),
]
PARAMS = {"cnn": (1490, 1490), "mlp": (12730, 12730), "nested": (498, 90)}  # (total, trainable) as Keras counted


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return shared_built(tmp_path_factory)


@pytest.mark.parametrize(("version", "name", "ext"), OLD_FILES)
def test_old_keras2_files_are_read_and_predict_what_their_keras_predicted(version: str, name: str, ext: str) -> None:
    path = FIXTURES / f"{version}-{name}.{ext}"
    arch = inspect_model_file(path)
    assert arch.keras_version == version
    assert (arch.total_params, arch.trainable_params) == PARAMS[name]
    model, loader, _ = _load(str(path), arch.keras_version)
    expected = np.load(FIXTURES / f"{version}-expected.npz")
    got = model.predict(expected[f"{name}_x"], verbose=0)
    np.testing.assert_allclose(got, expected[f"{name}_y"], atol=1e-5)
    if name == "nested":  # the form Keras 3 misreads: the Keras 2 loader must be the one that read it
        assert loader.startswith("tf_keras")


@pytest.mark.parametrize("version", ["2.12.0", "2.15.0"])
def test_old_keras2_nested_vgg16_config_is_recognised(version: str, tmp_path: Path) -> None:
    """The attributes of a real Keras 2.12/2.15 file of VGG16 nested in a Sequential, block5 trainable
    (weights left out of the fixture; inspection reads only the config)."""
    attrs = json.loads((FIXTURES / f"{version}-vgg16-config.json").read_text())
    path = tmp_path / "vgg.h5"
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        f.create_group("model_weights")
    arch = inspect_model_file(path)
    (match,) = arch.bases
    assert (match.name, match.nested, match.trainable_layers, match.frozen_layers) == ("vgg16", True, 3, 10)
    assert arch.keras_version == version


def test_keras2_nested_vgg16_file_is_evaluated(built: Built, fmnist_dir: Path, tmp_path: Path) -> None:
    """A real 59 MB Keras 2 file (tf_keras) with VGG16 nested in a Sequential goes through the worker."""
    from grader.inputs import datasets

    path = built.path("k2_vgg_pretrained", "h5")
    x, y = datasets.load_split(datasets.resolve_split("fashion-mnist", "test", explicit_dir=fmnist_dir, download=False))
    stats = adapt.Stats(0.286, 0.353)
    item = WorkerModel(index=0, path=str(path), keras_version=inspect_model_file(path).keras_version)
    result = evaluate_one(item, x[:64], x[64:84], y[64:84], stats, tmp_path, 32)
    assert result.ok, result.error
    assert result.loader is not None and result.loader.startswith("tf_keras")
    assert result.input_shape == (None, 32, 32, 3)
    assert set(result.candidates) == {c.key for c in adapt.candidates((None, 32, 32, 3))}  # 20 images: no screening
    assert result.screening == {}
    assert np.load(tmp_path / result.predictions).shape == (64, 10)


def test_many_candidates_are_screened_then_the_best_scored_on_the_whole_sample(built: Built, fmnist_dir: Path,
                                                                              tmp_path: Path) -> None:
    from grader.inputs import datasets

    path = built.path("k3_cnn_32x32x3", "keras")
    x, y = datasets.load_split(datasets.resolve_split("fashion-mnist", "train", explicit_dir=fmnist_dir, download=False))
    sample_x, sample_y = _public_sample(x, y, 2 * adapt.SCREEN_SIZE)
    result = evaluate_one(WorkerModel(index=0, path=str(path)), x[:10], sample_x, sample_y, adapt.Stats(0.286, 0.353), tmp_path, 64)
    assert result.ok, result.error
    every = [c.key for c in adapt.candidates((None, 32, 32, 3))]
    assert list(result.screening) == every
    assert list(result.candidates) == adapt.shortlist(result.screening)
    assert result.candidate == adapt.choose(result.candidates)


def test_worker_stops_when_the_grader_is_killed(tmp_path: Path) -> None:
    """kill -9 of the grader leaves its worker orphaned (it runs in its own session); the worker's
    parent watch must end it instead of letting it run for the rest of its time limit."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    worker = ("import os, time, sys; from grader.worker.evaluate import _exit_with_parent; _exit_with_parent(poll=0.1); "
              f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)")
    grader = (f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {worker!r}], start_new_session=True); "
              "time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", grader])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            raise AssertionError("the orphaned worker kept running after its grader was killed")
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"


def test_lambda_using_notebook_globals_loads_when_code_may_run(tmp_path: Path) -> None:
    """Students write `Lambda(lambda x: tf.image.resize(x, ...))` in a notebook where `tf` is a global;
    the saved bytecode names `tf`, which the loader's module does not have."""
    import keras
    import tensorflow as tf

    fn = eval("lambda t: tf.image.resize(keras.ops.repeat(t, 3, axis=-1), (32, 32))", {"tf": tf, "keras": keras})  # noqa: S307
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(fn), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "lambda.keras"
    model.save(path)
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    loaded, loader, _ = _load(str(path), None, runs_code=True)
    assert "own code" in loader
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    with pytest.raises(RuntimeError, match="no loader could read"):  # safe mode refuses the bytecode
        _load(str(path), None, runs_code=False)


def test_a_lambda_that_fails_while_loading_reports_its_own_error(tmp_path: Path, fmnist_dir: Path) -> None:
    """Keras 3 swallows the Lambda's exception while building a loaded Sequential and later says only
    'has no defined input shape yet'; the student needs the NameError."""
    import keras

    fn = eval("lambda t: t * undefined_scale", {"undefined_scale": 2.0})  # noqa: S307 - a global the loader lacks
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(fn), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    path = tmp_path / "lambda.keras"
    model.save(path)
    x = np.zeros((20, 28, 28), np.uint8)
    item = WorkerModel(index=0, path=str(path), runs_code=True, input_shape=(None, 28, 28, 1))
    result = evaluate_one(item, x[:5], x, np.arange(20) % 10, adapt.Stats(0.3, 0.3), tmp_path, 8)
    assert not result.ok and "NameError" in (result.error or "") and "undefined_scale" in (result.error or "")

"""Finding, checking and reading Fashion-MNIST: every step of the search order, downloads from a
real HTTP server on 127.0.0.1, and IDX files that are broken in the ways files break.

The real files come from the `fmnist_dir` fixture in conftest.py ($GRADER_TEST_DATA, else the
development checkout's shared data). Every call passes `env`, `home` and `cache_dir` explicitly,
so the machine's own ~/.keras or $GRADER_HIDDEN_TESTS never leaks in, and no test touches the
internet.
"""

from __future__ import annotations

import gzip
import http.server
import shutil
import struct
import threading
import urllib.request
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from grader.inputs.datasets import (
    FASHION_MNIST,
    DatasetError,
    SplitFiles,
    dataset_names,
    get_dataset,
    load_split,
    read_idx,
    resolve_split,
)

TEST_FILES = (FASHION_MNIST.test.images, FASHION_MNIST.test.labels)
_TIMEOUT = 5.0  # seconds, for every request to the local server


# ------------------------------------------------------------------------------------------
# helpers and fixtures
# ------------------------------------------------------------------------------------------


def _link_test_split(src: Path, dst: Path, names: tuple[str, ...] = TEST_FILES) -> Path:
    """A folder holding (links to) the real test files: cheap, and enough for resolution."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        (dst / name).symlink_to(src / name)
    return dst


def _idx(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes for `array` (3-d images or 1-d labels)."""
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def _own_split(folder: Path, labels: list[int]) -> Path:
    """A teacher's own small test split, in valid IDX under the official names."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.arange(len(labels) * 28 * 28, dtype=np.int64).reshape(len(labels), 28, 28) % 256
    (folder / TEST_FILES[0]).write_bytes(gzip.compress(_idx(images)))
    (folder / TEST_FILES[1]).write_bytes(gzip.compress(_idx(np.array(labels))))
    return folder


def _no_network(url: str, timeout: float | None = None) -> None:
    raise AssertionError(f"unexpected download of {url}")


def _resolve(split: str = "test", **kwargs: object) -> SplitFiles:
    """resolve_split with a hermetic environment unless a test says otherwise."""
    kwargs.setdefault("env", {})
    kwargs.setdefault("opener", _no_network)
    return resolve_split(FASHION_MNIST, split, **kwargs)  # type: ignore[arg-type]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base's name
        pass


@pytest.fixture()
def server(tmp_path: Path, fmnist_dir: Path) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving a folder with three "mirrors":
    /good/ (copies of the real test files), /bad/ (the same, one byte of the images flipped) and
    /empty/ (nothing: 404). Yields its base URL; shut down afterwards."""
    root = tmp_path / "www"
    good = root / "good"
    good.mkdir(parents=True)
    (root / "empty").mkdir()
    for name in TEST_FILES:
        shutil.copyfile(fmnist_dir / name, good / name)
    shutil.copytree(good, root / "bad")
    bad = bytearray((root / "bad" / TEST_FILES[0]).read_bytes())
    bad[1000] ^= 0xFF
    (root / "bad" / TEST_FILES[0]).write_bytes(bytes(bad))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    httpd.timeout = _TIMEOUT
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=_TIMEOUT)


def _opener() -> object:
    """A real urllib opener that ignores any proxy settings of the machine (127.0.0.1 is local)."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({})).open


def _closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connecting is refused at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------
# the data set description and the real files
# ------------------------------------------------------------------------------------------


def test_registry_describes_fashion_mnist() -> None:
    assert dataset_names() == ["fashion-mnist"]
    spec = get_dataset("fashion-mnist")
    assert spec is FASHION_MNIST
    assert spec.class_names[0] == "T-shirt/top" and spec.class_names[9] == "Ankle boot" and len(spec.class_names) == 10
    assert spec.image_shape == (28, 28)
    assert spec.test.images_md5 == "bef4ecab320f06d8554ea6380940ec79"
    assert any("storage.googleapis.com/tensorflow/tf-keras-datasets/" in m for m in spec.mirrors)
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]  # frozen


def test_unknown_dataset_lists_known_ones() -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'; known: fashion-mnist"):
        get_dataset("mnist")


def test_real_test_split_is_verified_and_balanced(fmnist_dir: Path, home: Path, cache: Path) -> None:
    files = _resolve(explicit_dir=fmnist_dir, home=home, cache_dir=cache)
    assert files.source == "explicit" and files.verified and files.directory == fmnist_dir
    assert len(files.sha256) == 64
    images, labels = load_split(files)
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10
    assert SplitFiles.model_validate_json(files.model_dump_json()) == files


def test_real_train_split(fmnist_dir: Path, home: Path, cache: Path) -> None:
    files = _resolve("train", explicit_dir=fmnist_dir, home=home, cache_dir=cache)
    images, labels = load_split(files)
    assert images.shape == (60_000, 28, 28) and np.bincount(labels).tolist() == [6000] * 10


# ------------------------------------------------------------------------------------------
# the search order
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nested", [False, True], ids=["DIR", "DIR/fashion-mnist"])
def test_explicit_dir_both_layouts(fmnist_dir: Path, tmp_path: Path, home: Path, cache: Path, nested: bool) -> None:
    given = tmp_path / "given"
    holder = _link_test_split(fmnist_dir, given / "fashion-mnist" if nested else given)
    env = {"GRADER_HIDDEN_TESTS": str(_link_test_split(fmnist_dir, tmp_path / "env"))}
    files = _resolve(explicit_dir=given, env=env, home=home, cache_dir=cache)
    assert (files.source, files.directory, files.verified) == ("explicit", holder, True)
    assert files.images == holder / TEST_FILES[0]


def test_explicit_dir_missing_file_is_an_error(fmnist_dir: Path, tmp_path: Path, home: Path, cache: Path) -> None:
    given = _link_test_split(fmnist_dir, tmp_path / "given", names=TEST_FILES[:1])
    _link_test_split(fmnist_dir, home / ".keras" / "datasets" / "fashion-mnist")  # must not be used instead
    with pytest.raises(DatasetError) as err:
        _resolve(explicit_dir=given, home=home, cache_dir=cache)
    assert str(given) in str(err.value) and "t10k-labels-idx1-ubyte.gz" in str(err.value)
    assert "t10k-images-idx3-ubyte.gz and" not in str(err.value).split("(looked in")[0]


def test_explicit_dir_that_does_not_exist(tmp_path: Path, home: Path, cache: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        _resolve(explicit_dir=tmp_path / "nope", home=home, cache_dir=cache)


def test_explicit_dir_bad_checksum_is_an_error_unless_not_verifying(tmp_path: Path, home: Path, cache: Path) -> None:
    own = _own_split(tmp_path / "own", labels=[0, 1, 9])
    with pytest.raises(DatasetError) as err:
        _resolve(explicit_dir=own, home=home, cache_dir=cache)
    message = str(err.value)
    assert str(own / TEST_FILES[0]) in message and "md5" in message and "--own-test-set" in message

    files = _resolve(explicit_dir=own, home=home, cache_dir=cache, verify=False)
    assert files.source == "explicit" and not files.verified
    images, labels = load_split(files)
    assert images.shape == (3, 28, 28) and labels.tolist() == [0, 1, 9]


@pytest.mark.parametrize("nested", [False, True], ids=["DIR", "DIR/fashion-mnist"])
def test_env_var_both_layouts(fmnist_dir: Path, tmp_path: Path, home: Path, cache: Path, nested: bool) -> None:
    given = tmp_path / "env"
    holder = _link_test_split(fmnist_dir, given / "fashion-mnist" if nested else given)
    project = tmp_path / "project"
    _link_test_split(fmnist_dir, project / "hidden_tests" / "fashion-mnist")  # env wins over it
    files = _resolve(env={"GRADER_HIDDEN_TESTS": str(given)}, project_root=project, home=home, cache_dir=cache)
    assert (files.source, files.directory, files.verified) == ("env", holder, True)


def test_env_var_missing_files_is_an_error(tmp_path: Path, home: Path, cache: Path) -> None:
    (tmp_path / "env").mkdir()
    with pytest.raises(DatasetError, match=r"\$GRADER_HIDDEN_TESTS folder .*env has no t10k-images"):
        _resolve(env={"GRADER_HIDDEN_TESTS": str(tmp_path / "env")}, home=home, cache_dir=cache)


def test_project_dir(fmnist_dir: Path, tmp_path: Path, home: Path, cache: Path) -> None:
    project = tmp_path / "project"
    holder = _link_test_split(fmnist_dir, project / "hidden_tests" / "fashion-mnist")
    _link_test_split(fmnist_dir, home / ".keras" / "datasets" / "fashion-mnist")  # project wins over it
    files = _resolve(project_root=project, home=home, cache_dir=cache)
    assert (files.source, files.directory, files.verified) == ("project", holder, True)


def test_incomplete_project_dir_is_skipped(fmnist_dir: Path, tmp_path: Path, home: Path, cache: Path) -> None:
    project = tmp_path / "project"
    _link_test_split(fmnist_dir, project / "hidden_tests" / "fashion-mnist", names=TEST_FILES[:1])
    keras = _link_test_split(fmnist_dir, home / ".keras" / "datasets" / "fashion-mnist")
    files = _resolve(project_root=project, home=home, cache_dir=cache)
    assert (files.source, files.directory) == ("keras-cache", keras)


def test_keras_cache_respects_keras_home(fmnist_dir: Path, tmp_path: Path, home: Path, cache: Path) -> None:
    _link_test_split(fmnist_dir, home / ".keras" / "datasets" / "fashion-mnist")
    keras_home = tmp_path / "kh"
    holder = _link_test_split(fmnist_dir, keras_home / "datasets" / "fashion-mnist")
    files = _resolve(env={"KERAS_HOME": str(keras_home)}, home=home, cache_dir=cache)
    assert (files.source, files.directory, files.verified) == ("keras-cache", holder, True)


def test_local_bad_checksum_is_an_error_unless_not_verifying(tmp_path: Path, home: Path, cache: Path) -> None:
    keras = _own_split(home / ".keras" / "datasets" / "fashion-mnist", labels=[3, 4])
    with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\.gz: md5 .* not the official"):
        _resolve(home=home, cache_dir=cache)
    files = _resolve(home=home, cache_dir=cache, verify=False)
    assert (files.source, files.directory, files.verified) == ("keras-cache", keras, False)


def test_not_found_without_download_lists_where_it_looked(tmp_path: Path, home: Path, cache: Path) -> None:
    project = tmp_path / "project"
    with pytest.raises(DatasetError) as err:
        _resolve(project_root=project, home=home, cache_dir=cache, download=False)
    message = str(err.value)
    for place in (project / "hidden_tests" / "fashion-mnist", home / ".keras" / "datasets" / "fashion-mnist",
                  cache / "datasets" / "fashion-mnist", "$GRADER_HIDDEN_TESTS"):
        assert str(place) in message
    assert "put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in hidden_tests/fashion-mnist/" in message
    assert "--hidden-tests DIR" in message and "downloading is turned off" in message


def test_previous_download_is_reused_offline(fmnist_dir: Path, tmp_path: Path, home: Path) -> None:
    root = tmp_path / "grader-cache"
    holder = root / "datasets" / "fashion-mnist"
    holder.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copyfile(fmnist_dir / name, holder / name)
    files = _resolve(env={"GRADER_CACHE_DIR": str(root)}, home=home, download=False)
    assert (files.source, files.directory, files.verified) == ("download", holder, True)


# ------------------------------------------------------------------------------------------
# downloading from a real local server
# ------------------------------------------------------------------------------------------


def test_download_tries_the_next_mirror(server: str, fmnist_dir: Path, home: Path, cache: Path) -> None:
    mirrors = (f"http://127.0.0.1:{_closed_port()}/", f"{server}/empty/", f"{server}/good/")
    spec = FASHION_MNIST.model_copy(update={"mirrors": mirrors})
    files = resolve_split(spec, "test", env={}, home=home, cache_dir=cache, opener=_opener(), timeout=_TIMEOUT)
    target = cache / "datasets" / "fashion-mnist"
    assert (files.source, files.directory, files.verified) == ("download", target, True)
    assert sorted(p.name for p in target.iterdir()) == sorted(TEST_FILES)  # no temporary file left
    assert (target / TEST_FILES[0]).read_bytes() == (fmnist_dir / TEST_FILES[0]).read_bytes()
    assert len(load_split(files)[0]) == 10_000

    again = resolve_split(spec, "test", env={}, home=home, cache_dir=cache, opener=_no_network)
    assert again == files  # the second run finds the downloaded files and needs no network


def test_corrupt_download_fails_and_leaves_nothing(server: str, home: Path, cache: Path) -> None:
    spec = FASHION_MNIST.model_copy(update={"mirrors": (f"{server}/empty/", f"{server}/bad/")})
    with pytest.raises(DatasetError) as err:
        resolve_split(spec, "test", env={}, home=home, cache_dir=cache, opener=_opener(), timeout=_TIMEOUT)
    message = str(err.value)
    assert "download failed" in message and "404" in message
    assert f"{server}/bad/{TEST_FILES[0]}: md5" in message and "not the official bef4ecab320f06d8554ea6380940ec79" in message
    assert "put t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in hidden_tests/fashion-mnist/" in message
    target = cache / "datasets" / "fashion-mnist"
    leftovers = sorted(p.name for p in target.iterdir())
    assert TEST_FILES[0] not in leftovers and not any(name.endswith(".part") for name in leftovers)


# ------------------------------------------------------------------------------------------
# IDX files, good and broken
# ------------------------------------------------------------------------------------------


def test_read_idx_plain_and_gzip(tmp_path: Path) -> None:
    labels = np.array([0, 5, 9], dtype=np.uint8)
    (tmp_path / "plain").write_bytes(_idx(labels))
    (tmp_path / "zipped.gz").write_bytes(gzip.compress(_idx(labels)))
    for name in ("plain", "zipped.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and out.tolist() == [0, 5, 9]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (struct.pack(">IIII", 2052, 1, 28, 28) + bytes(784), "bad IDX magic number 2052"),
        (struct.pack(">IIII", 2051, 2, 28, 28) + bytes(784), "truncated"),
        (struct.pack(">II", 2049, 3) + bytes(4), "longer"),
        (struct.pack(">II", 2051, 1), "header truncated"),
        (b"\x00\x00", "not an IDX file"),
    ],
    ids=["bad-magic", "truncated-payload", "trailing-bytes", "short-header", "tiny"],
)
@pytest.mark.parametrize("zipped", [False, True], ids=["raw", "gz"])
def test_broken_idx_names_the_file(tmp_path: Path, content: bytes, match: str, zipped: bool) -> None:
    path = tmp_path / ("broken.gz" if zipped else "broken")
    path.write_bytes(gzip.compress(content) if zipped else content)
    with pytest.raises(DatasetError, match=match) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_stream_names_the_file(fmnist_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / TEST_FILES[0]
    path.write_bytes((fmnist_dir / TEST_FILES[0]).read_bytes()[:100_000])
    with pytest.raises(DatasetError, match="cannot read IDX file") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_labels_read_where_images_are_expected(fmnist_dir: Path) -> None:
    with pytest.raises(DatasetError, match="bad IDX magic number 2049; expected 2051"):
        read_idx(fmnist_dir / TEST_FILES[1], expect=2051)


def test_load_split_checks_counts_and_labels(tmp_path: Path, home: Path, cache: Path) -> None:
    own = _own_split(tmp_path / "own", labels=[0, 1, 2])
    (own / TEST_FILES[1]).write_bytes(gzip.compress(_idx(np.array([0, 1]))))
    files = _resolve(explicit_dir=own, home=home, cache_dir=cache, verify=False)
    with pytest.raises(DatasetError, match="has 3 images but .* has 2 labels"):
        load_split(files)

    (own / TEST_FILES[1]).write_bytes(gzip.compress(_idx(np.array([0, 10, 2]))))
    with pytest.raises(DatasetError, match=r"label 10 at index 1 is not a class of fashion-mnist \(0..9\)"):
        load_split(files)

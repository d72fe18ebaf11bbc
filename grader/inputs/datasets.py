"""Where a data set's files live, how they are checked, and how they are read.

The grader needs two splits of each data set: the HIDDEN test split (the teacher's; its labels
never reach student code) and the PUBLIC train split (labelled data on which preprocessing is
chosen). `resolve_split` finds a split's files in a fixed order and says where they came from and
whether their checksums were verified; `load_split` reads them into arrays. Nothing here is
global mutable state: the registry is a read-only mapping of frozen records, and the home
directory, environment and URL opener are parameters so that tests inject them.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO, Literal

import numpy as np

from grader.records.frozen import Frozen
from grader.errors import GraderError

__all__ = [
    "FASHION_MNIST",
    "DatasetError",
    "DatasetSpec",
    "SplitFiles",
    "SplitSpec",
    "dataset_names",
    "get_dataset",
    "load_split",
    "read_idx",
    "resolve_split",
]

Split = Literal["test", "train"]
Source = Literal["explicit", "env", "project", "keras-cache", "download"]
Opener = Callable[..., Any]  # urllib.request.urlopen-like: opener(url, timeout=...) -> response

IMAGES_MAGIC = 2051  # IDX: unsigned bytes, 3 dimensions (count, rows, cols)
LABELS_MAGIC = 2049  # IDX: unsigned bytes, 1 dimension (count)
_IDX_KINDS = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}
_MAX_PAYLOAD = 1 << 30  # a header may not make us allocate more than 1 GiB
_MAX_DOWNLOAD = 256 << 20  # the largest official file is 26 MB
_CHUNK = 1 << 20
_ENV_HIDDEN = "GRADER_HIDDEN_TESTS"
_ENV_CACHE = "GRADER_CACHE_DIR"
_ENV_KERAS = "KERAS_HOME"
_REMEDY_FLAG = {"test": "--hidden-tests DIR", "train": "--public-data DIR"}


class DatasetError(GraderError):
    """A data set that cannot be found, downloaded, verified or read.

    A `GraderError` (itself a plain `Exception`) so that the CLI prints it as one usage error
    (exit 4) instead of an internal error: a missing hidden test set is a set-up problem.
    """


# --------------------------------------------------------------------------------------------
# What a data set is
# --------------------------------------------------------------------------------------------


class SplitSpec(Frozen):
    """The official files of one split. An md5 of None means "no official checksum" (a data set
    added without one is then never reported as verified)."""

    images: str
    labels: str
    images_md5: str | None = None
    labels_md5: str | None = None
    count: int  # official number of examples; informative, a teacher's own split may differ


class DatasetSpec(Frozen):
    """A frozen description of a data set: enough to find, download, check and read it."""

    name: str  # also the folder name in every layout: hidden_tests/<name>/, ~/.keras/datasets/<name>/
    class_names: tuple[str, ...]
    image_shape: tuple[int, int]
    test: SplitSpec
    train: SplitSpec
    mirrors: tuple[str, ...]  # base URLs, tried in order; a file's URL is mirror + file name
    homepage: str = ""
    # a hidden-set accuracy above this is flagged to the teacher as implausible (grader.judging.plausibility):
    # a little above the best published results. None: no ceiling known
    accuracy_ceiling: float | None = None

    def split(self, split: Split) -> SplitSpec:
        """The spec of `split`; an unknown split name is an error rather than a KeyError."""
        if split not in ("test", "train"):
            raise DatasetError(f"unknown split {split!r} of {self.name}; known: test, train")
        return self.test if split == "test" else self.train


FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    image_shape=(28, 28),
    test=SplitSpec(
        images="t10k-images-idx3-ubyte.gz", images_md5="bef4ecab320f06d8554ea6380940ec79",
        labels="t10k-labels-idx1-ubyte.gz", labels_md5="bb300cfdad3c16e7a12a480ee83cd310",
        count=10_000,
    ),
    train=SplitSpec(
        images="train-images-idx3-ubyte.gz", images_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        labels="train-labels-idx1-ubyte.gz", labels_md5="25c81989df183df01b3e8a0aad5dffbe",
        count=60_000,
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",  # what keras.datasets uses
    ),
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    accuracy_ceiling=0.96,  # the best published CNNs reach about 0.96; course models 0.85 to 0.94
)

_DATASETS: Mapping[str, DatasetSpec] = MappingProxyType({FASHION_MNIST.name: FASHION_MNIST})


def dataset_names() -> list[str]:
    """Names of the known data sets, sorted (what a rubric's `dataset:` may say)."""
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The data set called `name`; an unknown name is an error that lists the known ones."""
    try:
        return _DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(dataset_names())}") from None


# --------------------------------------------------------------------------------------------
# Reading IDX files
# --------------------------------------------------------------------------------------------


def _open_idx(path: Path) -> BinaryIO:
    """Open `path` for reading, transparently decompressing gzip (sniffed, not guessed from the
    name, so a renamed file still reads)."""
    with path.open("rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if is_gzip else path.open("rb")  # type: ignore[return-value]


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """Read up to `size` bytes in chunks, so a lying header cannot make us allocate it at once."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _parse_header(stream: BinaryIO, path: Path, expect: int | None) -> tuple[int, ...]:
    """The dimensions declared by the IDX header, after checking the magic number."""
    head = _read_exactly(stream, 4)
    if len(head) < 4:
        raise DatasetError(f"{path}: not an IDX file (only {len(head)} bytes)")
    (magic,) = struct.unpack(">I", head)
    if magic not in _IDX_KINDS or (expect is not None and magic != expect):
        wanted = f"{expect} ({_IDX_KINDS[expect]})" if expect is not None else "2051 (images) or 2049 (labels)"
        raise DatasetError(f"{path}: bad IDX magic number {magic}; expected {wanted}")
    ndim = magic & 0xFF
    raw = _read_exactly(stream, 4 * ndim)
    if len(raw) < 4 * ndim:
        raise DatasetError(f"{path}: IDX header truncated (needs {ndim} dimensions)")
    dims = struct.unpack(f">{ndim}I", raw)
    if ndim == 3 and (dims[1] == 0 or dims[2] == 0):
        raise DatasetError(f"{path}: IDX images of size {dims[1]}x{dims[2]}")
    return dims


def read_idx(path: str | Path, *, expect: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not) into a uint8 array of its declared shape.

    Checks the magic number (2051 images / 2049 labels, or exactly `expect`), the dimensions,
    and that the payload has exactly the length the header declares: a truncated or padded file
    is refused rather than silently reshaped. Any problem is a `DatasetError` naming the file.
    """
    path = Path(path)
    try:
        with _open_idx(path) as stream:
            dims = _parse_header(stream, path, expect)
            size = int(np.prod(dims, dtype=np.int64))
            if size > _MAX_PAYLOAD:
                raise DatasetError(f"{path}: IDX header declares {size} bytes, more than the {_MAX_PAYLOAD} allowed")
            payload = _read_exactly(stream, size)
            if len(payload) != size:
                raise DatasetError(f"{path}: truncated: header {dims} declares {size} bytes of data, file has {len(payload)}")
            if stream.read(1):
                raise DatasetError(f"{path}: {size} bytes of data expected after the header {dims}, but the file is longer")
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DatasetError(f"{path}: cannot read IDX file: {exc}") from None
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


# --------------------------------------------------------------------------------------------
# Finding a split's files
# --------------------------------------------------------------------------------------------


class SplitFiles(Frozen):
    """Where one split's files were found, and what is known about them.

    `sha256` is a digest of both files' contents (images, then labels): the caller uses it as a
    cache key, so a different test set never reuses another's evidence. `verified` says whether
    the files were checked against the official md5s; False means a teacher's own split.
    """

    dataset: str
    split: Split
    images: Path
    labels: Path
    source: Source
    directory: Path
    verified: bool
    sha256: str
    image_shape: tuple[int, int]
    num_classes: int


def _digests(path: Path) -> tuple[str, bytes]:
    """md5 (hex, to compare with the official list) and sha256 (raw) of a file, in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.digest()


def _missing(directory: Path, spec: SplitSpec) -> list[str]:
    """The split's file names that `directory` lacks."""
    return [name for name in (spec.images, spec.labels) if not (directory / name).is_file()]


def _layouts(root: Path, name: str) -> list[Path]:
    """A user-given folder may hold the files directly or in a sub-folder named for the data set."""
    return [root, root / name]


def _pick_layout(root: Path, spec: DatasetSpec, split: Split, what: str, fix: str) -> Path:
    """The layout of a folder that the user pointed at; not finding the files there is an error,
    because a teacher who names a folder must never silently get another data set."""
    files = spec.split(split)
    wanted = f"{files.images} and {files.labels}"
    if not root.is_dir():
        raise DatasetError(f"{what} {root} does not exist or is not a folder; {fix.format(files=wanted)}")
    for directory in _layouts(root, spec.name):
        if not _missing(directory, files):
            return directory
    raise DatasetError(
        f"{what} {root} has no {' and '.join(_missing(root, files))} (looked in {root} and {root / spec.name}); "
        + fix.format(files=wanted)
    )


def _remedy(spec: DatasetSpec, split: Split) -> str:
    """What a teacher can do when a split is nowhere to be found."""
    files = spec.split(split)
    return (f"put {files.images} and {files.labels} in hidden_tests/{spec.name}/ "
            f"or pass {_REMEDY_FLAG[split]}")


def _checked(directory: Path, spec: DatasetSpec, split: Split, source: Source, verify: bool, hint: str) -> SplitFiles:
    """A `SplitFiles` for `directory`, after comparing each file with its official md5 when asked."""
    files = spec.split(split)
    sha = hashlib.sha256()
    verified = verify and files.images_md5 is not None and files.labels_md5 is not None
    for name, expected in ((files.images, files.images_md5), (files.labels, files.labels_md5)):
        md5, digest = _digests(directory / name)
        sha.update(digest)
        if verify and expected is not None and md5 != expected:
            raise DatasetError(
                f"{directory / name}: md5 {md5} is not the official {expected} of {spec.name} {name}; {hint}"
            )
    return SplitFiles(
        dataset=spec.name, split=split, images=directory / files.images, labels=directory / files.labels,
        source=source, directory=directory, verified=verified, sha256=sha.hexdigest(),
        image_shape=spec.image_shape, num_classes=len(spec.class_names),
    )


_BAD_LOCAL = ("replace it with the official file (or delete it and let the grader download it); "
              "if this is your own split on purpose, pass --own-test-set to skip the md5 check")
_BAD_GIVEN = ("replace it with the official file; if this is your own split on purpose, "
              "pass --own-test-set to skip the md5 check")


def _keras_dir(env: Mapping[str, str], home: Path, name: str) -> Path:
    """Where keras.datasets caches a data set: $KERAS_HOME/datasets/<name>, else ~/.keras/datasets/<name>."""
    base = Path(env[_ENV_KERAS]).expanduser() if env.get(_ENV_KERAS) else home / ".keras"
    return base / "datasets" / name


def _cache_dir(cache_dir: Path | None, env: Mapping[str, str], home: Path, name: str) -> Path:
    """Where the grader keeps what it downloads: <root>/datasets/<name>, with root the argument,
    else $GRADER_CACHE_DIR, else ~/.cache/grader."""
    if cache_dir is not None:
        root = Path(cache_dir)
    elif env.get(_ENV_CACHE):
        root = Path(env[_ENV_CACHE]).expanduser()
    else:
        root = home / ".cache" / "grader"
    return root / "datasets" / name


def _download_file(url: str, target: Path, expected_md5: str | None, opener: Opener, timeout: float) -> None:
    """Fetch `url` into `target`: streamed into a temporary file beside it, md5-checked, then
    renamed atomically, so a reader never sees a partial or corrupt file. Raises on any failure
    after removing the temporary file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as response:
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > _MAX_DOWNLOAD:
                    raise DatasetError(f"{url}: more than {_MAX_DOWNLOAD} bytes; not a {target.name}")
                md5.update(chunk)
                out.write(chunk)
        if expected_md5 is not None and md5.hexdigest() != expected_md5:
            raise DatasetError(f"{url}: md5 {md5.hexdigest()} is not the official {expected_md5} ({size} bytes received)")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(name: str, expected_md5: str | None, target: Path, mirrors: tuple[str, ...],
           opener: Opener, timeout: float) -> list[str]:
    """Try each mirror in turn until `target` holds a good copy; the failures met, one per mirror
    (empty on success)."""
    failures: list[str] = []
    for mirror in mirrors:
        url = mirror + name
        try:
            _download_file(url, target, expected_md5, opener, timeout)
            return []
        except DatasetError as exc:
            failures.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - any network or disk failure means "try the next mirror"
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    return failures or [f"{name}: no mirror is known for this data set"]


def _cached_ok(path: Path, expected_md5: str | None) -> bool:
    """A previously downloaded file is reused only if it is still intact."""
    return path.is_file() and (expected_md5 is None or _digests(path)[0] == expected_md5)


def _cache_complete(target: Path, files: SplitSpec) -> bool:
    """Whether the download cache already holds intact copies of both files."""
    return _cached_ok(target / files.images, files.images_md5) and _cached_ok(target / files.labels, files.labels_md5)


def _download(spec: DatasetSpec, split: Split, target: Path, opener: Opener, timeout: float) -> list[str]:
    """Make `target` hold the split's files, downloading those absent or damaged; the failures
    met. Stops at the first file that no mirror could provide: the split is unusable without it,
    and an offline machine should not wait on every mirror twice."""
    files = spec.split(split)
    for name, md5 in ((files.images, files.images_md5), (files.labels, files.labels_md5)):
        if not _cached_ok(target / name, md5):
            failures = _fetch(name, md5, target / name, spec.mirrors, opener, timeout)
            if failures:
                return failures
    return []


def _local_candidates(spec: DatasetSpec, env: Mapping[str, str], project_root: Path | None,
                      home: Path) -> list[tuple[Source, Path]]:
    """Steps 3 and 4 of the search order: folders used only if they hold the files."""
    out: list[tuple[Source, Path]] = []
    if project_root is not None:
        out.append(("project", Path(project_root) / "hidden_tests" / spec.name))
    out.append(("keras-cache", _keras_dir(env, home, spec.name)))
    return out


def resolve_split(
    dataset: DatasetSpec | str,
    split: Split,
    *,
    explicit_dir: str | Path | None = None,
    env: Mapping[str, str] = os.environ,
    project_root: str | Path | None = None,
    home: str | Path | None = None,
    cache_dir: str | Path | None = None,
    download: bool = True,
    opener: Opener = urllib.request.urlopen,
    verify: bool = True,
    timeout: float = 60.0,
) -> SplitFiles:
    """Find the files of one split, in this order, and say where they came from:

    1. `explicit_dir` (``--hidden-tests DIR``), holding the files directly or in ``DIR/<name>/``;
    2. ``$GRADER_HIDDEN_TESTS``, same two layouts;
    3. ``<project_root>/hidden_tests/<name>/`` (skipped when `project_root` is None);
    4. the Keras cache ``$KERAS_HOME/datasets/<name>/`` or ``~/.keras/datasets/<name>/``;
    5. the grader's download cache ``<cache root>/datasets/<name>/`` (root: `cache_dir`, else
       ``$GRADER_CACHE_DIR``, else ``~/.cache/grader``), downloading missing files from the
       official mirrors unless `download` is False.

    Steps 1 and 2 are a promise by the user: if the folder lacks a file, or a file fails its
    checksum, that is an error, never a fall-through to other data. Steps 3 and 4 are used only
    when they hold both files; their md5s are checked too. `verify=False` accepts files that are
    not the official ones (a teacher's own split) and the result says ``verified=False``.
    Downloads are always checked against the official md5s. `timeout` is how long, in seconds,
    each connection or read of a download may wait.
    """
    spec = get_dataset(dataset) if isinstance(dataset, str) else dataset
    spec.split(split)  # an unknown split fails here, before any I/O
    home_dir = Path(home) if home is not None else Path.home()

    if explicit_dir is not None:
        directory = _pick_layout(Path(explicit_dir), spec, split, "folder",
                                 "put {files} there, or give the folder that holds them")
        return _checked(directory, spec, split, "explicit", verify, _BAD_GIVEN)
    if env.get(_ENV_HIDDEN):
        directory = _pick_layout(Path(env[_ENV_HIDDEN]).expanduser(), spec, split, f"${_ENV_HIDDEN} folder",
                                 f"put {{files}} there, or set ${_ENV_HIDDEN} to the folder that holds them, or unset it")
        return _checked(directory, spec, split, "env", verify, _BAD_GIVEN)

    looked = ["no folder given", f"${_ENV_HIDDEN} unset"]
    root = None if project_root is None else Path(project_root)
    for source, directory in _local_candidates(spec, env, root, home_dir):
        missing = _missing(directory, spec.split(split))
        if not missing:
            return _checked(directory, spec, split, source, verify, _BAD_LOCAL)
        looked.append(f"{directory} (no {' and '.join(missing)})")

    target = _cache_dir(None if cache_dir is None else Path(cache_dir), env, home_dir, spec.name)
    if download:
        failures = _download(spec, split, target, opener, timeout)
        if not failures:
            return _checked(target, spec, split, "download", True, _BAD_LOCAL)
        reason = "download failed: " + "; ".join(failures)
    elif _cache_complete(target, spec.split(split)):
        return _checked(target, spec, split, "download", True, _BAD_LOCAL)
    else:
        reason = "downloading is turned off"
    looked.append(f"{target} (download cache)")
    raise DatasetError(
        f"{spec.name} {split} split not found (looked in: {', '.join(looked)}); {_remedy(spec, split)}; {reason}"
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_split(files: SplitFiles) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, h, w) uint8 and labels (n,) uint8 of a resolved split, after checking that the
    two files agree in count, that images have the data set's shape, and that every label names
    a class: a bad hidden set must fail loudly before any student is scored against it."""
    images = read_idx(files.images, expect=IMAGES_MAGIC)
    labels = read_idx(files.labels, expect=LABELS_MAGIC)
    if images.shape[1:] != tuple(files.image_shape):
        raise DatasetError(f"{files.images}: images are {images.shape[1]}x{images.shape[2]}, "
                           f"{files.dataset} images are {files.image_shape[0]}x{files.image_shape[1]}")
    if len(images) != len(labels):
        raise DatasetError(f"{files.images} has {len(images)} images but {files.labels} has {len(labels)} labels; "
                           "the two files must come from the same split")
    if len(labels) == 0:
        raise DatasetError(f"{files.labels}: the split is empty")
    bad = np.flatnonzero(labels >= files.num_classes)
    if bad.size:
        raise DatasetError(f"{files.labels}: label {int(labels[bad[0]])} at index {int(bad[0])} is not a class "
                           f"of {files.dataset} (0..{files.num_classes - 1}); {bad.size} such labels")
    return images, labels


# --------------------------------------------------------------------------------------------
# A Keras dataset cache for executed notebooks: PUBLIC data only
# --------------------------------------------------------------------------------------------

STAND_IN_SEED = 20241123


def _write_idx_gz(path: Path, array: np.ndarray) -> None:
    dims = array.shape
    magic = bytes([0, 0, 0x08, len(dims)])
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(magic + b"".join(int(d).to_bytes(4, "big") for d in dims))
        fh.write(np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_keras_cache(spec: DatasetSpec, public: SplitFiles, dest: Path) -> Path:
    """`dest/<name>/` laid out as Keras's dataset cache (``~/.keras/datasets/<name>/``), so that
    ``keras.datasets.fashion_mnist.load_data()`` works in a notebook without a network.

    The train files are the public ones. The test files are a STAND-IN: 10,000 images drawn from the
    public train split with a fixed seed, never the hidden set (which is usually the official test
    split itself). Shapes stay what students expect (60,000 / 10,000), so code that says
    ``reshape(60000, 784)`` runs; the notebook's own "test" numbers in the grader's run are then on
    training images and run high, which is why only the grader's measurement on the hidden set counts.
    """
    folder = dest / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = load_split(public)  # rewritten, not copied: the found files may not be gzipped
    _write_idx_gz(folder / spec.train.images, images)
    _write_idx_gz(folder / spec.train.labels, labels)
    rng = np.random.default_rng(STAND_IN_SEED)
    picks = np.sort(rng.choice(len(images), size=min(spec.test.count, len(images)), replace=False))
    _write_idx_gz(folder / spec.test.images, images[picks])
    _write_idx_gz(folder / spec.test.labels, labels[picks])
    return dest

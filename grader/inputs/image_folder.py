"""Image-folder data sets (cv4: 6 classes of RGB photos), read deterministically into arrays.

Two layouts under a root folder:

- **folders**: ``<root>/<class name>/<image>`` with one folder per class and the images directly in
  it (``.jpg .jpeg .png .bmp .gif .webp``, any case). This is what
  ``keras.utils.image_dataset_from_directory`` reads, and, like it, the classes are the folder
  names in sorted (string) order unless they are given.
- **csv**: ``<root>/labels.csv`` (or another name) with the columns ``filename,label`` (header names
  in any case, a UTF-8 BOM tolerated, separated by ``,`` or ``;``; other columns are ignored). The
  file names are relative to the root and may name sub-folders, but never leave the root: ``..``,
  absolute paths and symlinks that point outside are refused. Labels are class names or integer
  indices into the class names. A root that holds that CSV uses this layout.

Class names come from the caller (the rubric), else from ``<root>/labels.txt`` (one per line, as
TensorFlow Lite Model Maker writes it), else from the folder names (folders) or the sorted distinct
labels (csv; when every label is an integer, the names are ``"0" .. "k-1"``).

Every image is decoded with Pillow (only the formats above; Pillow's other decoders, such as EPS,
are never used), turned upright by its EXIF orientation, converted to RGB (an alpha channel is
dropped, as ``keras.utils.load_img`` and ``tf.io.decode_png(channels=3)`` do) or to grayscale, and
resized to the caller's size with Pillow's bilinear filter (no cropping: a photo of another aspect
ratio is squashed, as ``image_dataset_from_directory`` does by default). The images come back in the
sorted order of their relative file names, which are the ids a prediction CSV uses. That order groups
the folders layout by class: the grader hands the hidden images to workers in a secret shuffled order
(grader.pipeline), never in this one. In the folders layout an id also names its class folder, so a
competition (whose ids students see) refuses it and needs the csv layout with names that say nothing
of the class (grader.scoring.competition.ids_problem).

Problems are collected, not raised one by one: a file that cannot be decoded, an empty file, an image
of more than `max_pixels` pixels (a decompression bomb), a file larger than `max_bytes`, a CSV row
naming a missing file (these four are *file* problems), and an unknown class folder or label, a path
that leaves the root, a duplicate row, a bad CSV or labels.txt, or a set without images (*set*
problems). With ``on_error="raise"`` (the default, and what the hidden set must use) any problem
makes the whole set fail with an `ImageFolderError` that lists every problem (up to
`MAX_PROBLEMS`), because a teacher's set-up error must not silently change every student's score.
With ``on_error="skip"`` (for a public split, say) files with *file* problems are left out and their
problems are returned as warnings; *set* problems still raise.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from grader.records.frozen import Frozen
from grader.inputs.datasets import DatasetError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "MAX_PROBLEMS",
    "ImageFolder",
    "ImageFolderError",
    "ImageFolderInfo",
    "load_image_folder",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")  # JPEG includes the multi-picture (MPO) files phones write
MAX_PIXELS = 50_000_000  # per image, before decoding: a 50 MP photo is already larger than any camera's
MAX_BYTES = 100 * 1024**2  # per file
MAX_PROBLEMS = 50  # listed in one error; the rest are counted
_MAX_TEXT_BYTES = 64 * 1024**2  # labels.csv, labels.txt
_HASH_FORMAT = 1
DEFAULT_CSV = "labels.csv"
LABELS_TXT = "labels.txt"

Layout = Literal["folders", "csv"]
NamesFrom = Literal["caller", "labels.txt", "folders", "csv"]


class ImageFolderError(DatasetError):
    """An image folder that cannot be used. `problems` holds every problem found, one line each
    (up to `MAX_PROBLEMS`; `more` counts the rest)."""

    def __init__(self, root: Path, problems: Sequence[str], more: int = 0) -> None:
        self.root = root
        self.problems = tuple(problems)
        self.more = more
        count = len(self.problems) + more
        lines = [f"{root}: {count} problem{'s' if count != 1 else ''} in the image folder; the set is refused "
                 "as a whole, so that no score is computed on part of it:"]
        lines += [f"  - {p}" for p in self.problems]
        if more:
            lines.append(f"  - ... and {more} more")
        super().__init__("\n".join(lines), hint="fix or remove the files listed, then run the grader again")


class ImageFolderInfo(Frozen):
    """What was loaded, without the pixels and without the labels: plain data for reports and caches.

    `sha256` is the content hash: sha256 over a canonical JSON of the format version, `size`,
    `grayscale`, `class_names` and the sorted (relative name, label, sha256 of the file) of every
    image loaded; it changes when any file, label, class name or the requested size changes, and
    not when the folder is moved, copied or re-listed.
    """

    root: str
    layout: Layout
    class_names: tuple[str, ...]
    class_names_from: NamesFrom
    files: tuple[str, ...]  # relative POSIX paths, sorted: the ids of the images, in array order
    size: tuple[int, int]  # (height, width)
    grayscale: bool
    sha256: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageFolder:
    """The images (uint8, (n, h, w, 3) RGB or (n, h, w) gray), their labels (int64, (n,)) and what
    they are (`info`)."""

    images: np.ndarray
    labels: np.ndarray
    info: ImageFolderInfo

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.info.class_names

    @property
    def files(self) -> tuple[str, ...]:
        return self.info.files

    @property
    def sha256(self) -> str:
        return self.info.sha256


# --------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------


class _Problems:
    """Problems met while scanning: set problems always fail the set; file problems fail it unless
    skipping, in which case they become warnings."""

    def __init__(self) -> None:
        self.set: list[str] = []
        self.file: list[str] = []
        self.warnings: list[str] = []

    def fail(self, root: Path) -> None:
        problems = self.set + self.file
        if problems:
            raise ImageFolderError(root, problems[:MAX_PROBLEMS], max(0, len(problems) - MAX_PROBLEMS))


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink followed, lies under `root` (already resolved)."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _read_text(path: Path, what: str, problems: _Problems) -> str | None:
    try:
        if path.stat().st_size > _MAX_TEXT_BYTES:
            problems.set.append(f"{path.name}: larger than {_MAX_TEXT_BYTES // 1024**2} MB; is it really the {what}?")
            return None
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.set.append(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "save it as UTF-8 (Excel: CSV UTF-8)")
    except OSError as exc:
        problems.set.append(f"{path.name}: cannot be read ({exc.strerror or exc}); check its permissions")
    return None


# --------------------------------------------------------------------------------------------
# Class names
# --------------------------------------------------------------------------------------------


def _labels_txt(root: Path, problems: _Problems) -> tuple[str, ...] | None:
    path = root / LABELS_TXT
    if not path.is_file():
        return None
    if not _inside(path, root):
        problems.set.append(f"{LABELS_TXT}: a symlink to a file outside {root}; put the file itself there")
        return None
    text = _read_text(path, "list of class names", problems)
    if text is None:
        return None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        problems.set.append(f"{LABELS_TXT}: no class names in it; write one class name per line, or delete it")
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.set.append(f"{LABELS_TXT}: class name {name!r} appears more than once; each class once, in label order")
    return names


def _class_names(given: Sequence[str] | None, root: Path, fallback: Sequence[str],
                 problems: _Problems) -> tuple[tuple[str, ...], NamesFrom | None]:
    """The class names and where they came from (None for the fallback, which the caller names)."""
    if given is not None:
        names = tuple(given)
        if not names:
            problems.set.append("no class names given; give the rubric's class names, or none to read them from the folder")
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.set.append(f"class name {name!r} is given more than once")
        return names, "caller"
    from_txt = _labels_txt(root, problems)
    if from_txt is not None:
        return from_txt, "labels.txt"
    return tuple(fallback), None


def _index_of(label: str, index: dict[str, int], count: int) -> int | None:
    """A label's class index: its position among the class names, else an integer index in range."""
    if label in index:
        return index[label]
    if re.fullmatch(r"[0-9]+", label) and int(label) < count:
        return int(label)
    return None


def _known(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:20])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 20 else "")


# --------------------------------------------------------------------------------------------
# Layout "folders"
# --------------------------------------------------------------------------------------------


def _scan_folders(root: Path, given: Sequence[str] | None,
                  problems: _Problems) -> tuple[list[tuple[str, int]], tuple[str, ...], NamesFrom]:
    folders: list[str] = []
    loose: list[str] = []
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith("."):  # .ipynb_checkpoints, .DS_Store, .git
                continue
            if entry.is_dir():
                if entry.is_symlink() and not _inside(Path(entry.path), root):
                    problems.set.append(f"{entry.name}/: a symlink to a folder outside {root}; "
                                        "copy the folder there instead")
                    continue
                folders.append(entry.name)
            elif _is_image_name(entry.name):
                loose.append(entry.name)
    folders.sort()
    if loose:
        problems.warnings.append(f"{len(loose)} image file{'s' if len(loose) != 1 else ''} directly in {root} "
                                 f"belong to no class folder and were ignored (first: {', '.join(sorted(loose)[:3])})")
    names, source = _class_names(given, root, folders, problems)
    index = {n: i for i, n in enumerate(names)}
    items: list[tuple[str, int]] = []
    ignored: list[str] = []
    for folder in folders:
        if folder not in index:
            problems.set.append(f"{folder}/: folder is not one of the classes ({_known(names)}); rename it to a "
                                "class name, move it out of the folder, or fix the class names")
            continue
        found = 0
        with os.scandir(root / folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = f"{folder}/{entry.name}"
                if entry.name.startswith("."):
                    continue
                if not _is_image_name(entry.name) or entry.is_dir():
                    ignored.append(rel)
                    continue
                if entry.is_symlink() and not _inside(Path(entry.path), root):
                    problems.set.append(f"{rel}: a symlink to a file outside {root}; copy the image there instead")
                    continue
                items.append((rel, index[folder]))
                found += 1
        if not found:
            problems.warnings.append(f"{folder}/: no images in the folder")
    for name in names:
        if name not in folders:
            problems.warnings.append(f"class {name!r} has no folder, so no images")
    if ignored:
        problems.warnings.append(f"{len(ignored)} entr{'ies' if len(ignored) != 1 else 'y'} in class folders "
                                 f"are not images ({', '.join(sorted(IMAGE_EXTENSIONS))}) and were ignored "
                                 f"(first: {', '.join(sorted(ignored)[:3])})")
    return items, names, source or "folders"


# --------------------------------------------------------------------------------------------
# Layout "csv"
# --------------------------------------------------------------------------------------------


def _relative(name: str) -> str | None:
    """`name` as a clean relative POSIX path, or None when it is absolute or climbs with `..`.
    A backslash counts as a separator (CSV files written on Windows)."""
    text = name.replace("\\", "/")
    if not text or text.startswith("/") or PureWindowsPath(name).drive:
        return None
    parts = [p for p in PurePosixPath(text).parts if p != "."]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def _read_rows(path: Path, problems: _Problems) -> list[tuple[int, str, str]]:
    """(line number, file name, label) of each data row of the CSV."""
    text = _read_text(path, "labels CSV", problems)
    if text is None:
        return []
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, str, str]] = []
    try:
        for fields in reader:
            if not any(f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip().lower() for f in fields]
                missing = [c for c in ("filename", "label") if c not in header]
                if missing:
                    problems.set.append(f"{path.name}:{reader.line_num}: no column {' or '.join(missing)} in the header "
                                        f"(found: {', '.join(repr(f) for f in fields)}); the first line must name "
                                        "the columns filename and label")
                    return []
                file_col, label_col = header.index("filename"), header.index("label")
                continue
            if len(fields) <= max(file_col, label_col):
                problems.set.append(f"{path.name}:{reader.line_num}: {len(fields)} field{'s' if len(fields) != 1 else ''}, "
                                    f"the header has {len(header)}; give a file name and a label on each line")
                continue
            rows.append((reader.line_num, fields[file_col].strip(), fields[label_col].strip()))
    except csv.Error as exc:
        problems.set.append(f"{path.name}:{reader.line_num}: not a valid CSV ({exc}); check the quotes on that line")
    if header is None:
        problems.set.append(f"{path.name}: empty; the first line must name the columns filename and label")
    return rows


def _unlisted(root: Path, listed: set[str], skip: set[str]) -> list[str]:
    """Image files under `root` (not following symlinks, skipping hidden folders) that the CSV
    does not list."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder).relative_to(root).as_posix()
        for name in files:
            rel = name if base == "." else f"{base}/{name}"
            if _is_image_name(name) and not name.startswith(".") and rel not in listed and rel not in skip:
                out.append(rel)
    return sorted(out)


def _scan_csv(root: Path, csv_path: Path, given: Sequence[str] | None,
              problems: _Problems) -> tuple[list[tuple[str, int]], tuple[str, ...], NamesFrom]:
    rows = _read_rows(csv_path, problems)
    labels = [label for _, _, label in rows]
    if labels and all(re.fullmatch(r"[0-9]+", lab) for lab in labels):
        fallback = tuple(str(i) for i in range(max(int(lab) for lab in labels) + 1))
    else:
        fallback = tuple(sorted(set(labels)))
    names, source = _class_names(given, root, fallback, problems)
    index = {n: i for i, n in enumerate(names)}
    seen: dict[str, int] = {}
    items: list[tuple[str, int]] = []
    where = csv_path.name
    for line, name, label in rows:
        rel = _relative(name)
        if rel is None:
            problems.set.append(f"{where}:{line}: {name!r} is not a path inside {root} (absolute, empty or with '..'); "
                                "give file names relative to the folder that holds the CSV")
            continue
        if rel in seen:
            problems.set.append(f"{where}:{line}: {rel} is listed again (first on line {seen[rel]}); "
                                "list each image once")
            continue
        seen[rel] = line
        cls = _index_of(label, index, len(names))
        if cls is None:
            problems.set.append(f"{where}:{line}: label {label!r} of {rel} is neither a class ({_known(names)}) "
                                f"nor an index 0..{len(names) - 1}; fix the label or the class names")
            continue
        path = root / rel
        if not _inside(path, root):
            problems.set.append(f"{where}:{line}: {rel} is a symlink to a file outside {root}; "
                                "copy the image there instead")
            continue
        if not path.is_file():
            problems.file.append(f"{where}:{line}: {rel} does not exist under {root}; add the file or delete the row")
            continue
        items.append((rel, cls))
    present = set(labels)
    for i, n in enumerate(names):
        if n not in present and str(i) not in present:
            problems.warnings.append(f"class {n!r} has no rows in {where}, so no images")
    extra = _unlisted(root, set(seen), {csv_path.name})
    if extra:
        problems.warnings.append(f"{len(extra)} image file{'s' if len(extra) != 1 else ''} under {root} are not "
                                 f"listed in {where} and were ignored (first: {', '.join(extra[:3])})")
    return items, names, source or "csv"


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Decoded:
    pixels: np.ndarray | None
    sha256: str
    problem: str | None = None
    warning: str | None = None


def _decode(path: Path, rel: str, size: tuple[int, int], mode: str, max_pixels: int, max_bytes: int) -> _Decoded:
    """One image, read once (the bytes that are hashed are the bytes that are decoded)."""
    try:
        length = path.stat().st_size
        if length == 0:
            return _Decoded(None, "", f"{rel}: empty file (0 bytes); replace it with the image, or delete it")
        if length > max_bytes:
            return _Decoded(None, "", f"{rel}: {length / 1024**2:.0f} MB, more than the {max_bytes // 1024**2} MB "
                                      "allowed for one image; resize it or delete it")
        data = path.read_bytes()
    except OSError as exc:
        return _Decoded(None, "", f"{rel}: cannot be read ({exc.strerror or exc}); check its permissions")
    digest = hashlib.sha256(data).hexdigest()
    warning = None
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                return _Decoded(None, digest, f"{rel}: {width}×{height} pixels ({width * height / 1e6:.0f} MP), more than "
                                              f"the {max_pixels / 1e6:g} MP allowed (a decompression bomb?); "
                                              "resize it or delete it")
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception as exc:  # noqa: BLE001 - a damaged EXIF block; the pixels may still be fine
                upright, warning = im, f"{rel}: EXIF orientation unreadable ({type(exc).__name__}); used as stored"
            converted = upright.convert(mode)
            if converted.size != (size[1], size[0]):
                converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(converted, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _Decoded(None, digest, f"{rel}: refused by Pillow as a decompression bomb ({exc}); "
                                      "resize it or delete it")
    except Image.UnidentifiedImageError:
        return _Decoded(None, digest, f"{rel}: not a {'/'.join(_FORMATS)} image (Pillow cannot identify it); "
                                      "replace it with an image in one of these formats, or delete it")
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem
        text = " ".join(str(exc).split())[:200]
        return _Decoded(None, digest, f"{rel}: cannot be read as an image ({type(exc).__name__}: {text}); "
                                      f"replace it with a {'/'.join(sorted(IMAGE_EXTENSIONS))} image, or delete it")
    return _Decoded(pixels, digest, warning=warning)


def _content_hash(items: Sequence[tuple[str, int, str]], names: Sequence[str], size: tuple[int, int],
                  grayscale: bool) -> str:
    doc = {"format": _HASH_FORMAT, "size": list(size), "grayscale": grayscale, "class_names": list(names),
           "files": [list(item) for item in sorted(items)]}
    return hashlib.sha256(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_image_folder(
    root: str | Path,
    *,
    size: tuple[int, int],
    class_names: Sequence[str] | None = None,
    grayscale: bool = False,
    csv_name: str | None = None,
    on_error: Literal["raise", "skip"] = "raise",
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
    workers: int | None = None,
) -> ImageFolder:
    """Load the image folder at `root` (see the module docstring for layouts and rules).

    `size` is (height, width) of the returned images. `class_names` (the rubric's) fix the label
    order; without them they come from ``labels.txt``, else the folder. `csv_name` names the CSV
    of the csv layout (default: ``labels.csv`` when the root has one; a name given must exist).
    `on_error` is ``"raise"`` (any problem fails the whole set; use it for hidden sets) or
    ``"skip"`` (unreadable, empty, oversized and missing files are left out, with warnings).
    Decoding runs in `workers` threads (default: up to 8); the result does not depend on it.
    Raises `ImageFolderError` (a `DatasetError`) listing every problem found.
    """
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (height, width) with both at least 1; got {size!r}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
    given = Path(root)
    if not given.is_dir():
        raise ImageFolderError(given, [f"{given} does not exist or is not a folder; give the folder that holds "
                                       "the class folders (or labels.csv)"])
    base = given.resolve()
    problems = _Problems()
    layout: Layout
    if csv_name is not None:
        rel_csv = _relative(csv_name)
        csv_path = base / (rel_csv or "")
        if rel_csv is None or not _inside(csv_path, base):
            raise ImageFolderError(given, [f"CSV {csv_name!r} is not a file name inside {given}"])
        if not csv_path.is_file():
            raise ImageFolderError(given, [f"{csv_name} not found in {given}; give the CSV that lists filename,label"])
        layout = "csv"
    else:
        csv_path = base / DEFAULT_CSV
        layout = "csv" if csv_path.is_file() else "folders"
    if layout == "csv":
        if not _inside(csv_path, base):
            raise ImageFolderError(given, [f"{csv_path.name}: a symlink to a file outside {given}; put the file itself there"])
        items, names, source = _scan_csv(base, csv_path, class_names, problems)
    else:
        items, names, source = _scan_folders(base, class_names, problems)
    if not items and not problems.set and not problems.file:
        problems.set.append(f"no images found ({', '.join(sorted(IMAGE_EXTENSIONS))}); put them in one folder per class, "
                            f"or list them in {DEFAULT_CSV} with the columns filename,label")

    items.sort()
    mode = "L" if grayscale else "RGB"
    hw = (int(size[0]), int(size[1]))
    shape = (len(items), *hw) if grayscale else (len(items), *hw, 3)
    images = np.zeros(shape, dtype=np.uint8)
    digests: list[str] = []
    keep: list[int] = []
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda item: _decode(base / item[0], item[0], hw, mode, max_pixels, max_bytes), items)
        for i, result in enumerate(results):  # in file order, whatever order the threads finish in
            digests.append(result.sha256)
            if result.warning:
                problems.warnings.append(result.warning)
            if result.problem:
                problems.file.append(result.problem)
            else:
                images[i] = result.pixels
                keep.append(i)
    if problems.set or on_error == "raise":  # after decoding, so that one run names every broken file
        problems.fail(given)
    problems.warnings.extend(f"skipped: {p}" for p in problems.file)
    if not keep:
        problems.set.append("no image could be read; every file was skipped")
        problems.fail(given)
    if len(keep) < len(items):
        images = images[keep]
    labels = np.array([items[i][1] for i in keep], dtype=np.int64)
    files = tuple(items[i][0] for i in keep)
    digest = _content_hash([(items[i][0], items[i][1], digests[i]) for i in keep], names, hw, grayscale)
    info = ImageFolderInfo(root=str(given), layout=layout, class_names=names, class_names_from=source, files=files,
                           size=hw, grayscale=grayscale, sha256=digest, warnings=tuple(problems.warnings))
    return ImageFolder(images=images, labels=labels, info=info)

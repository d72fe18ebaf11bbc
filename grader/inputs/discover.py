"""Finding submissions and the files in them.

`submissions/` holds one folder per student (the folder name is the student id). A folder that
holds model or notebook files directly is taken as ONE student's submission, so
``grade path/to/one-student`` works too. Models inside a `.zip` (one level) are found as well.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from grader.records.frozen import Frozen
from grader.errors import GraderError
from grader.records.evidence import FileInfo, FileKind

MODEL_SUFFIXES = (".h5", ".hdf5", ".keras", ".tflite")
_KINDS: dict[str, FileKind] = {".h5": "model", ".hdf5": "model", ".keras": "model", ".tflite": "model", ".ipynb": "notebook",
                                ".csv": "csv", ".zip": "archive"}
_SKIP_DIRS = {".git", ".ipynb_checkpoints", "__MACOSX", "__pycache__", ".venv", "venv", "node_modules", ".github"}
MAX_FILES = 5000
MAX_MEMBER_BYTES = 4 * 1024**3  # a zip member declaring more than this is not extracted
MAX_RATIO = 200  # nor one whose compression ratio looks like a zip bomb


class Submission(Frozen):
    student: str
    root: str


@dataclass(frozen=True)
class SubmissionFile:
    """A file of a submission: `label` is what reports show, `real` where the bytes are."""

    label: str
    real: Path
    kind: FileKind
    size: int

    def info(self) -> FileInfo:
        return FileInfo(path=self.label, size_bytes=self.size, kind=self.kind)


def kind_of(name: str) -> FileKind:
    return _KINDS.get(Path(name).suffix.lower(), "other")


def _is_submission_folder(path: Path) -> bool:
    try:
        return any(entry.is_file() and kind_of(entry.name) in ("model", "notebook", "archive") for entry in path.iterdir())
    except OSError:
        return False


def discover(path: str | Path, only: list[str] | None = None, single: bool = False) -> list[Submission]:
    """The submissions under `path`, sorted by student id; `only` restricts to those ids. `path` is
    one submission when `single` is set (a student's repository, whatever its layout) or when it
    holds a model, notebook or archive itself; otherwise each sub-folder is one."""
    root = Path(path)
    if not root.exists():
        raise GraderError(f"{root}: no such folder", hint="give the folder that holds one sub-folder per student")
    if not root.is_dir():
        raise GraderError(f"{root}: not a folder", hint="give the folder that holds one sub-folder per student")
    if single or _is_submission_folder(root):
        found = [Submission(student=root.resolve().name, root=str(root.resolve()))]
    else:
        found = [
            Submission(student=entry.name, root=str(entry.resolve()))
            for entry in sorted(root.iterdir(), key=lambda e: e.name)
            if entry.is_dir() and not entry.is_symlink() and not entry.name.startswith((".", "_"))
        ]
    if only:
        known = [s.student for s in found]
        missing = [name for name in only if name not in known]
        if missing:
            hints = []
            for name in missing:
                close = difflib.get_close_matches(name, known, n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise GraderError(f"--only: no submission {', '.join(hints)} in {root}", hint=f"known: {', '.join(known)}")
        found = [s for s in found if s.student in only]
    return found


def list_files(submission: Submission) -> tuple[list[SubmissionFile], list[str]]:
    """Every regular file of a submission (symbolic links are skipped, with a warning)."""
    root = Path(submission.root)
    files: list[SubmissionFile] = []
    warnings: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            real = Path(dirpath) / name
            label = real.relative_to(root).as_posix()
            info = real.lstat()
            if stat.S_ISLNK(info.st_mode):
                warnings.append(f"{label}: symbolic link skipped")
                continue
            if not stat.S_ISREG(info.st_mode) or name.startswith("."):
                continue
            files.append(SubmissionFile(label, real, kind_of(name), info.st_size))
            if len(files) >= MAX_FILES:
                warnings.append(f"more than {MAX_FILES} files; the rest were not looked at")
                return files, warnings
    return files, warnings


def extract_models(archive: SubmissionFile, dest: Path) -> tuple[list[SubmissionFile], list[str]]:
    """Extract the model, notebook and CSV members of a zip (one level) into `dest`.

    Member names are never used as paths on disk (a name like ``../../x`` cannot escape): each
    member is written to a fresh numbered file. Oversized members and zip bombs are skipped.
    """
    out: list[SubmissionFile] = []
    warnings: list[str] = []
    try:
        with zipfile.ZipFile(archive.real) as zf:
            for i, member in enumerate(zf.infolist()):
                name = member.filename
                base = name.rsplit("/", 1)[-1]
                kind = kind_of(base)
                if member.is_dir() or kind not in ("model", "notebook", "csv") or name.startswith("__MACOSX/"):
                    continue
                if member.file_size > MAX_MEMBER_BYTES or (
                    member.compress_size and member.file_size / member.compress_size > MAX_RATIO and member.file_size > 2**24
                ):
                    warnings.append(f"{archive.label}!{name}: skipped, it declares {member.file_size:,} bytes")
                    continue
                dest.mkdir(parents=True, exist_ok=True)
                target = dest / f"{i:04d}{Path(base).suffix.lower()}"
                with zf.open(member) as src, open(target, "wb") as dst:
                    copied = 0
                    while chunk := src.read(1 << 20):
                        copied += len(chunk)
                        if copied > member.file_size:
                            raise zipfile.BadZipFile(f"member {name} is longer than it declares")
                        dst.write(chunk)
                out.append(SubmissionFile(f"{archive.label}!{name}", target, kind, copied))
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        warnings.append(f"{archive.label}: cannot open the zip: {exc}")
    return out, warnings


def content_hash(files: list[SubmissionFile]) -> str:
    """sha256 over every file's label and bytes: the submission's identity for the evidence cache."""
    digest = hashlib.sha256()
    for f in sorted(files, key=lambda f: f.label):
        digest.update(f.label.encode() + b"\0")
        digest.update(file_sha256(f.real).encode())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()

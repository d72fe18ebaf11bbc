"""Encrypted hidden-test bundles, for grading where students can read the repository (GitHub Classroom).

A bundle is a tar of the hidden-test folder encrypted with Fernet (AES-128-CBC and HMAC-SHA256,
from `cryptography`). The key lives in a secret (an organisation secret ``GRADER_HIDDEN_KEY``); the
bundle can sit anywhere public (a release asset, the course repository). Only the grading step
decrypts it, into a private folder of the grader's own run that the student-code sandbox never sees;
the label files themselves go to memory only (`open_bundle(memory=...)`), and the run's folder is
removed even when the run is killed (grader.inputs.runfolder).

    grade bundle hidden_tests/fashion-mnist -o hidden.bundle     # prints a new key (or uses $GRADER_HIDDEN_KEY)
    GRADER_HIDDEN_KEY=... grade sub/ --assignment hw10 --hidden-tests hidden.bundle

What this does not protect against is written in docs/classroom.md: a student who can edit the
workflow that receives the key can print it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
from pathlib import Path

from grader.errors import GraderError

KEY_ENV = "GRADER_HIDDEN_KEY"
MAGIC = b"GRADER-BUNDLE-1\n"
MAX_BUNDLE_BYTES = 2 * 1024**3
LABELS_MAGIC = (2049).to_bytes(4, "big")  # an IDX labels file (grader.inputs.datasets.LABELS_MAGIC)


class BundleError(GraderError):
    pass


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def make_bundle(folder: Path, key: str) -> bytes:
    """Encrypt every regular file under `folder` (relative names, no links) into a bundle."""
    from cryptography.fernet import Fernet

    if not folder.is_dir():
        raise BundleError(f"{folder}: not a folder", hint="give the folder that holds the hidden test files")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return MAGIC + Fernet(_key_bytes(key)).encrypt(buffer.getvalue())


def is_bundle(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _is_labels_file(data: bytes) -> bool:
    """Whether a member is an IDX labels file (magic 2049), gzipped or not: the hidden labels."""
    head = data[:4]
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
                head = fh.read(4)
        except (OSError, EOFError):
            return False
    return head == LABELS_MAGIC


def _in_memory(name: str, data: bytes, memory: contextlib.ExitStack) -> str:
    """`data` in an anonymous memory file (memfd) that lives as long as this process holds it
    (`memory` closes it) and never touches a disk; the path that reads it in this process."""
    fd = os.memfd_create(f"grader-{Path(name).name}", getattr(os, "MFD_CLOEXEC", 0))
    memory.callback(os.close, fd)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return f"/proc/{os.getpid()}/fd/{fd}"


def open_bundle(path: Path, key: str | None, dest: Path, *, memory: contextlib.ExitStack | None = None) -> Path:
    """Decrypt `path` into `dest` (created private, 0700) and return it.

    With `memory` (and on Linux), the label files (IDX labels) are never written in the clear: each
    is kept in an anonymous memory file that `memory` closes, and `dest` holds only a link to it that
    this process can read. The memory goes when the process does, kill -9 included; the rest of
    `dest` is removed by the run (grader.inputs.runfolder). Without `memory`, every file is written to `dest`."""
    from cryptography.fernet import Fernet, InvalidToken

    if not key:
        raise BundleError(f"{path} is an encrypted hidden-test bundle, but no key was given",
                          hint=f"set ${KEY_ENV} (in GitHub Actions: from an organisation secret)")
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: larger than {MAX_BUNDLE_BYTES // 1024**3} GB; not a bundle this grader made")
    data = path.read_bytes()
    try:
        plain = Fernet(_key_bytes(key)).decrypt(data[len(MAGIC):])
    except InvalidToken:
        raise BundleError(f"{path}: the key does not open this bundle (wrong key, or the file was changed)",
                          hint=f"check ${KEY_ENV}; make the bundle again with `grade bundle` if the key was lost") from None
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    del data
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:gz") as tar:
        if memory is None or not hasattr(os, "memfd_create"):
            tar.extractall(dest, filter="data")  # no absolute paths, no '..', no links out, no devices
            return dest
        for member in tar.getmembers():
            member = tarfile.data_filter(member, str(dest))  # the same rules as extractall(filter="data")
            fh = tar.extractfile(member) if member.isfile() else None
            content = fh.read() if fh is not None else None
            if content is not None and _is_labels_file(content):
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(_in_memory(member.name, content, memory), target)
            else:
                tar.extract(member, dest, filter="data")
    return dest


def _key_bytes(key: str) -> bytes:
    key = key.strip()
    try:
        from cryptography.fernet import Fernet

        Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BundleError(f"${KEY_ENV} is not a bundle key (44 characters of URL-safe base64)",
                          hint="use the key `grade bundle` printed") from None
    return key.encode("ascii")

"""The one channel a sandbox answers on: frames over a pipe that only the grader's own program inside
the sandbox holds.

A sandbox's writable places are size-capped tmpfs mounts that vanish with it, so nothing it writes
reaches the host's disk; what the grader needs back (the zygote's answer and the files a worker
wrote, the notebook runner's cell records, result and the model files a notebook wrote) travels as
frames on this pipe. The program holding the write end is PID 1 of the sandbox and not dumpable, so
the student's processes (same uid, no capabilities) can neither open it through ``/proc/1/fd`` nor
signal that program; the write end is never inherited by them.

A frame is ``kind`` (one byte), ``length`` (8 bytes, little-endian) and ``length`` bytes. Kinds:
``J``: one JSON document; ``F``: a file, its payload being a 2-byte name length, the name (a plain
file name, no folder) and the content. The reader trusts nothing: every length is capped, names are
checked, and a torn or oversized stream ends the reading with what came before it.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

_HEADER = struct.Struct("<cQ")
_NAME = struct.Struct("<H")
MAX_JSON_BYTES = 64 * 1024**2
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
_CHUNK = 1024**2


class ChannelError(Exception):
    """The stream broke a rule (an oversized frame, an unsafe name, a torn frame)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def send_json(fd: int, document: Any) -> None:
    data = json.dumps(document, separators=(",", ":")).encode()
    _write_all(fd, _HEADER.pack(b"J", len(data)) + data)


def send_file(fd: int, name: str, path: Path) -> None:
    """`path`'s content as file `name` (read in chunks: a model file can be large)."""
    encoded = name.encode()
    size = path.stat().st_size
    _write_all(fd, _HEADER.pack(b"F", _NAME.size + len(encoded) + size) + _NAME.pack(len(encoded)) + encoded)
    with open(path, "rb") as fh:
        left = size
        while left > 0:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:  # the file shrank while being sent: pad, the frame's length is already promised
                chunk = b"\0" * min(_CHUNK, left)
            _write_all(fd, chunk)
            left -= len(chunk)


class Frame:
    """One frame read: a JSON document (`document`) or a file saved under the reader's folder (`path`)."""

    def __init__(self, kind: str, document: Any = None, name: str = "", path: Path | None = None, size: int = 0) -> None:
        self.kind, self.document, self.name, self.path, self.size = kind, document, name, path, size


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise ChannelError("the stream ended inside a frame")
    return data


def read_frames(stream: BinaryIO, files_dir: Path, *, max_file_bytes: int, max_total_bytes: int,
                max_json_bytes: int = MAX_JSON_BYTES) -> Iterator[Frame]:
    """Frames from `stream` until it ends; files are written into `files_dir` (created when needed).
    Raises ChannelError on a frame that breaks the rules (what was read before it was already given)."""
    total = 0
    while True:
        head = stream.read(_HEADER.size)
        if not head:
            return
        if len(head) != _HEADER.size:
            raise ChannelError("the stream ended inside a frame header")
        kind, length = _HEADER.unpack(head)
        total += length
        if total > max_total_bytes:
            raise ChannelError(f"more than {max_total_bytes} bytes were sent back")
        if kind == b"J":
            if length > max_json_bytes:
                raise ChannelError(f"a record of {length} bytes (at most {max_json_bytes})")
            try:
                yield Frame("json", document=json.loads(_read_exact(stream, length)))
            except ValueError as exc:
                raise ChannelError(f"a record that is not JSON: {exc}") from None
        elif kind == b"F":
            (name_len,) = _NAME.unpack(_read_exact(stream, _NAME.size))
            name = _read_exact(stream, name_len).decode("utf-8", "replace")
            size = length - _NAME.size - name_len
            if not _SAFE_NAME.match(name) or size < 0:
                raise ChannelError(f"a file with an unsafe name: {name[:80]!r}")
            if size > max_file_bytes:
                raise ChannelError(f"a file of {size} bytes (at most {max_file_bytes})")
            files_dir.mkdir(parents=True, exist_ok=True)
            target = files_dir / name
            with open(target, "wb") as out:
                left = size
                while left > 0:
                    out.write(_read_exact(stream, min(_CHUNK, left)))
                    left -= min(_CHUNK, left)
            yield Frame("file", name=name, path=target, size=size)
        else:
            raise ChannelError(f"an unknown frame kind {kind!r}")


FULL_MARGIN = 1024**2  # a writable place with less than this left counts as filled


def space_filled(folders: tuple[str, ...]) -> bool:
    """Whether any of a sandbox's writable places (size-capped tmpfs mounts) is full: the answer then
    says so, and the student is told they wrote more than the limit."""
    for folder in folders:
        try:
            info = os.statvfs(folder)
        except OSError:
            continue
        if info.f_bavail * info.f_frsize < FULL_MARGIN:
            return True
    return False

"""Writing a file whole or not at all, and saying whose fault it is when the disk refuses.

`write_atomic` writes to a temporary file beside the target and renames it over the target, so a
reader never sees half a file; on ANY error (a full disk, Ctrl-C) the temporary file is removed
before the error goes on. `write_fault` turns the OSError of a write into a GraderFault: a full disk
or a folder that cannot be written is the machine's problem, never a student's and never an
"internal error" (exit 1, one line with the fix).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

from grader.errors import GraderFault

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a temporary file in the same folder. The file
    gets the usual permissions (the umask's), not a private temp file's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_fault(exc: OSError, folder: Path, what: str) -> GraderFault:
    """The GraderFault for an OSError met while writing `what` (e.g. "the reports") into `folder`."""
    if exc.errno in _NO_SPACE:
        return GraderFault(f"no space left on the disk of {folder} while writing {what}",
                           hint=f"free space on the disk that holds {folder}, or pass --out DIR on another disk")
    reason = exc.strerror or str(exc)
    return GraderFault(f"cannot write {what} in {folder}: {reason}" + (f" ({exc.filename})" if exc.filename else ""),
                       hint=f"make {folder} writable, or pass --out DIR with a folder you can write")

"""Evidence cache: one JSON file per submission, keyed by what the evidence depends on.

The key is the content hash of the submission, the hidden test set's hash, the grader version and
the evaluation settings. Rubric points, thresholds and messages are NOT in the key, so editing them
and grading again re-judges in seconds. Each entry is written atomically as soon as a submission
is gathered, so a run stopped by Ctrl-C or kill -9 resumes where it stopped.

An entry's file name holds the full sha256 of the exact student id (after a readable part), so two
students whose ids look alike ("lee chen", "lee_chen", "Lee_Chen") and who handed in the same files
never share an entry; and an entry is only used for the student it was written for.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pydantic import ValidationError

from grader.atomic import write_atomic, write_fault
from grader.records.evidence import Evidence


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class EvidenceCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _path(self, student: str, key: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / f"{entry_stem(student)}-{key}.json"

    def get(self, student: str, key: str) -> Evidence | None:
        path = self._path(student, key)
        if path is None or not path.exists():
            return None
        try:
            evidence = Evidence.model_validate_json(path.read_bytes())
        except (ValidationError, OSError, ValueError):
            return None  # a damaged entry is just a miss
        return evidence if evidence.student == student else None  # never another student's evidence

    def put(self, student: str, key: str, evidence: Evidence) -> None:
        """Keep `evidence`; a disk that refuses it is a GraderFault (exit 1) naming the folder."""
        path = self._path(student, key)
        if path is None:
            return
        try:
            write_atomic(path, evidence.model_dump_json())
        except OSError as exc:
            assert self.directory is not None
            raise write_fault(exc, self.directory, "the evidence cache") from None


def entry_stem(student: str) -> str:
    """The start of a student's cache file names: a readable part, then the sha256 of the exact id
    (one-to-one, also on a case-insensitive file system)."""
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", student)[:40]
    return f"{readable}--{hashlib.sha256(student.encode('utf-8', 'surrogatepass')).hexdigest()}"

"""Evidence cache: one JSON file per submission, keyed by what the evidence depends on.

The key is the content hash of the submission, the hidden test set's hash, the grader version and
the evaluation settings. Rubric points, thresholds and messages are NOT in the key, so editing them
and grading again re-judges in seconds. Each entry is written atomically as soon as a submission
is gathered, so a run stopped by Ctrl-C or kill -9 resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import ValidationError

from grader.evidence import Evidence


def cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class EvidenceCache:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory

    def _path(self, student: str, key: str) -> Path | None:
        if self.directory is None:
            return None
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in student)[:80]
        return self.directory / f"{safe}-{key}.json"

    def get(self, student: str, key: str) -> Evidence | None:
        path = self._path(student, key)
        if path is None or not path.exists():
            return None
        try:
            return Evidence.model_validate_json(path.read_bytes())
        except (ValidationError, OSError, ValueError):
            return None  # a damaged entry is just a miss

    def put(self, student: str, key: str, evidence: Evidence) -> None:
        path = self._path(student, key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(evidence.model_dump_json())
        os.replace(tmp, path)

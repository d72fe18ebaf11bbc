"""Kaggle submission lists, as `kaggle competitions submissions -c NAME --csv` prints them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from grader.records.evidence import KaggleEvidence, KaggleSubmission

_COLUMNS = ("fileName", "date", "description", "status", "publicScore", "privateScore")
MAX_BYTES = 5 * 1024**2


def _score(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "None") else None
    except ValueError:
        return None


def looks_like_kaggle(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    names = {h.strip() for h in header.split(",")}
    return {"fileName", "date"} <= names


def read_kaggle(path: Path, label: str) -> KaggleEvidence:
    try:
        if path.stat().st_size > MAX_BYTES:
            return KaggleEvidence(path=label, error="file too large for a submission list")
        text = path.read_text(encoding="utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return KaggleEvidence(path=label, error=str(exc))
    subs = []
    for row in rows:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        subs.append(KaggleSubmission(
            file_name=(row.get("fileName") or "").strip(),
            date=(row.get("date") or "").strip(),
            description=(row.get("description") or "").strip(),
            status=(row.get("status") or "").strip(),
            public_score=_score(row.get("publicScore")),
            private_score=_score(row.get("privateScore")),
        ))
    return KaggleEvidence(path=label, submissions=tuple(subs))

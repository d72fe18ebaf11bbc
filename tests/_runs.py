"""Helpers for tests that run the `grade` command in a subprocess, stop it, and run it again."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def assert_resumes(cmd: list[str], out: Path, first: int, total: int, **run: Any) -> None:
    """Run `cmd` again after an interrupted run that had cached `first` submissions: it finishes,
    takes at least those from the cache, gathers only the rest, and reports all `total`."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **run)
    assert done.returncode == 0, done.stderr
    match = re.search(r"\((\d+) gathered, (\d+) from cache\)", done.stdout)
    assert match, done.stdout
    gathered, from_cache = map(int, match.groups())
    assert from_cache >= first >= 1 and gathered + from_cache == total
    assert len(json.loads((out / "results.json").read_text())["students"]) == total

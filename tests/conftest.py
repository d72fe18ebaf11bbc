"""Shared fixtures. The real Fashion-MNIST files are found through $GRADER_TEST_DATA, with the
development checkout's ../shared/data/fashion-mnist as the default (tests only; library code never
names a machine path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_DEV_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    path = Path(os.environ.get("GRADER_TEST_DATA", _DEV_DEFAULT))
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"Fashion-MNIST files not found in {path}; set GRADER_TEST_DATA to the folder that holds them")
    return path

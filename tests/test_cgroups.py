"""The per-sandbox task cap (grader.sandbox.cgroups): a real pids cgroup, made where the machine lets the
grader make one (as root here: the tests make a hierarchy of their own when none is mounted)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from grader.sandbox import cgroups
from tests.test_hostile_class import _pids_hierarchy


def test_a_sandbox_cgroup_caps_tasks_counts_refusals_and_goes_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _pids_hierarchy(tmp_path, 200) as parent:
        monkeypatch.setenv(cgroups.ENV, str(parent))
        cgroups.find_parent.cache_clear()
        try:
            assert cgroups.find_parent() == parent and "capped by a pids cgroup" in cgroups.status_note()
            with cgroups.task_cap(8) as cap:
                assert cap.folder is not None and cap.folder.parent == parent and cap.refused() == 0
                done = subprocess.run([*cap.prefix(), "/bin/sh", "-c", "for i in $(seq 20); do sleep 2 & done; wait"],
                                      capture_output=True, text=True, timeout=60)
                assert cap.refused() > 0, done.stderr  # the 9th task was refused
                folder = cap.folder
            assert not folder.exists()  # removed, with whatever was still in it
        finally:
            cgroups.find_parent.cache_clear()


def test_cgroups_of_graders_that_are_gone_are_swept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _pids_hierarchy(tmp_path, 200) as parent:
        dead = parent / "grader-999999999-abcd"  # no such pid
        alive = parent / f"grader-{os.getpid()}-abcd"
        dead.mkdir()
        alive.mkdir()
        monkeypatch.setenv(cgroups.ENV, str(parent))
        cgroups.find_parent.cache_clear()
        try:
            cgroups.find_parent()
            assert not dead.exists() and alive.exists()
        finally:
            alive.rmdir()
            cgroups.find_parent.cache_clear()


def test_without_a_pids_cgroup_the_run_says_tasks_are_not_capped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cgroups.ENV, str(tmp_path / "nowhere"))
    cgroups.find_parent.cache_clear()
    try:
        assert "not capped" in cgroups.status_note()
        with cgroups.task_cap(8) as cap:
            assert cap.prefix() == [] and cap.refused() == 0
    finally:
        cgroups.find_parent.cache_clear()

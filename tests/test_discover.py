from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from grader.inputs.discover import content_hash, discover, extract_models, list_files
from grader.errors import GraderError
from grader.facts.kaggle import looks_like_kaggle, read_kaggle
from grader.facts.notebooks import read_notebook


def make_class(root: Path) -> Path:
    for student, files in {"alice": ["cnn.keras", "hw10.ipynb"], "bob": ["m.h5"], "erin": []}.items():
        d = root / student
        d.mkdir(parents=True)
        for f in files:
            (d / f).write_bytes(b"x")
    (root / ".git").mkdir()
    (root / "_private").mkdir()
    return root


def test_one_folder_per_student_sorted_and_hidden_folders_skipped(tmp_path: Path) -> None:
    subs = discover(make_class(tmp_path))
    assert [s.student for s in subs] == ["alice", "bob", "erin"]


def test_a_single_student_folder_is_one_submission(tmp_path: Path) -> None:
    make_class(tmp_path)
    subs = discover(tmp_path / "alice")
    assert [s.student for s in subs] == ["alice"]


def test_only_filters_and_unknown_name_suggests(tmp_path: Path) -> None:
    make_class(tmp_path)
    assert [s.student for s in discover(tmp_path, ["bob"])] == ["bob"]
    with pytest.raises(GraderError, match="did you mean 'alice'"):
        discover(tmp_path, ["alcie"])
    with pytest.raises(GraderError, match="no such folder"):
        discover(tmp_path / "nope")


def test_symlinks_are_skipped_with_a_warning(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "model.h5").write_bytes(b"1")
    os.symlink("/etc/passwd", d / "passwd.h5")
    files, warnings = list_files(discover(d)[0])
    assert [f.label for f in files] == ["model.h5"]
    assert any("symbolic link" in w for w in warnings)


def test_zip_members_are_extracted_under_fresh_names(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    with zipfile.ZipFile(d / "models.zip", "w") as zf:
        zf.writestr("models/cnn.keras", b"payload")
        zf.writestr("../../escape.h5", b"evil")
        zf.writestr("readme.txt", b"ignored")
    files, _ = list_files(discover(d)[0])
    out, warnings = extract_models(files[0], tmp_path / "x")
    assert sorted(f.label for f in out) == ["models.zip!../../escape.h5", "models.zip!models/cnn.keras"]
    assert all(f.real.parent == tmp_path / "x" for f in out)
    assert not (tmp_path / "escape.h5").exists() and not warnings


def test_content_hash_changes_with_content(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir()
    (d / "m.h5").write_bytes(b"1")
    sub = discover(d)[0]
    first = content_hash(list_files(sub)[0])
    (d / "m.h5").write_bytes(b"2")
    assert content_hash(list_files(sub)[0]) != first


def test_notebook_calls_found_by_ast_not_text(tmp_path: Path) -> None:
    nb = {"cells": [
        {"cell_type": "markdown", "source": "We use VGG16(weights='imagenet')"},
        {"cell_type": "code", "source": ["!pip install x\n", "from tensorflow.keras.applications import VGG16\n",
                                          "# VGG16(weights=None)\n", "base = VGG16(weights='imagenet', include_top=False)\n"]},
        {"cell_type": "code", "source": "m = keras.applications.ResNet50(weights=None)\nn = VGG16(include_top=False)"},
    ], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(nb))
    ev = read_notebook(path, "a.ipynb")
    assert [(c.name, c.weights) for c in ev.app_calls] == [("VGG16", "imagenet"), ("ResNet50", None), ("VGG16", "imagenet")]
    assert "tensorflow.keras.applications" in ev.imports and ev.code_cells == 2


def test_broken_notebook_is_evidence_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "b.ipynb"
    path.write_text('{"cells": [')
    assert "invalid JSON" in (read_notebook(path, "b.ipynb").error or "")


def test_kaggle_csv_as_the_cli_prints_it(tmp_path: Path) -> None:
    path = tmp_path / "kaggle_submissions.csv"
    path.write_text("\ufefffileName,date,description,status,publicScore,privateScore\n"
                    "sub1.csv,2026-03-01 10:00:00,own cnn,complete,0.61,\nsub2.csv,2026-03-02 11:00:00,vgg16,complete,0.79,0.78\n")
    assert looks_like_kaggle(path)
    ev = read_kaggle(path, "kaggle_submissions.csv")
    assert [s.public_score for s in ev.submissions] == [0.61, 0.79] and ev.submissions[1].private_score == 0.78

"""Rubric validation: the real rubrics load, and every kind of mistake is named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from grader.judging.checks import check_names, get_check
from grader.errors import RubricError
from grader.inputs.rubric import load_rubric, parse_rubric

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["hw9", "hw10"])
def test_real_rubrics_load(name: str) -> None:
    rubric = load_rubric(ROOT / "rubrics" / f"{name}.yaml")
    assert rubric.assignment == name and rubric.max_points > 0
    assert len({c.id for c in rubric.criteria}) == len(rubric.criteria)


def test_hw10_expresses_the_assignment() -> None:
    rubric = load_rubric(ROOT / "rubrics" / "hw10.yaml")
    checks = {c.check: c for c in rubric.criteria}
    acc = checks["min_accuracy"].params
    assert acc.threshold == 0.91 and acc.select.kind == "cnn" and acc.aggregate == "best"
    assert checks["uses_base_model"].params.base == "vgg16"
    assert checks["base_trainable"].params.mode in ("fine_tuned", "frozen")
    assert checks["non_pretrained_models"].params.at_least == 1
    assert checks["max_kaggle_submissions"].params.max == 2


def test_hw9_forbids_convolutions() -> None:
    rubric = load_rubric(ROOT / "rubrics" / "hw9.yaml")
    layer = next(c for c in rubric.criteria if c.check == "layer_types")
    assert "conv" in layer.params.forbidden


def errors(text: str) -> list[str]:
    with pytest.raises(RubricError) as exc:
        parse_rubric(text, "rubrics/x.yaml")
    return exc.value.problems


HEAD = "assignment: x\ntitle: X\ncriteria:\n"


def test_bad_value_names_file_line_criterion_and_field() -> None:
    text = HEAD + "  - id: acc\n    points: 2\n    check: min_accuracy\n    params:\n      threshold: '91%'\n"
    (msg,) = errors(text)
    assert msg == "rubrics/x.yaml:8: criterion 'acc': field 'params.threshold': must be a number in [0, 1]; got '91%'"


def test_unknown_check_and_unknown_keys_are_errors_with_suggestions() -> None:
    text = HEAD + (
        "  - id: a\n    points: 1\n    check: min_acuracy\n"
        "  - id: b\n    points: 1\n    check: min_accuracy\n    params: {threshold: 0.9, treshold: 1}\n"
        "  - id: c\n    ponts: 1\n    check: files_present\n    params: {patterns: ['*.ipynb']}\n"
    )
    msgs = errors(text)
    assert any("criterion 'a': field 'check': unknown check 'min_acuracy'; did you mean 'min_accuracy'?" in m for m in msgs)
    assert any("criterion 'b': field 'params.treshold': unknown field; did you mean 'threshold'?" in m for m in msgs)
    assert any(m.startswith("rubrics/x.yaml:12: criterion 'c': field 'ponts': unknown key; did you mean 'points'?") for m in msgs)


def test_all_problems_are_reported_at_once() -> None:
    text = "assignment: x\ncriterias: []\ncriteria:\n  - id: a\n    points: -1\n    check: max_params\n    params: {max: 0}\n  - id: a\n    points: 1\n    check: files_present\n    params: {patterns: []}\n"
    msgs = errors(text)
    assert len(msgs) >= 4
    assert any("unknown key 'criterias'" in m for m in msgs)
    assert any("field 'points': must be a number >= 0; got -1" in m for m in msgs)
    assert any("field 'params.max'" in m and "> 0" in m for m in msgs)
    assert any("duplicate id" in m for m in msgs)


def test_invalid_yaml_and_missing_file() -> None:
    (msg,) = errors("assignment: x\ncriteria: [\n")
    assert msg.startswith("rubrics/x.yaml:") and "not valid YAML" in msg
    with pytest.raises(RubricError, match="no such rubric file"):
        load_rubric("/nonexistent/hw99.yaml")


def test_unknown_base_model_and_dataset() -> None:
    text = "assignment: x\ndataset: mnist-fashion\ncriteria:\n  - id: v\n    points: 1\n    check: uses_base_model\n    params: {base: vgg61}\n"
    msgs = errors(text)
    assert any("unknown dataset 'mnist-fashion'" in m for m in msgs)
    assert any("field 'params.base'" in m and "unknown base model 'vgg61'" in m and "vgg16" in m for m in msgs)


def _bad_values(field: str) -> list[object]:
    return ["not-a-valid-value", -5, {"nested": 1}]


@pytest.mark.parametrize("name", check_names())
def test_every_field_of_every_check_reports_a_bad_value_by_name(name: str) -> None:
    spec = get_check(name)
    for field in spec.params.model_fields:
        found = False
        for bad in _bad_values(field):
            text = HEAD + f"  - id: crit-{name}\n    points: 1\n    check: {name}\n    params:\n      {field}: {bad!r}\n"
            try:
                parse_rubric(text, "rubrics/p.yaml")
            except RubricError as exc:
                hits = [p for p in exc.problems if f"field 'params.{field}" in p]
                if hits:
                    assert all(p.startswith("rubrics/p.yaml:") and f"criterion 'crit-{name}'" in p for p in hits)
                    found = True
                    break
        assert found, f"no bad value for {name}.{field} produced a message naming it"

"""Kaggle rules as the cv4 assignment states them: at most two submissions, per-day limits, and at
least one of the final two from a model that is not pretrained. Lists as `kaggle competitions
submissions -c NAME --csv` exports them (current CLI: `SubmissionStatus.COMPLETE`, fractional seconds)."""

from __future__ import annotations

from pathlib import Path

from grader.judging.checks import Criterion
from grader.judging.judge import judge_criterion
from grader.facts.kaggle import read_kaggle
from tests._evidence import CNN, arch, model, vgg16

HEADER = "fileName,date,description,status,publicScore,privateScore\n"


def _list(tmp: Path, rows: list[str]):  # type: ignore[no-untyped-def]
    path = tmp / "kaggle_submissions.csv"
    path.write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    return read_kaggle(path, "kaggle_submissions.csv")


def _evidence(tmp: Path, rows: list[str]):  # type: ignore[no-untyped-def]
    from grader.records.evidence import Evidence

    own = model("cnn.keras", arch(*CNN), 0.61, pretrained=False)
    vgg = model("vgg16_ft.h5", arch(*CNN, bases=(vgg16(trainable=3, frozen=10),)), 0.79, pretrained=True)
    return Evidence(student="s", models=(own, vgg), kaggle=_list(tmp, rows), dataset="cv4")


def run(check: str, ev, **params):  # type: ignore[no-untyped-def]
    from grader.judging.checks import get_check

    return judge_criterion(ev, Criterion(id="k", title="k", points=1, check=check, params=get_check(check).params.model_validate(params)))


def test_errored_submissions_do_not_count_and_per_day_limits_hold(tmp_path: Path) -> None:
    ev = _evidence(tmp_path, [
        "sub1.csv,2026-03-01 09:00:00.123000,cnn.keras,SubmissionStatus.COMPLETE,0.60,0.58",
        "bad.csv,2026-03-01 09:05:00.000000,cnn.keras,SubmissionStatus.ERROR,,",
        "sub2.csv,2026-03-02 21:00:00.000000,vgg16_ft.h5 fine-tuned,SubmissionStatus.COMPLETE,0.80,0.78",
    ])
    ok = run("max_kaggle_submissions", ev, max=2, max_per_day=1)
    assert ok.outcome == "pass" and "1 that Kaggle could not score not counted" in ok.message
    counted = run("max_kaggle_submissions", ev, max=2, count_errors=True)
    assert counted.outcome == "fail" and "3 Kaggle submissions" in counted.message
    daily = run("max_kaggle_submissions", ev, max=5, max_per_day=1, count_errors=True)
    assert daily.outcome == "fail" and "2 submissions on 2026-03-01; at most 1 a day" in daily.message


def test_one_of_the_final_two_must_come_from_a_model_trained_from_scratch(tmp_path: Path) -> None:
    good = _evidence(tmp_path, [
        "a.csv,2026-03-01 09:00:00,own cnn.keras,complete,0.60,0.58",
        "b.csv,2026-03-02 09:00:00,vgg16_ft.h5,complete,0.80,0.79",
    ])
    r = run("kaggle_final_selection", good, select=2, non_pretrained_at_least=1)
    assert r.outcome == "pass" and "a.csv (public 0.6) ← cnn.keras" in r.message and "vgg16_ft.h5" in r.message

    # three submissions: Kaggle keeps the best two by public score, both VGG16 here
    vgg_only = _evidence(tmp_path, [
        "a.csv,2026-03-01 09:00:00,cnn,complete,0.60,0.58",
        "b.csv,2026-03-02 09:00:00,vgg16_ft,complete,0.80,0.79",
        "c.csv,2026-03-03 09:00:00,vgg16_ft again,complete,0.81,0.80",
    ])
    r = run("kaggle_final_selection", vgg_only, select=2, non_pretrained_at_least=1)
    assert r.outcome == "fail" and "0 come from a model that is not pretrained" in r.message
    assert "a.csv" not in r.message.split(";")[0]


def test_an_unnamed_submission_gets_a_hint(tmp_path: Path) -> None:
    ev = _evidence(tmp_path, ["a.csv,2026-03-01 09:00:00,my best try,complete,0.60,0.58"])
    r = run("kaggle_final_selection", ev, select=2, non_pretrained_at_least=1)
    assert r.outcome == "fail" and "Name the model file in each submission's description" in r.message


def test_the_longest_model_name_wins_the_link() -> None:
    from grader.judging.checks.kaggle import link_model
    from grader.records.evidence import KaggleSubmission

    cnn, cnn2 = model("cnn.keras", arch(*CNN)), model("cnn_v2.keras", arch(*CNN))
    sub = KaggleSubmission(file_name="x.csv", date="2026-03-01", description="from cnn_v2 after 30 epochs")
    assert link_model(sub, (cnn, cnn2), "description") is cnn2
    assert link_model(sub, (cnn,), "file_name") is None
    assert link_model(KaggleSubmission(file_name="x.csv", date="", description="cnnx"), (cnn,), "either") is None

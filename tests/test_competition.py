"""The local competition engine (grader.scoring.competition) and the Kaggle-list rules (grader.judging.kaggle_rules)."""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from grader.scoring import competition as comp
from grader.scoring.competition import (
    CompetitionError,
    CompetitionSpec,
    CsvProblem,
    Ledger,
    Predictions,
    SubmissionRecord,
    deselect,
    get_metric,
    leaderboard,
    metric_names,
    public_private_split,
    read_predictions,
    register_metric,
    score,
    select,
    select_for_final,
    submit,
)
from grader.records.evidence import KaggleSubmission
from grader.facts.kaggle import read_kaggle
from grader.judging.kaggle_rules import errors, final_selection, kaggle_date, kaggle_status, per_day, summarize

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
IDS = tuple(f"img_{i:03d}" for i in range(10))
LABELS = {ident: i for i, ident in enumerate(IDS)}  # img_00k is class k
SPEC = CompetitionSpec()
DAY1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def csv_text(rows: list[tuple[str, str]] | None = None, header: str = "id,label", sep: str = ",", eol: str = "\n") -> str:
    rows = [(i, str(LABELS[i])) for i in IDS] if rows is None else rows
    return eol.join([header.replace(",", sep)] + [sep.join(r) for r in rows]) + eol


def read(content: str | bytes, **kw: object) -> Predictions | list[CsvProblem]:
    kw.setdefault("name", "preds.csv")
    return read_predictions(content, SPEC, IDS, CLASSES, **kw)  # type: ignore[arg-type]


def problems(content: str | bytes, **kw: object) -> list[CsvProblem]:
    out = read(content, **kw)
    assert isinstance(out, list), f"expected problems, got {out!r}"
    return out


def only(content: str | bytes, kind: str, **kw: object) -> CsvProblem:
    found = [p for p in problems(content, **kw) if p.kind == kind]
    assert len(found) == 1, [p.text for p in problems(content, **kw)]
    return found[0]


def ok(content: str | bytes, **kw: object) -> Predictions:
    out = read(content, **kw)
    assert isinstance(out, Predictions), [p.text for p in out]  # type: ignore[union-attr]
    return out


# ---------------------------------------------------------------------------------------------- spec

def test_spec_defaults_and_bounds() -> None:
    assert SPEC.id_column == "id" and SPEC.public_fraction == 0.3 and SPEC.select == 2 and SPEC.metric == "accuracy"
    for bad in ({"public_fraction": 0}, {"public_fraction": 1.0}, {"select": 0}, {"max_per_day": 0},
                {"max_total": -1}, {"colour": "red"}, {"id_column": "Label"}):
        with pytest.raises(ValidationError):
            CompetitionSpec(**bad)  # type: ignore[arg-type]


def test_spec_deadline_must_be_aware_and_is_kept_in_utc() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        CompetitionSpec(deadline=datetime(2026, 3, 1, 23, 59))
    spec = CompetitionSpec(deadline=datetime(2026, 3, 2, 0, 59, tzinfo=timezone(timedelta(hours=1))))
    assert spec.deadline == datetime(2026, 3, 1, 23, 59, tzinfo=UTC) and spec.deadline.tzinfo == UTC
    assert CompetitionSpec.model_validate_json(spec.model_dump_json()) == spec


def test_metric_registry_is_the_constraint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "accuracy" in metric_names() and get_metric("accuracy")([1, 2], [1, 0]) == 0.5
    with pytest.raises(ValidationError, match="did you mean 'accuracy'"):
        CompetitionSpec(metric="acuracy")
    with pytest.raises(CompetitionError, match="known: accuracy"):
        get_metric("f2")
    with pytest.raises(ValueError, match="already registered"):
        register_metric("accuracy")(lambda t, p: 0.0)
    monkeypatch.setitem(comp._METRICS, "error_rate", lambda t, p: sum(a != b for a, b in zip(t, p)) / len(t))
    spec = CompetitionSpec(metric="error_rate", higher_is_better=False)
    assert get_metric(spec.metric)([0, 1], [0, 0]) == 0.5


# ---------------------------------------------------------------------------------------------- split

def test_split_is_stable_whatever_the_order() -> None:
    ids = [f"x{i}" for i in range(200)]
    first = public_private_split(ids, 0.3, seed=7)
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert public_private_split(shuffled, 0.3, seed=7) == first
    assert public_private_split(tuple(reversed(ids)), 0.3, seed=7) == first
    assert public_private_split(ids, 0.3, seed=8) != first


def test_split_sizes_are_exact_and_parts_disjoint() -> None:
    for n, fraction, k in ((10, 0.3, 3), (100, 0.3, 30), (7, 0.5, 4), (3, 0.3, 1), (10000, 0.25, 2500)):
        ids = [str(i) for i in range(n)]
        public, private = public_private_split(ids, fraction, 0)
        assert (len(public), len(private)) == (k, n - k)
        assert public | private == set(ids) and not public & private
    public, private = public_private_split(["a", "b", "a", "c"], 0.5, 0)  # duplicates count once
    assert len(public) + len(private) == 3
    with pytest.raises(ValueError):
        public_private_split(["a"], 1.0, 0)


# ---------------------------------------------------------------------------------------------- reading: valid files

def test_plain_file_by_index() -> None:
    p = ok(csv_text())
    assert p.ids == IDS and p.labels == tuple(range(10)) and p.warnings == () and p.file == "preds.csv"
    assert p.by_id()["img_004"] == 4


def test_labels_by_name_any_case_and_mixed_with_indices() -> None:
    rows = [(i, CLASSES[LABELS[i]].upper() if LABELS[i] % 2 else str(LABELS[i])) for i in IDS]
    rows[9] = ("img_009", "  ankle BOOT ")
    assert ok(csv_text(rows)).labels == tuple(range(10))


def test_rows_in_any_order_are_aligned_with_expected_ids() -> None:
    rows = [(i, str(LABELS[i])) for i in reversed(IDS)]
    assert ok(csv_text(rows)).labels == tuple(range(10))


def test_utf8_bom() -> None:
    p = ok(b"\xef\xbb\xbf" + csv_text().encode())
    assert p.labels == tuple(range(10)) and p.warnings == ()


def test_semicolon_separator() -> None:
    assert ok(csv_text(sep=";")).labels == tuple(range(10))


def test_tab_separator() -> None:
    assert ok(csv_text(sep="\t")).labels == tuple(range(10))


def test_crlf_line_ends() -> None:
    assert ok(csv_text(eol="\r\n").encode()).labels == tuple(range(10))


def test_header_names_any_case_and_trimmed() -> None:
    assert ok(csv_text(header=" ID , Label ")).labels == tuple(range(10))


def test_quoted_fields_and_separator_inside_quotes() -> None:
    rows = [(f'"{i}"', f'"{CLASSES[LABELS[i]]}"') for i in IDS]
    assert ok(csv_text(rows, header='"id";"label"', sep=";")).labels == tuple(range(10))
    spec = CompetitionSpec()
    names = ("a,b", "c")
    out = read_predictions('id,label\nimg_000,"A,B"\nimg_001,1\n', spec, IDS[:2], names, name="q.csv")
    assert isinstance(out, Predictions) and out.labels == (0, 1)


def test_custom_column_names_from_the_spec() -> None:
    spec = CompetitionSpec(id_column="ImageId", label_column="Category")
    out = read_predictions(csv_text(header="imageid,CATEGORY"), spec, IDS, CLASSES, name="p.csv")
    assert isinstance(out, Predictions)
    missing = read_predictions(csv_text(), spec, IDS, CLASSES, name="p.csv")
    assert isinstance(missing, list) and "'ImageId' and no 'Category'" in missing[0].text


def test_without_class_names_any_whole_number_is_a_label() -> None:
    out = read_predictions(csv_text([(i, "12") for i in IDS]), SPEC, IDS, None, name="p.csv")
    assert isinstance(out, Predictions) and set(out.labels) == {12}
    bad = read_predictions(csv_text([(i, "Coat") for i in IDS]), SPEC, IDS, None, name="p.csv")
    assert isinstance(bad, list) and "whole number" in bad[0].text


def test_reads_a_path(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "my_preds.csv"
    f.parent.mkdir()
    f.write_bytes(csv_text(eol="\r\n").encode())
    assert read_predictions(f, SPEC, IDS, CLASSES).file == "my_preds.csv"  # type: ignore[union-attr]
    missing = read_predictions(tmp_path / "nope.csv", SPEC, IDS, CLASSES)
    assert isinstance(missing, list) and missing[0].kind == "unreadable" and "nope.csv" in missing[0].text


# ---------------------------------------------------------------------------------------------- reading: defects

def test_missing_id_column_names_found_and_expected() -> None:
    p = only(csv_text(header="ImageId,label"), "missing_column")
    assert p.text.startswith("preds.csv:1: error: no 'id' column")
    assert "found columns: 'ImageId', 'label'" in p.text and "expected: 'id' and 'label'" in p.text
    assert "The first line must be the header 'id,label'" in p.text


def test_missing_label_column() -> None:
    p = only("id,prediction\nimg_000,0\n", "missing_column")
    assert "no 'label' column" in p.text and "'prediction'" in p.text and "preds.csv:1" in p.text


def test_missing_columns_when_there_is_no_header() -> None:
    p = only("img_000,0\nimg_001,1\n", "missing_column")
    assert "no 'id' and no 'label' column" in p.text and "found columns: 'img_000', '0'" in p.text


def test_duplicate_column_is_an_error() -> None:
    assert "2 columns named 'label'" in only("id,label,Label\nimg_000,0,0\n", "duplicate_column").text


def test_extra_columns_are_a_warning() -> None:
    rows = [(i, str(LABELS[i]), "0.9") for i in IDS]
    p = ok(csv_text(rows, header="id,label,confidence"))  # type: ignore[arg-type]
    [w] = p.warnings
    assert w.severity == "warning" and w.kind == "extra_columns"
    assert w.text.startswith("preds.csv:1: warning: 1 column ignored: 'confidence'")
    pandas_index = [(str(n), i, str(LABELS[i])) for n, i in enumerate(IDS)]
    w2 = ok(csv_text(pandas_index, header=",id,label")).warnings[0]  # type: ignore[arg-type]
    assert "(unnamed)" in w2.text and "index=False" in w2.text


def test_duplicate_ids_name_ids_and_lines() -> None:
    rows = [(i, str(LABELS[i])) for i in IDS] + [("img_003", "3"), ("img_001", "1"), ("img_003", "4")]
    p = only(csv_text(rows), "duplicate_ids")
    assert p.line == 12
    assert "2 ids appear more than once: 'img_003' (lines 5, 12, 14), 'img_001' (lines 3, 13)" in p.text
    assert "Keep exactly one row per id" in p.text and p.text.startswith("preds.csv:12:")


def test_missing_ids_give_count_and_first_few() -> None:
    rows = [(i, str(LABELS[i])) for i in IDS[:2]]
    p = only(csv_text(rows), "missing_ids")
    assert "8 of 10 test ids have no row: 'img_002', 'img_003', 'img_004', 'img_005', 'img_006' and 3 more" in p.text
    assert p.text.startswith("preds.csv: error:") and "Write one row for every id of the test set (10 rows)" in p.text


def test_unknown_ids_name_ids_and_lines() -> None:
    rows = [(i, str(LABELS[i])) for i in IDS] + [("img_999", "1"), ("7.0", "2")]
    p = only(csv_text(rows), "unknown_ids")
    assert "2 ids are not in the test set: 'img_999' (line 12), '7.0' (line 13)" in p.text
    assert "Use the ids exactly as in the test set (for example 'img_000')" in p.text and p.line == 12


def test_empty_label() -> None:
    rows = [(i, "" if i == "img_004" else str(LABELS[i])) for i in IDS]
    p = only(csv_text(rows), "empty_label")
    assert p.text.startswith("preds.csv:6: error: 1 row without a 'label': line 6 (id 'img_004')")
    assert "Write a class name" in p.text


def test_invalid_labels_say_which_are_valid() -> None:
    bad = {"img_002": "Cot", "img_005": "10", "img_006": "-1", "img_007": "0.5", "img_008": "1_0", "img_009": "1e0"}
    rows = [(i, bad.get(i, str(LABELS[i]))) for i in IDS]
    p = only(csv_text(rows), "invalid_label")
    assert "6 labels are not a valid class: 'Cot' (line 4), '10' (line 7), '-1' (line 8), '0.5' (line 9), " \
        "'1_0' (line 10) and 1 more" in p.text
    assert "any case: T-shirt/top, Trouser" in p.text and "index 0-9" in p.text and p.line == 4


def test_empty_file() -> None:
    for content in (b"", b"  \n\r\n", b"\xef\xbb\xbf"):
        p = only(content, "empty")
        assert p.text == ("preds.csv: error: the file is empty. The first line must be the header 'id,label', "
                          "then one row per test image (10 rows)")


def test_header_only() -> None:
    assert "header but no rows" in only("id,label\n\n", "no_rows").text


def test_file_over_the_size_cap(tmp_path: Path) -> None:
    p = only(csv_text(), "too_large", max_bytes=50)
    assert p.text.startswith("preds.csv: error: the file is 109 bytes, over the 50 bytes limit")
    assert "one short row per test image" in p.text
    big = tmp_path / "big.csv"
    with open(big, "wb") as fh:  # sparse: the size is checked before anything is read
        fh.truncate(comp.MAX_BYTES + 1)
    [p2] = read_predictions(big, SPEC, IDS, CLASSES)  # type: ignore[misc]
    assert p2.kind == "too_large" and "big.csv: error: the file is 20,971,521 bytes, over the 20,971,520 bytes limit" in p2.text


def test_cp1252_file_is_read_with_a_warning() -> None:
    rows = [(i, str(LABELS[i]), "caf\xe9" if i == "img_003" else "") for i in IDS]
    raw = csv_text(rows, header="id,label,note").encode("cp1252")  # type: ignore[arg-type]
    p = ok(raw)
    assert p.labels == tuple(range(10))
    enc = next(w for w in p.warnings if w.kind == "encoding")
    assert enc.line == 5 and "preds.csv:5: warning: the file is not UTF-8 (byte 0xe9" in enc.text
    assert "Windows-1252" in enc.text and "CSV UTF-8" in enc.text


def test_bytes_neither_utf8_nor_cp1252() -> None:
    p = only(b"id,label\nimg_000,\x81\n", "encoding")
    assert p.text.startswith("preds.csv:2: error: the file is not UTF-8 text (byte 0x81")


def test_utf16_and_binary_files() -> None:
    assert "UTF-16" in only(csv_text().encode("utf-16"), "encoding").text
    p = only(b"PK\x03\x04\x00\x00model", "binary")
    assert "binary data" in p.text and "not a model" in p.text


def test_rows_with_too_few_fields_name_the_separator() -> None:
    text = "id;label\n" + "".join(f"{i},{LABELS[i]}\n" for i in IDS)  # header with ';', rows with ','
    p = only(text, "short_rows")
    assert p.line == 2 and "10 rows have fewer fields than the header (2): line 2 has 1 field" in p.text
    assert "The separator is ';' (read from the header line)" in p.text


def test_line_numbers_count_physical_lines_after_a_quoted_newline() -> None:
    text = 'id,label,note\nimg_000,0,"two\nlines"\nimg_001,Cot,\n' + "".join(f"{i},{LABELS[i]},\n" for i in IDS[2:])
    p = only(text, "invalid_label")
    assert p.line == 4 and "'Cot' (line 4)" in p.text


def test_all_problems_at_once() -> None:
    rows = [(i, str(LABELS[i])) for i in IDS[:6]] + [("img_001", "1"), ("ghost", "2"), ("img_006", "Cot"), ("img_007", "")]
    kinds = [p.kind for p in problems(csv_text(rows))]
    assert kinds == ["duplicate_ids", "unknown_ids", "empty_label", "invalid_label", "missing_ids"]


def test_float_labels_and_ragged_rows_are_warnings() -> None:
    text = "id,label\n" + "".join(f"{i},{LABELS[i]}.0\n" for i in IDS[:9]) + "img_009,9,extra\n"
    p = ok(text)
    assert p.labels == tuple(range(10))
    assert {w.kind for w in p.warnings} == {"float_labels", "ragged_rows"}
    assert any("preds.csv:11: warning: 1 row has more fields" in w.text for w in p.warnings)


# ---------------------------------------------------------------------------------------------- scoring

def test_score_hand_computed() -> None:
    ids = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
    truth = dict(zip(ids, (0, 1, 2, 3, 0, 1, 2, 3, 0, 1), strict=True))
    guess = (0, 1, 2, 0, 0, 1, 0, 3, 1, 1)  # public a-d: 3/4 right; private e-j: 4/6 right
    p = Predictions(file="p.csv", ids=ids, labels=guess)
    s = score(p, truth, {"a", "b", "c", "d"}, {"e", "f", "g", "h", "i", "j"}, "accuracy")
    assert (s.public, s.private, s.n_public, s.n_private) == (0.75, pytest.approx(4 / 6), 4, 6)
    with pytest.raises(ValueError, match="overlap"):
        score(p, truth, {"a"}, {"a", "b"}, "accuracy")
    with pytest.raises(ValueError, match="empty"):
        score(p, truth, set(), set(ids), "accuracy")


# ---------------------------------------------------------------------------------------------- ledger and submit

def content(correct: int, *, variant: int = 0) -> bytes:
    """A valid file with the first `correct` ids right and the rest wrong; `variant` blank lines make other bytes."""
    rows = [(i, str(LABELS[i] if n < correct else (LABELS[i] + 1) % 10)) for n, i in enumerate(IDS)]
    return csv_text(rows).encode() + b"\n" * variant


def go(ledger: Ledger, spec: CompetitionSpec, student: str, body: bytes, now: datetime, name: str = "p.csv") -> SubmissionRecord:
    return submit(ledger, spec, student, name, body, now, IDS, LABELS, CLASSES)


def test_submit_scores_and_persists_as_json_lines(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    r = go(ledger, SPEC, "alice", content(10), DAY1)
    assert r.status == "scored" and r.public_score == r.private_score == 1.0 and r.file_name == "p.csv"
    line = json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[0])
    assert line["submitted_at"] == "2026-03-01T09:00:00Z" and line["student"] == "alice" and len(line["sha256"]) == 64
    assert Ledger(tmp_path / "ledger.jsonl").records() == (r,)
    with pytest.raises(ValueError, match="timezone-aware"):
        go(ledger, SPEC, "alice", content(9), datetime(2026, 3, 1, 9))


def test_scores_follow_the_split(tmp_path: Path) -> None:
    public, private = public_private_split(IDS, SPEC.public_fraction, SPEC.seed)
    right = [i for i in IDS if i in public][:1] + [i for i in IDS if i in private][:2]
    rows = [(i, str(LABELS[i] if i in right else (LABELS[i] + 1) % 10)) for i in IDS]
    r = go(Ledger(tmp_path / "l.jsonl"), SPEC, "bob", csv_text(rows).encode(), DAY1)
    assert (r.public_score, r.private_score) == (pytest.approx(1 / 3), pytest.approx(2 / 7))


def test_daily_limit_across_two_runs_resets_the_next_utc_day(tmp_path: Path) -> None:
    spec = CompetitionSpec(max_per_day=2)
    path = tmp_path / "ledger.jsonl"
    first_run = Ledger(path)
    assert go(first_run, spec, "alice", content(5), DAY1).status == "scored"
    assert go(first_run, spec, "alice", content(6), DAY1 + timedelta(hours=1)).status == "scored"
    second_run = Ledger(path)  # a restart: a fresh object on the same file
    third = go(second_run, spec, "alice", content(7), DAY1 + timedelta(hours=14, minutes=59))
    assert third.status == "refused"
    assert third.reason == ("daily limit: 2 scored submissions on 2026-03-01 (UTC) already, at most 2 a day; "
                            "submit again from 2026-03-02 00:00 UTC")
    assert go(second_run, spec, "bob", content(7), DAY1).status == "scored"  # limits are per student
    assert go(Ledger(path), spec, "alice", content(7), DAY1 + timedelta(days=1)).status == "scored"
    assert [r.status for r in Ledger(path).records()] == ["scored", "scored", "refused", "scored", "scored"]


def test_total_limit(tmp_path: Path) -> None:
    spec = CompetitionSpec(max_total=3, max_per_day=2)
    path = tmp_path / "ledger.jsonl"
    days = [DAY1, DAY1, DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)]
    out = [go(Ledger(path), spec, "alice", content(k), d) for k, d in zip((1, 2, 3, 4), days, strict=True)]
    assert [r.status for r in out] == ["scored", "scored", "scored", "refused"]
    assert out[-1].reason == "total limit: 3 scored submissions already, at most 3 in all"


def test_same_content_is_not_counted_twice(tmp_path: Path) -> None:
    spec = CompetitionSpec(max_per_day=2)
    path = tmp_path / "ledger.jsonl"
    first = go(Ledger(path), spec, "alice", content(8), DAY1, name="a.csv")
    again = go(Ledger(path), spec, "alice", content(8), DAY1 + timedelta(hours=2), name="renamed.csv")
    assert again == first and len(path.read_text().splitlines()) == 1
    assert go(Ledger(path), spec, "alice", content(9), DAY1 + timedelta(hours=3)).status == "scored"
    assert go(Ledger(path), spec, "bob", content(8), DAY1).student == "bob"  # another student's own record


def test_refused_content_is_tried_again_later(tmp_path: Path) -> None:
    spec = CompetitionSpec(max_per_day=1)
    ledger = Ledger(tmp_path / "l.jsonl")
    go(ledger, spec, "alice", content(1), DAY1)
    assert go(ledger, spec, "alice", content(2), DAY1).status == "refused"
    assert go(ledger, spec, "alice", content(2), DAY1 + timedelta(days=1)).status == "scored"


def test_late_submission_is_refused(tmp_path: Path) -> None:
    spec = CompetitionSpec(deadline=datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    ledger = Ledger(tmp_path / "l.jsonl")
    assert go(ledger, spec, "alice", content(3), datetime(2026, 3, 1, 23, 59, tzinfo=UTC)).status == "scored"
    late = go(ledger, spec, "alice", content(4), datetime(2026, 3, 2, 11, 0, tzinfo=timezone(timedelta(hours=1))))
    assert late.status == "refused" and late.public_score is None
    assert late.reason == "late: submitted 2026-03-02 10:00 UTC, deadline 2026-03-01 23:59 UTC"
    assert ledger.records()[-1] == late
    just_late = go(ledger, CompetitionSpec(deadline=datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)), "bob", content(4),
                 datetime(2026, 3, 2, 0, 0, 5, tzinfo=UTC))
    assert just_late.reason == "late: submitted 2026-03-02 00:00:05 UTC, deadline 2026-03-01 23:59:59 UTC"  # to the second


def test_invalid_file_is_recorded_and_not_counted(tmp_path: Path) -> None:
    spec = CompetitionSpec(max_per_day=1, max_total=1)
    ledger = Ledger(tmp_path / "l.jsonl")
    bad = go(ledger, spec, "alice", b"ImageId,label\nimg_000,0\n", DAY1, name="broken.csv")
    assert bad.status == "invalid" and bad.reason.startswith("broken.csv:1: error: no 'id' column")
    assert bad.problems and all(p.startswith("broken.csv") for p in bad.problems)
    assert go(ledger, spec, "alice", content(10), DAY1).status == "scored"
    assert go(ledger, spec, "alice", b"ImageId,label\nimg_000,0\n", DAY1) == bad  # same bytes, same record


def test_truncated_last_line_is_ignored_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    good = go(ledger, SPEC, "alice", content(5), DAY1)
    with open(path, "ab") as fh:  # a crash in the middle of writing the second entry
        fh.write(b'{"kind":"submission","student":"bob","submitted_at":"2026-03-01T1')
    state = Ledger(path).read()
    assert state.records == (good,)
    assert len(state.warnings) == 1 and state.warnings[0].startswith("ledger.jsonl:2: ignored a truncated last line")
    after = go(Ledger(path), SPEC, "carol", content(6), DAY1)  # the next writer ends the broken line first
    state = Ledger(path).read()
    assert state.records == (good, after) and len(state.warnings) == 1 and "ledger.jsonl:2" in state.warnings[0]


def test_concurrent_writers_respect_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    spec = CompetitionSpec(max_total=3)
    results: list[SubmissionRecord] = []

    def one_grader(offset: int) -> None:
        for k in range(4):
            results.append(go(Ledger(path), spec, "alice", content(k, variant=1 + offset * 4 + k), DAY1))

    threads = [threading.Thread(target=one_grader, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = [r.status for r in Ledger(path).records()]
    assert len(statuses) == 8 and statuses.count("scored") == 3 and Ledger(path).read().warnings == ()


# ---------------------------------------------------------------------------------------------- selection

def scored(student: str, public: float, private: float, minutes: int, *, chosen: bool = False, sha: str = "") -> SubmissionRecord:
    return SubmissionRecord(student=student, submitted_at=DAY1 + timedelta(minutes=minutes), file_name="p.csv",
                            sha256=sha or f"{student}{minutes}", status="scored", public_score=public,
                            private_score=private, selected=chosen)


def test_automatic_selection_best_public_ties_to_the_earlier() -> None:
    rs = [scored("a", 0.70, 0.9, 1), scored("a", 0.80, 0.1, 2), scored("a", 0.75, 0.2, 3), scored("a", 0.80, 0.3, 4)]
    assert select_for_final(rs, SPEC) == [rs[1], rs[3]]
    assert select_for_final(rs, CompetitionSpec(select=1)) == [rs[1]]
    assert select_for_final(rs, CompetitionSpec(select=1, higher_is_better=False)) == [rs[0]]
    invalid = rs[0].model_copy(update={"status": "invalid", "public_score": None, "sha256": "x"})
    assert select_for_final([invalid], SPEC) == []


def test_explicit_selection_through_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    spec = CompetitionSpec(select=2, deadline=datetime(2026, 3, 5, tzinfo=UTC))
    subs = [go(Ledger(path), spec, "alice", content(k), DAY1 + timedelta(minutes=m)) for m, k in enumerate((9, 4, 6))]
    marked = select(Ledger(path), spec, "alice", subs[1].sha256, DAY1)
    assert marked.selected and select_for_final(Ledger(path).records(), spec) == [marked]  # only the chosen one
    select(Ledger(path), spec, "alice", subs[2].sha256, DAY1)
    with pytest.raises(CompetitionError, match="already selected 2 submissions.*deselect one first"):
        select(Ledger(path), spec, "alice", subs[0].sha256, DAY1)
    deselect(Ledger(path), spec, "alice", subs[1].sha256, DAY1)
    select(Ledger(path), spec, "alice", subs[0].sha256, DAY1)
    final = select_for_final(Ledger(path).records(), spec)
    assert [r.sha256 for r in final] == [subs[0].sha256, subs[2].sha256] and all(r.selected for r in final)
    with pytest.raises(CompetitionError, match="no scored submission"):
        select(Ledger(path), spec, "bob", subs[0].sha256, DAY1)
    with pytest.raises(CompetitionError, match="closed at the deadline"):
        deselect(Ledger(path), spec, "alice", subs[0].sha256, datetime(2026, 3, 6, tzinfo=UTC))


def test_more_selected_than_allowed_is_an_error() -> None:
    rs = [scored("a", 0.5, 0.5, k, chosen=True) for k in range(3)]
    with pytest.raises(CompetitionError, match="a has 3 selected submissions; at most 2"):
        select_for_final(rs, SPEC)


# ---------------------------------------------------------------------------------------------- leaderboards

def test_public_leaderboard_ranks_ties_like_competitions() -> None:
    rs = [scored("dave", 0.70, 0.9, 1), scored("carol", 0.80, 0.5, 2), scored("alice", 0.90, 0.5, 3),
          scored("bob", 0.60, 0.5, 4), scored("bob", 0.80, 0.5, 9), scored("alice", 0.85, 0.5, 5),
          SubmissionRecord(student="dave", submitted_at=DAY1 + timedelta(hours=5), file_name="x.csv", sha256="e",
                           status="invalid", reason="broken"),
          SubmissionRecord(student="erin", submitted_at=DAY1, file_name="x.csv", sha256="f", status="refused",
                           reason="late")]
    board = leaderboard(rs, SPEC, "public")
    assert [(r.rank, r.student, r.score, r.submissions) for r in board] == [
        (1, "alice", 0.90, 2), (2, "bob", 0.80, 2), (2, "carol", 0.80, 1), (4, "dave", 0.70, 1)]
    assert board[1].last_submitted_at == DAY1 + timedelta(minutes=9)
    assert board[3].last_submitted_at == DAY1 + timedelta(minutes=1)  # scored submissions only
    low = leaderboard(rs, CompetitionSpec(higher_is_better=False), "public")
    assert [(r.rank, r.student) for r in low] == [(1, "bob"), (2, "dave"), (3, "carol"), (4, "alice")]


def test_private_leaderboard_uses_the_final_selection() -> None:
    rs = [scored("alice", 0.90, 0.60, 1), scored("alice", 0.50, 0.95, 2), scored("alice", 0.85, 0.70, 3),
          scored("bob", 0.40, 0.80, 1, chosen=True), scored("bob", 0.95, 0.50, 2),
          scored("carol", 0.88, 0.80, 1)]
    board = leaderboard(rs, SPEC, "private")
    # alice's 0.95 private is not among her two best public; bob chose his 0.80 one himself
    assert [(r.rank, r.student, r.score, r.submissions) for r in board] == [
        (1, "bob", 0.80, 2), (1, "carol", 0.80, 1), (3, "alice", 0.70, 3)]
    public = leaderboard(rs, SPEC, "public")
    assert [r.student for r in public] == ["bob", "alice", "carol"]


def test_leaderboard_from_a_real_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.jsonl")
    for student, k in (("ann", 10), ("ben", 7), ("ann", 3), ("cy", 10)):
        go(ledger, SPEC, student, content(k), DAY1)
    board = leaderboard(ledger.records(), SPEC, "public")
    assert [(r.rank, r.student, r.submissions) for r in board] == [(1, "ann", 2), (1, "cy", 1), (3, "ben", 1)]
    assert all(comp.ContestRow.model_validate_json(r.model_dump_json()) == r for r in board)


# ---------------------------------------------------------------------------------------------- kaggle lists

KAGGLE_CSV = """\
fileName,date,description,status,publicScore,privateScore
submission.csv,2026-03-02 10:15:00.000000,,SubmissionStatus.PENDING,,
submission.csv,2026-03-02 09:06:04.067000,vgg16 fine-tuned,SubmissionStatus.COMPLETE,0.81000,0.79500
submission.csv,2026-03-02 08:59:12.120000,wrong columns,SubmissionStatus.ERROR,,
cnn_v2.csv,2026-03-01 22:10:11.500000,own cnn v2,SubmissionStatus.COMPLETE,0.60500,0.61000
vgg.csv,2026-03-01 12:00:00.000000,vgg16 feature extraction,SubmissionStatus.COMPLETE,0.76000,0.74000
cnn.csv,2026-03-01 11:00:00.000000,own cnn,SubmissionStatus.COMPLETE,0.60500,0.59000
"""


def test_kaggle_statuses_and_dates_both_spellings() -> None:
    sub = KaggleSubmission(file_name="s.csv", date="2019-03-01 12:34:56", status="complete")
    assert kaggle_status(sub) == "complete" and kaggle_date(sub) == datetime(2019, 3, 1, 12, 34, 56, tzinfo=UTC)
    for status, want in (("SubmissionStatus.COMPLETE", "complete"), ("submissionstatus.error", "error"),
                         ("pending", "pending"), ("ERROR", "error"), ("", "unknown"), ("weird", "unknown")):
        assert kaggle_status(sub.model_copy(update={"status": status})) == want
    for text in ("2026-03-01T23:30:00Z", "2026-03-02T00:30:00+01:00", "2026-03-01 23:30:00.000000"):
        assert kaggle_date(sub.model_copy(update={"date": text})) == datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
    assert kaggle_date(sub.model_copy(update={"date": "yesterday"})) is None


def test_kaggle_list_as_the_cli_exports_it(tmp_path: Path) -> None:
    f = tmp_path / "kaggle_submissions.csv"
    f.write_text(KAGGLE_CSV)
    subs = read_kaggle(f, "kaggle_submissions.csv").submissions
    assert len(subs) == 6
    assert [s.description for s in errors(subs)] == ["wrong columns"]
    assert per_day(subs) == {date(2026, 3, 1): 3, date(2026, 3, 2): 2}
    assert per_day(subs, count_errors=True) == {date(2026, 3, 1): 3, date(2026, 3, 2): 3}
    assert [s.description for s in final_selection(subs, 2)] == ["vgg16 fine-tuned", "vgg16 feature extraction"]
    # a tie on public score goes to the earlier submission
    assert [s.file_name for s in final_selection(subs, 3)][-1] == "cnn.csv"
    assert [s.file_name for s in final_selection(subs, 2, chosen=["CNN_v2.csv", "vgg16 fine-tuned"])] == [
        "submission.csv", "cnn_v2.csv"]
    summary = summarize(subs, select=2)
    assert (summary.total, summary.complete, summary.pending, len(summary.errors), summary.counted) == (6, 4, 1, 1, 5)
    assert (summary.max_per_day, summary.busiest_day, summary.undated) == (3, date(2026, 3, 1), ())
    assert [s.public_score for s in summary.final] == [0.81, 0.76]
    assert type(summary).model_validate_json(summary.model_dump_json()) == summary


def test_kaggle_old_cli_format() -> None:
    subs = [KaggleSubmission(file_name="a.csv", date="2020-05-01 23:59:59", status="complete", public_score=0.5),
            KaggleSubmission(file_name="b.csv", date="2020-05-02 00:00:01", status="error"),
            KaggleSubmission(file_name="c.csv", date="", status="complete", public_score=0.9)]
    s = summarize(subs, select=1)
    assert (s.complete, len(s.errors), s.per_day, [u.file_name for u in s.undated]) == (
        2, 1, {date(2020, 5, 1): 1}, ["c.csv"])
    assert [f.file_name for f in s.final] == ["c.csv"]
    assert summarize([]).busiest_day is None

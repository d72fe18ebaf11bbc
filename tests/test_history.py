"""Training histories read from the text Keras prints during fit(): real logs captured from Keras 3
and tf.keras (tests/fixtures/fit_logs, made by its make_logs.py), hand-written formats and edge
cases, notebooks read through read_notebook, and hostile text. Nothing trains here."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from grader.records.evidence import History, NotebookEvidence
from grader.facts.notebooks import (
    MAX_HISTORIES,
    MAX_HISTORY_EPOCHS,
    MAX_HISTORY_METRICS,
    MAX_OUTPUT_CHARS,
    histories_from_cells,
    histories_from_text,
    outputs_text,
    read_notebook,
)

LOGS = Path(__file__).resolve().parent / "fixtures" / "fit_logs"
CASES = sorted(path.stem for path in LOGS.glob("*.log"))
TOLERANCE = 5e-5  # Keras prints 4 decimals (or 4 significant digits in e-notation)


def _close(parsed: tuple[float, ...], expected: list[float]) -> bool:
    return len(parsed) == len(expected) and all(
        math.isnan(a) and math.isnan(b) or abs(a - b) <= TOLERANCE for a, b in zip(parsed, expected))


def _assert_matches(history: History, expected: dict[str, Any]) -> None:
    assert history.epochs == len(expected["epochs"])
    assert set(history.metrics) == set(expected["history"])
    for name, values in expected["history"].items():
        assert _close(history.metrics[name], values), (name, history.metrics[name], values)


def _notebook(tmp_path: Path, *texts: str, name: str = "nb.ipynb") -> Path:
    cells = [new_code_cell("model.fit(x, y)", outputs=[new_output("stream", name="stdout", text=text)]) for text in texts]
    path = tmp_path / name
    nbformat.write(new_notebook(cells=cells), path)
    return path


# ---- real logs


def test_every_case_of_make_logs_has_a_fixture() -> None:
    assert len(CASES) == 8 and all((LOGS / f"{case}.json").exists() for case in CASES)


@pytest.mark.parametrize("case", CASES)
def test_a_real_log_gives_the_history_fit_returned(case: str) -> None:
    raw = (LOGS / f"{case}.log").read_bytes().decode("utf-8")
    expected = json.loads((LOGS / f"{case}.json").read_text())
    (history,) = histories_from_text(raw, cell=3)
    _assert_matches(history, expected)
    assert history.cell == 3 and history.origin == "submitted"


@pytest.mark.parametrize("case", CASES)
def test_a_real_log_saved_as_a_notebook_stream_reads_the_same(case: str, tmp_path: Path) -> None:
    raw = (LOGS / f"{case}.log").read_bytes().decode("utf-8")
    # split into chunks as ipykernel sends them: a redraw may be cut anywhere
    chunks = [raw[i:i + 97] for i in range(0, len(raw), 97)]
    cell = new_code_cell("history = model.fit(...)",
                         outputs=[new_output("stream", name="stdout", text=chunk) for chunk in chunks])
    nbformat.write(new_notebook(cells=[cell]), tmp_path / "nb.ipynb")
    evidence = read_notebook(tmp_path / "nb.ipynb", "nb.ipynb")
    (history,) = evidence.histories
    _assert_matches(history, json.loads((LOGS / f"{case}.json").read_text()))
    assert history.cell == 0


def test_the_real_logs_cover_both_keras_verbose_modes_and_validation() -> None:
    texts = {case: (LOGS / f"{case}.log").read_text(encoding="utf-8") for case in CASES}
    assert "━" in texts["keras3_v1"] and "\b" in texts["keras3_v1"] and "\x1b[" in texts["keras3_v1"]
    assert "[====" in texts["tfkeras_v1"] and "ETA:" in texts["tfkeras_v1"]
    assert "ms/epoch" in texts["tfkeras_v2"] and "ms/step - loss" in texts["keras3_v2"]
    assert "ReduceLROnPlateau reducing" in texts["keras3_v1_val"]  # a callback's message inside the redraws
    assert "e-04" in texts["keras3_v1_val"] and "lr: 5.0000e-04" in texts["tfkeras_v1_val"]


def test_a_real_executed_notebook_gives_each_fit_and_skips_an_interrupted_epoch() -> None:
    """notebook.ipynb was run by nbclient: cell 2 fits then evaluates; cell 3 fits twice (feature
    extraction, fine-tuning); cell 4 fits with tf_keras, then a fit interrupted in its 2nd epoch."""
    expected = json.loads((LOGS / "notebook.json").read_text())
    evidence = read_notebook(LOGS / "notebook.ipynb", "notebook.ipynb")
    by_cell: dict[int, list[History]] = {}
    for history in evidence.histories:
        by_cell.setdefault(history.cell, []).append(history)
    assert sorted(by_cell) == [2, 3, 4]
    assert [h.epochs for h in by_cell[3]] == [3, 2]
    for cell, runs in expected.items():
        for history, fitted in zip(by_cell[int(cell)], runs):
            _assert_matches(history, fitted)
    interrupted = by_cell[4][1]  # 2nd epoch stopped by KeyboardInterrupt before its final line
    assert interrupted.epochs == 1 and set(interrupted.metrics) == {"loss", "accuracy"}
    assert all(h.origin == "submitted" for h in evidence.histories)
    # evaluate() printed after cell 2's last epoch is not an epoch
    assert by_cell[2][0].metrics["loss"][-1] == pytest.approx(expected["2"][0]["history"]["loss"][-1], abs=TOLERANCE)


def test_executed_outputs_give_executed_histories() -> None:
    nb = nbformat.read(LOGS / "notebook.ipynb", as_version=4)
    cells = [(i, outputs_text(c.outputs, limit=None)) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    histories = histories_from_cells(cells, "executed")
    assert [(h.cell, h.epochs) for h in histories] == [(2, 3), (3, 3), (3, 2), (4, 3), (4, 1)]
    assert {h.origin for h in histories} == {"executed"}


def test_execute_notebook_fills_the_runs_histories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's histories come from the executed cells' outputs (the runner is faked: it 'ran' the
    fixture notebook, whose saved outputs become the records)."""
    import grader.sandbox.notebook_sandbox as notebook_exec
    from grader.worker.evaluate import Limits
    from grader.worker.notebook_run import CellRecord, RunnerResult
    from grader.inputs.rubric import NotebookPolicy
    from grader.sandbox.isolation import WorkerOutcome

    source = nbformat.read(LOGS / "notebook.ipynb", as_version=4)

    def fake_run(command: list[str], cwd: Path, env: dict[str, str], log_path: Path, *, pass_fds: tuple[int, ...] = (),
                 after_start: Any = None, **_: Any) -> WorkerOutcome:
        from grader.worker.channel import send_json

        (channel,) = pass_fds  # the runner's channel: what it says is all the grader hears
        records = [CellRecord(index=i, status="ok", seconds=0.1, outputs=[dict(o) for o in cell.outputs])
                   for i, cell in enumerate(source.cells) if cell.cell_type == "code"]
        send_json(channel, {"started": True})
        for record in records:
            send_json(channel, {"cell": json.loads(record.model_dump_json())})
        send_json(channel, {"result": json.loads(RunnerResult(status="completed", cells_run=len(records)).model_dump_json())})
        send_json(channel, {"end": True})
        after_start()
        log_path.write_text("")
        return WorkerOutcome(kind="ok", returncode=0, seconds=0.5, log_tail="")

    monkeypatch.setattr(notebook_exec, "run_sandboxed", fake_run)
    submission = tmp_path / "sub"
    submission.mkdir()
    nbformat.write(source, submission / "hw.ipynb")
    ctx = notebook_exec.NotebookContext(policy=NotebookPolicy(execute=True), isolation="none", keras_cache=None,
                                        limits=Limits(), allow_unsandboxed_code=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run, _ = notebook_exec.execute_notebook(submission / "hw.ipynb", "hw.ipynb", submission, scratch, ctx)
    assert [(h.cell, h.epochs, h.origin) for h in run.histories] == \
        [(2, 3, "executed"), (3, 3, "executed"), (3, 2, "executed"), (4, 3, "executed"), (4, 1, "executed")]


# ---- formats, hand-written from what Keras prints

K3 = "\r\x1b[1m{n}/{t}\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m5s\x1b[0m 2ms/step - {m}"
K2 = "{n}/{t} [==============================] - 6s 3ms/step - {m}"


def _fit(epochs: int, line: str, total: int | None = None, start: int = 1, announced: int | None = None) -> str:
    announced = announced or start + epochs - 1
    out = []
    for e in range(start, start + epochs):
        out.append(f"Epoch {e}/{announced}\n")
        out.append(line.format(n=total or 1875, t=total or 1875, m=f"loss: {1 / e:.4f} - accuracy: {1 - 1 / (e + 1):.4f}"))
        out.append("\n")
    return "".join(out)


def test_keras3_verbose1_keeps_each_epochs_final_redraw() -> None:
    text = ("Epoch 1/2\n"
            + K3.format(n="   1", t=1875, m="accuracy: 0.1000 - loss: 2.3000") + "\b" * 80
            + K3.format(n=" 900", t=1875, m="accuracy: 0.6000 - loss: 1.0000") + "\b" * 80
            + K3.format(n=1875, t=1875, m="accuracy: 0.8123 - loss: 0.5234 - val_accuracy: 0.8500 - val_loss: 0.4100") + "\n"
            "Epoch 2/2\n"
            + K3.format(n=1875, t=1875, m="accuracy: 0.8600 - loss: 0.4000 - val_accuracy: 0.8700 - val_loss: 0.3700") + "\n")
    (h,) = histories_from_text(text)
    assert h.epochs == 2
    assert h.metrics == {"accuracy": (0.8123, 0.86), "loss": (0.5234, 0.4), "val_accuracy": (0.85, 0.87),
                         "val_loss": (0.41, 0.37)}
    assert list(h.metrics) == ["accuracy", "loss", "val_accuracy", "val_loss"]  # printed order


def test_keras2_verbose1_and_lines_printed_without_redraws() -> None:
    """tf.keras where stdout is not dynamic: every update on its own line, with an ETA until the end."""
    text = ("Epoch 1/2\n\n"
            " 1/32 [>.............................] - ETA: 10s - loss: 2.3000 - accuracy: 0.1000\n"
            "32/32 [==============================] - ETA: 0s - loss: 0.9000 - accuracy: 0.6000\n"
            "32/32 [==============================] - 1s 3ms/step - loss: 0.8000 - accuracy: 0.6500 - val_loss: 0.7000"
            " - val_accuracy: 0.7000\n"
            "Epoch 2/2\n"
            "32/32 [==============================] - 0s 3ms/step - loss: 0.6000 - accuracy: 0.7500 - val_loss: 0.6500"
            " - val_accuracy: 0.7200\n")
    (h,) = histories_from_text(text)
    assert h.metrics == {"loss": (0.8, 0.6), "accuracy": (0.65, 0.75), "val_loss": (0.7, 0.65), "val_accuracy": (0.7, 0.72)}


@pytest.mark.parametrize("line", [
    "469/469 - 5s - 10ms/step - loss: {loss} - accuracy: {acc}",  # Keras 3 verbose=2
    "469/469 - 5s - loss: {loss} - accuracy: {acc} - 5s/epoch - 10ms/step",  # tf.keras verbose=2
    " - 5s - loss: {loss} - acc: {acc}",  # Keras 2.2 verbose=2
    "60000/60000 [==============================] - 5s 83us/sample - loss: {loss} - acc: {acc}",  # TF 1.x
])
def test_verbose2_and_older_formats(line: str) -> None:
    text = "Train on 60000 samples, validate on 10000 samples\n" + "".join(
        f"Epoch {e}/3\n" + line.format(loss=f"{0.5 / e:.4f}", acc=f"{0.8 + e / 100:.4f}") + "\n" for e in (1, 2, 3))
    (h,) = histories_from_text(text)
    assert h.epochs == 3
    assert h.metrics["loss"] == pytest.approx((0.5, 0.25, 0.1667), abs=TOLERANCE)
    assert list(h.metrics)[1] in ("accuracy", "acc")


def test_several_fits_in_a_cell_and_in_several_cells() -> None:
    feature_extraction = _fit(5, K3)
    fine_tuning = _fit(3, K3)
    continued = _fit(5, K2, start=6, announced=10)  # fit(..., initial_epoch=5, epochs=10)
    histories = histories_from_cells([(4, feature_extraction + fine_tuning), (7, _fit(2, K2) + continued)], "submitted")
    assert [(h.cell, h.epochs) for h in histories] == [(4, 5), (4, 3), (7, 2), (7, 5)]
    assert histories[3].metrics["loss"] == pytest.approx(tuple(1 / e for e in range(6, 11)), abs=TOLERANCE)


def test_an_interrupted_run_keeps_its_finished_epochs() -> None:
    text = _fit(3, K2, announced=10) + ("Epoch 4/10\n"
                                        " 51/1875 [>.............................] - ETA: 9s - loss: 0.2000 - accuracy: 0.9000"
                                        + "\b" * 80 + "\nKeyboardInterrupt: \n")
    (h,) = histories_from_text(text)
    assert h.epochs == 3 and len(h.metrics["loss"]) == 3


def test_evaluate_after_the_last_epoch_is_not_an_epoch() -> None:
    evaluate = K3.format(n=313, t=313, m="accuracy: 0.1111 - loss: 9.9999") + "\n"
    (h,) = histories_from_text(_fit(2, K3) + evaluate + "Test accuracy: 0.1111\n")
    assert h.metrics == {"loss": (1.0, 0.5), "accuracy": (0.5, 0.6667)}
    # an evaluate() over as many steps as an epoch has: it has no val_ metrics, so it is not the epoch's line
    fit = "Epoch 1/1\n" + K3.format(n=1875, t=1875, m="loss: 0.5000 - val_loss: 0.6000") + "\n"
    same_steps = K3.format(n=1875, t=1875, m="loss: 8.8888") + "\n"
    (h,) = histories_from_text(fit + same_steps)
    assert h.metrics == {"loss": (0.5,), "val_loss": (0.6,)}


def test_callback_messages_are_not_headers() -> None:
    text = ("Epoch 1/3\n" + K2.format(n=10, t=10, m="loss: 0.9000 - val_loss: 0.8000") + "\n"
            "Epoch 1: val_loss improved from inf to 0.80000, saving model to best.keras\n"
            "Epoch 2/3\n"
            + K2.format(n=10, t=10, m="loss: 0.7000") + "\n"
            "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.0005.\n"
            + K2.format(n=10, t=10, m="loss: 0.7000 - val_loss: 0.8100") + "\n"
            "Epoch 3/3\n" + K2.format(n=10, t=10, m="loss: 0.6000 - val_loss: 0.8200") + "\n"
            "Epoch 3: early stopping\nRestoring model weights from the end of the best epoch: 1.\n")
    (h,) = histories_from_text(text)
    assert h.metrics == {"loss": (0.9, 0.7, 0.6), "val_loss": (0.8, 0.81, 0.82)}


def test_metric_names_scientific_notation_and_nan() -> None:
    line = "{n}/{t} - 1s - loss: {m}"
    text = "".join(f"Epoch {e}/2\n" + line.format(n=10, t=10, m=m) + "\n" for e, m in (
        (1, "1.2e-04 - sparse_categorical_accuracy: 0.5000 - lr: 1.0000e-03 - learning_rate: 1.0000e-03"),
        (2, "nan - sparse_categorical_accuracy: 0.1000 - lr: 5.0000e-04 - learning_rate: 5.0000e-04"),
    ))
    (h,) = histories_from_text(text)
    assert h.metrics["loss"][0] == pytest.approx(1.2e-4) and math.isnan(h.metrics["loss"][1])
    assert h.metrics["lr"] == (1e-3, 5e-4) and h.metrics["learning_rate"] == (1e-3, 5e-4)
    assert h.metrics["sparse_categorical_accuracy"] == (0.5, 0.1)


def test_a_metric_missing_from_some_epochs_is_left_out() -> None:
    """validation_freq=2: val_ metrics only every other epoch; every series has one value per epoch."""
    text = "".join(f"Epoch {e}/4\n10/10 - 1s - loss: 0.{e}000" + (f" - val_loss: 0.{e}500" if e % 2 == 0 else "") + "\n"
                   for e in range(1, 5))
    (h,) = histories_from_text(text)
    assert h.metrics == {"loss": (0.1, 0.2, 0.3, 0.4)}


def test_odd_names_and_fields_are_ignored_and_metrics_capped() -> None:
    names = [f"m{i}" for i in range(MAX_HISTORY_METRICS + 5)]
    fields = " - ".join(f"{name}: 0.{i:04d}" for i, name in enumerate(names))
    text = ("Epoch 1/1\n10/10 - 1s - bad name: 1.0 - x-y: 2.0 - 名前: 3.0 - loss: 0.5 - acc: 12abc - "
            f"{fields}\n")
    (h,) = histories_from_text(text)
    assert list(h.metrics) == ["loss", *names[: MAX_HISTORY_METRICS - 1]]


def test_unknown_steps_in_the_first_epoch() -> None:
    text = ("Epoch 1/2\n      7/Unknown 2s 20ms/step - loss: 0.9000"
            "\r7/7 ━━━━━━━━━━━━━━━━━━━━ 2s 25ms/step - loss: 0.8000\n"
            "Epoch 2/2\n7/7 ━━━━━━━━━━━━━━━━━━━━ 0s 20ms/step - loss: 0.7000\n")
    (h,) = histories_from_text(text)
    assert h.metrics == {"loss": (0.8, 0.7)}


def test_text_without_training_gives_no_history() -> None:
    for text in ("", "Test accuracy: 0.91\n", K3.format(n=313, t=313, m="accuracy: 0.8800 - loss: 0.3300"),
                 "Epoch 1/5\nEpoch 2/5\n", "Epoch 0/5\n10/10 - loss: 0.1\n", "Epoch 6/5\n10/10 - loss: 0.1\n",
                 "Epoch 1/5 is next\n10/10 - loss: 0.1\n"):
        assert histories_from_text(text) == ()


# ---- notebooks


def test_read_notebook_reads_histories_from_whole_outputs(tmp_path: Path) -> None:
    """A 200-epoch log is longer than MAX_OUTPUT_CHARS: the cell's shown text keeps its end, the
    history keeps every epoch."""
    long = _fit(200, K2, total=469)
    assert len(long) > MAX_OUTPUT_CHARS
    path = _notebook(tmp_path, long, "no training here\n", _fit(3, K3))
    evidence = read_notebook(path, "nb.ipynb")
    assert [(h.cell, h.epochs, h.origin) for h in evidence.histories] == [(0, 200, "submitted"), (2, 3, "submitted")]
    assert len(evidence.content[0].outputs) <= MAX_OUTPUT_CHARS
    assert evidence.histories[0].metrics["loss"][0] == 1.0


def test_histories_round_trip_through_json(tmp_path: Path) -> None:
    evidence = read_notebook(_notebook(tmp_path, _fit(3, K3)), "nb.ipynb")
    assert NotebookEvidence.model_validate_json(evidence.model_dump_json()) == evidence


def test_a_nan_loss_round_trips_through_json() -> None:
    (h,) = histories_from_text("Epoch 1/1\n10/10 - 1s - loss: nan\n")
    back = History.model_validate_json(h.model_dump_json())
    assert math.isnan(back.metrics["loss"][0])


# ---- hostile text: capped, and never an exception


def test_many_epochs_are_capped() -> None:
    text = "".join(f"Epoch {e}/100000\n1/1 - 0s - loss: 0.5\n" for e in range(1, 100_001))
    (h,) = histories_from_text(text)
    assert h.epochs == MAX_HISTORY_EPOCHS and len(h.metrics["loss"]) == MAX_HISTORY_EPOCHS


def test_many_fits_are_capped_to_the_last_ones() -> None:
    restarts = "Epoch 1/1\n1/1 - 0s - loss: 0.5\n" * 100_000
    assert len(histories_from_text(restarts)) == MAX_HISTORIES
    cells = [(i, f"Epoch 1/1\n1/1 - 0s - loss: 0.{i}\n") for i in range(1, 30)]
    histories = histories_from_cells(cells, "submitted")
    assert [h.cell for h in histories] == list(range(20, 30))
    assert histories_from_text("Epoch 1/1\n" * 100_000) == ()


def test_junk_never_raises() -> None:
    rng = random.Random(0)
    junk = bytes(rng.randrange(256) for _ in range(300_000)).decode("latin-1")
    noisy = junk.replace("a", "\nEpoch 1/3\n").replace("b", " - loss: 1e99999").replace("c", "\r10/10 - ")
    long_line = "1/1 - loss: 0.1 - " + "x: 1 - " * 200_000 + "\n"
    huge_numbers = "Epoch 1/1\n1/1 - loss: " + "9" * 100_000 + " - acc: 1e-99999\n"
    for text in (junk, noisy, long_line, "Epoch 1/1\n" + long_line, huge_numbers, "\b" * 100_000 + "\r" * 100_000,
                 "Epoch 99999999999999999999/99999999999999999999\n1/1 - loss: 1\n"):
        for history in histories_from_text(text):
            assert history.epochs == len(next(iter(history.metrics.values())))
            assert len(history.metrics) <= MAX_HISTORY_METRICS
    (h,) = histories_from_text("Epoch 1/1\n" + long_line)
    assert h.metrics["loss"] == (0.1,)


def test_a_notebook_with_odd_outputs_reads(tmp_path: Path) -> None:
    cell = new_code_cell("fit()", outputs=[new_output("stream", name="stdout", text=["Epoch 1/1\n", "1/1 - loss: 0.5\n"]),
                                            new_output("error", ename="KeyboardInterrupt", evalue="", traceback=[])])
    raw = {"cells": [dict(cell), {"cell_type": "code", "source": "", "outputs": "not a list"},
                     {"cell_type": "code", "source": "", "outputs": [{"output_type": "stream", "text": 5}]}],
           "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(raw))
    (h,) = read_notebook(path, "odd.ipynb").histories
    assert h.metrics == {"loss": (0.5,)}

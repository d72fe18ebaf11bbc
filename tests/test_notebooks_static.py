"""Static reading of notebooks: content, code facts from the AST, and claims from saved outputs.

Notebooks are built with nbformat in tmp_path; nothing is executed and TensorFlow is never imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from grader.records.evidence import Claim, NotebookEvidence
from grader.facts.notebooks import (
    MAX_CLAIMS,
    MAX_CONTENT_CHARS,
    MAX_OUTPUT_CHARS,
    MAX_SOURCE_CHARS,
    TRUNCATED,
    claims_from_cells,
    outputs_text,
    read_notebook,
)

# ---- realistic Keras output, as saved by Jupyter / Colab

_BS = "\b" * 90
KERAS2_FIT = (
    "Epoch 1/2\n"
    f"   1/1875 [..............................] - ETA: 10:05 - loss: 2.3852 - accuracy: 0.0938{_BS}\r"
    f"  52/1875 [>.............................] - ETA: 1s - loss: 1.2001 - accuracy: 0.6100{_BS}\r"
    "1875/1875 [==============================] - 4s 2ms/step - loss: 0.4950 - accuracy: 0.8260"
    " - val_loss: 0.4102 - val_accuracy: 0.8521\n"
    "Epoch 2/2\n"
    f"   1/1875 [..............................] - ETA: 3s - loss: 0.3000 - accuracy: 0.9062{_BS}\r"
    "1875/1875 [==============================] - 4s 2ms/step - loss: 0.3750 - accuracy: 0.8650"
    " - val_loss: 0.3902 - val_accuracy: 0.8601\n"
)
KERAS2_EVALUATE = (
    f"  1/313 [..............................] - ETA: 5s - loss: 0.2000 - accuracy: 0.9375{_BS}\r"
    "313/313 [==============================] - 1s 2ms/step - loss: 0.3612 - accuracy: 0.8702\n"
)
KERAS3_FIT = (
    "Epoch 1/3\n"
    "\r\x1b[1m   1/1688\x1b[0m \x1b[37m━━━━━━━━━━━━━━━━━━━━\x1b[0m \x1b[1m10:05\x1b[0m 359ms/step - accuracy: 0.0625 - loss: 2.4192"
    "\r\x1b[1m 845/1688\x1b[0m \x1b[32m━━━━━━━━━━\x1b[0m\x1b[37m━━━━━━━━━━\x1b[0m \x1b[1m1s\x1b[0m 2ms/step - accuracy: 0.7012 - loss: 0.8302"
    "\r\x1b[1m1688/1688\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m5s\x1b[0m 2ms/step - accuracy: 0.7788"
    " - loss: 0.6352 - val_accuracy: 0.8476 - val_loss: 0.4207\n"
    "Epoch 2/3\n"
    "\r\x1b[1m1688/1688\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m4s\x1b[0m 2ms/step - accuracy: 0.8561"
    " - loss: 0.4011 - val_accuracy: 0.8655 - val_loss: 0.3750\n"
    "Epoch 3/3\n"
    "\r\x1b[1m1688/1688\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m4s\x1b[0m 2ms/step - accuracy: 0.8702"
    " - loss: 0.3570 - val_accuracy: 0.8720 - val_loss: 0.3544\n"
)
KERAS3_EVALUATE = (
    "\r\x1b[1m  1/313\x1b[0m \x1b[37m━━━━━━━━━━━━━━━━━━━━\x1b[0m \x1b[1m9s\x1b[0m 31ms/step - accuracy: 0.9062 - loss: 0.2341"
    "\r\x1b[1m313/313\x1b[0m \x1b[32m━━━━━━━━━━━━━━━━━━━━\x1b[0m\x1b[37m\x1b[0m \x1b[1m1s\x1b[0m 2ms/step - accuracy: 0.8812 - loss: 0.3312\n"
)
TRACEBACK = [
    "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
    "\x1b[0;31mNameError\x1b[0m                                 Traceback (most recent call last)",
    "Cell \x1b[0;32mIn[7], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m model\x1b[38;5;241m.\x1b[39mfit(x_train, y_train)",
    "\x1b[0;31mNameError\x1b[0m: name 'model' is not defined",
]


def _stream(text: str, name: str = "stdout") -> Any:
    return new_output("stream", name=name, text=text)


def _write(tmp_path: Path, cells: list[Any], name: str = "hw.ipynb") -> Path:
    path = tmp_path / name
    nbformat.write(new_notebook(cells=cells), path)
    return path


def _read(tmp_path: Path, cells: list[Any]) -> NotebookEvidence:
    return read_notebook(_write(tmp_path, cells), "hw.ipynb")


def _facts(claims: tuple[Claim, ...]) -> list[tuple[str, float, int]]:
    return [(c.metric, round(c.value, 6), c.cell) for c in claims]


# ---- content


def test_content_has_one_record_per_cell_with_text_of_saved_outputs(tmp_path: Path) -> None:
    cells = [
        new_markdown_cell("# HW 10\nTransfer learning with **VGG16**."),
        new_code_cell("print('hello')\nlen([1, 2])", execution_count=3, outputs=[
            _stream("hello\n"),
            new_output("execute_result", data={"text/plain": "2", "text/html": "<b>2</b>"}, execution_count=3),
        ]),
        new_code_cell("plt.plot(history.history['loss'])", execution_count=4, outputs=[
            new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480 with 1 Axes>"}),
        ]),
        new_code_cell("df.style", outputs=[new_output("display_data", data={"text/html": "<table></table>"})]),
        new_raw_cell("raw text"),
        new_code_cell("never_run()"),
    ]
    nb = _read(tmp_path, cells)
    assert nb.error is None and nb.cells == 6 and nb.code_cells == 4
    assert [c.index for c in nb.content] == [0, 1, 2, 3, 4, 5]
    assert [c.cell_type for c in nb.content] == ["markdown", "code", "code", "code", "raw", "code"]
    assert nb.content[0].source == "# HW 10\nTransfer learning with **VGG16**." and nb.content[0].outputs == ""
    assert nb.content[1].outputs == "hello\n2" and nb.content[1].execution_count == 3
    assert nb.content[2].outputs == "[image/png]" and nb.content[2].execution_count == 4
    assert nb.content[3].outputs == "[text/html]"
    assert nb.content[4].source == "raw text" and nb.content[4].execution_count is None
    assert nb.content[5].outputs == "" and nb.content[5].execution_count is None
    assert NotebookEvidence.model_validate_json(nb.model_dump_json()) == nb


def test_unknown_cell_type_becomes_raw(tmp_path: Path) -> None:
    data = json.loads(nbformat.writes(new_notebook(cells=[new_markdown_cell("a"), new_code_cell("x = 1")])))
    data["cells"][0]["cell_type"] = "heading"
    data["cells"].append("not a cell")
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(data), encoding="utf-8")
    nb = read_notebook(path, "odd.ipynb")
    assert [(c.index, c.cell_type, c.source) for c in nb.content] == [(0, "raw", "a"), (1, "code", "x = 1"), (2, "raw", "")]
    assert nb.cells == 3 and nb.code_cells == 1


def test_error_output_keeps_name_value_and_last_traceback_lines_without_ansi(tmp_path: Path) -> None:
    nb = _read(tmp_path, [new_code_cell("model.fit(x_train, y_train)", outputs=[
        _stream("starting\n"),
        new_output("error", ename="NameError", evalue="name 'model' is not defined", traceback=TRACEBACK),
    ])])
    text = nb.content[0].outputs
    assert "\x1b" not in text
    lines = text.split("\n")
    assert lines[0] == "starting" and lines[1] == "NameError: name 'model' is not defined"
    assert lines[2:] == [  # the traceback's last 5 lines
        "-" * 75,
        "NameError                                 Traceback (most recent call last)",
        "Cell In[7], line 1",
        "----> 1 model.fit(x_train, y_train)",
        "NameError: name 'model' is not defined",
    ]
    long_trace = [f"frame {i}" for i in range(20)]
    nb = _read(tmp_path, [new_code_cell("f()", outputs=[new_output("error", ename="E", evalue="v", traceback=long_trace)])])
    assert nb.content[0].outputs.split("\n") == ["E: v", "frame 15", "frame 16", "frame 17", "frame 18", "frame 19"]


def test_progress_bars_keep_their_final_state_and_lose_ansi_codes(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("model.fit(x_train, y_train, epochs=2)", outputs=[_stream(KERAS2_FIT)]),
        new_code_cell("model.fit(x_train, y_train, epochs=3)", outputs=[_stream(KERAS3_FIT)]),
    ])
    keras2, keras3 = nb.content[0].outputs, nb.content[1].outputs
    assert keras2.split("\n") == [
        "Epoch 1/2",
        "1875/1875 [==============================] - 4s 2ms/step - loss: 0.4950 - accuracy: 0.8260 - val_loss: 0.4102 - val_accuracy: 0.8521",
        "Epoch 2/2",
        "1875/1875 [==============================] - 4s 2ms/step - loss: 0.3750 - accuracy: 0.8650 - val_loss: 0.3902 - val_accuracy: 0.8601",
    ]
    assert keras3.split("\n")[:2] == [
        "Epoch 1/3",
        "1688/1688 ━━━━━━━━━━━━━━━━━━━━ 5s 2ms/step - accuracy: 0.7788 - loss: 0.6352 - val_accuracy: 0.8476 - val_loss: 0.4207",
    ]
    assert "\x1b" not in keras3 and "\r" not in keras3 and "\b" not in keras2 and "ETA" not in keras2


def test_outputs_text_joins_streams_split_mid_redraw() -> None:
    text = outputs_text([
        {"output_type": "stream", "name": "stdout", "text": ["Epoch 1/1\n", "\r 10/100 ━━ - accuracy: 0.5"]},
        {"output_type": "stream", "name": "stdout", "text": "\r100/100 ━━━━ - accuracy: 0.9\n"},
        {"output_type": "display_data", "data": {"image/jpeg": "..."}},
        "not an output",
        {"output_type": "unknown"},
    ])
    assert text == "Epoch 1/1\n100/100 ━━━━ - accuracy: 0.9\n[image/jpeg]"
    assert outputs_text(None) == "" and outputs_text([]) == ""


def test_per_cell_caps_keep_the_start_of_sources_and_the_end_of_outputs(tmp_path: Path) -> None:
    source = "x = 1\n" * 5000  # 30,000 chars
    printed = "".join(f"line {i}\n" for i in range(3000)) + "Test accuracy: 0.9123\n"
    nb = _read(tmp_path, [new_code_cell(source, outputs=[_stream(printed)])])
    cell = nb.content[0]
    assert len(cell.source) <= MAX_SOURCE_CHARS and cell.source.startswith("x = 1\nx = 1\n")
    assert cell.source.endswith(TRUNCATED)
    assert len(cell.outputs) <= MAX_OUTPUT_CHARS and cell.outputs.startswith(TRUNCATED + "\nline ")
    assert cell.outputs.endswith("line 2999\nTest accuracy: 0.9123")
    assert _facts(nb.claims) == [("test_accuracy", 0.9123, 0)]  # read from the kept end


def test_total_content_cap_blanks_later_cells_but_keeps_them(tmp_path: Path) -> None:
    big = "y = 2\n" * 3000  # 18,000 chars each
    count = MAX_CONTENT_CHARS // 18_000 + 5
    cells = [new_code_cell(big) for _ in range(count)] + [
        new_code_cell("print(acc)", outputs=[_stream("Test accuracy: 0.8800\n")])]
    nb = _read(tmp_path, cells)
    assert len(nb.content) == count + 1 and nb.code_cells == count + 1
    kept = [c for c in nb.content if c.source]
    assert len(kept) == MAX_CONTENT_CHARS // 18_000
    assert sum(len(c.source) + len(c.outputs) for c in nb.content) <= MAX_CONTENT_CHARS
    assert nb.content[-1].source == "" and nb.content[-1].outputs == ""
    assert _facts(nb.claims) == [("test_accuracy", 0.88, count)]  # claims still read every cell


def test_invalid_json_is_evidence_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [ {"cell_type": "code", "source": "print(1)"', encoding="utf-8")
    nb = read_notebook(path, "broken.ipynb")
    assert nb.path == "broken.ipynb" and nb.cells == 0 and nb.content == ()
    assert nb.error is not None and nb.error.startswith("not a readable notebook (invalid JSON after a hand edit?)")
    path.write_text('{"metadata": {}}', encoding="utf-8")
    assert (read_notebook(path, "x.ipynb").error or "").startswith("not a readable notebook")
    path.write_text('[1, 2]', encoding="utf-8")
    assert (read_notebook(path, "x.ipynb").error or "").endswith("no 'cells' list")


# ---- code facts


COLAB = [
    new_code_cell("!pip install -q tensorflow==2.15\n%matplotlib inline\nfrom google.colab import drive\n"
                  "drive.mount('/content/drive')"),
    new_code_cell("%%capture\n!pip install keras-tuner\nimport keras_tuner"),
    new_code_cell("%%bash\nls -la /content/drive/MyDrive\nfor f in *.h5; do echo $f; done"),
    new_code_cell("import tensorflow as tf\nfrom tensorflow import keras\nfrom tensorflow.keras import layers\n"
                  "from tensorflow.keras.applications import VGG16\nkeras.Model.fit?\n??VGG16"),
]


def test_colab_syntax_is_blanked_before_parsing(tmp_path: Path) -> None:
    nb = _read(tmp_path, COLAB)
    assert nb.syntax_errors == ()
    assert nb.imports == ("google.colab", "keras_tuner", "tensorflow", "tensorflow.keras",
                          "tensorflow.keras.applications")
    assert nb.content[0].source.startswith("!pip install -q tensorflow==2.15\n%matplotlib inline")  # shown as written


def test_strings_and_comments_do_not_count_as_calls(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_markdown_cell("Use `VGG16(weights='imagenet')` and `model.fit(x, validation_data=(x_test, y_test))`."),
        new_code_cell("# base = VGG16(weights='imagenet', include_top=False)\n"
                      "note = \"model.fit(x, y, validation_data=(x_test, y_test)); Conv2D(32, 3)\"\n"
                      "print('base.trainable = False')"),
    ])
    assert nb.app_calls == () and nb.fit_calls == () and nb.layer_calls == () and nb.trainable_sets == ()


def test_layer_calls_are_constructed_layers_only(tmp_path: Path) -> None:
    nb = _read(tmp_path, [new_code_cell(
        "model = keras.Sequential([\n"
        "    keras.Input(shape=(32, 32, 3)),\n"
        "    layers.Conv2D(32, 3, activation='relu'),\n"
        "    layers.MaxPooling2D(),\n"
        "    Flatten(),\n"
        "    layers.Dense(128, activation='relu'),\n"
        "    layers.Dropout(0.5),\n"
        "    layers.Dense(10, activation='softmax'),\n"
        "])\n"
        "convs = [l for l in model.layers if isinstance(l, layers.BatchNormalization)]\n"
        "base = VGG16(weights=None, include_top=False)\n"
        "other = tf.keras.applications.ResNet50(weights=path)"
    )])
    assert nb.layer_calls == ("Conv2D", "Dense", "Dropout", "Flatten", "Input", "MaxPooling2D")
    assert [(a.name, a.weights, a.line, a.cell) for a in nb.app_calls] == [
        ("VGG16", None, 11, 0), ("ResNet50", "<expr>", 12, 0)]


def test_fit_calls_validation_epochs_and_generators(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("EPOCHS = 5\nBATCH, LR = 64, 1e-3"),
        new_code_cell("h1 = model.fit(x_train, y_train, epochs=EPOCHS, batch_size=BATCH,\n"
                      "               validation_data=(x_test, y_test))"),
        new_code_cell("h2 = model.fit(x_train, y_train, epochs=10, validation_split=0.1)\n"
                      "h3 = model.fit(train_images, train_labels, epochs=EPOCHS * 2,\n"
                      "               validation_data=(test_images, test_labels))\n"
                      "h4 = model.fit(X_train, Y_train, epochs=3, validation_data=(X_test[:1000] / 255.0, Y_test[:1000]))\n"
                      "h5 = model.fit(x_tr, y_tr, epochs=2, validation_data=(x_val, y_val))"),
        new_code_cell("datagen = ImageDataGenerator(rotation_range=15, horizontal_flip=True)\n"
                      "train_gen = datagen.flow_from_directory('data/train', target_size=(150, 150))\n"
                      "model.fit(datagen.flow(x_train, y_train, batch_size=32), epochs=EPOCHS, validation_data=val_ds)\n"
                      "model.fit_generator(train_gen, epochs=N)\n"
                      "model.fit(test_ds, validation_data=test_ds)"),
        new_code_cell("EPOCHS = 1 if os.environ.get('GRADER_EXECUTING') else 30\nmodel.fit(x, y, epochs=EPOCHS)"),
    ])
    got = [(f.cell, f.line, f.epochs, f.validation, f.validation_split, f.augmentation) for f in nb.fit_calls]
    assert got == [
        (1, 1, 5, "test", False, False),
        (2, 1, 10, None, True, False),
        (2, 2, None, "test", False, False),
        (2, 4, 3, "test", False, False),
        (2, 5, 2, "other", False, False),
        (3, 3, 5, "other", False, True),
        (3, 4, None, None, False, True),
        (3, 5, None, "test", False, False),
        (4, 2, None, None, False, False),  # EPOCHS is no longer a literal
    ]


def test_epochs_constant_must_be_assigned_before_the_call(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("model.fit(x, y, epochs=EPOCHS)\nEPOCHS = 8\nmodel.fit(x, y, epochs=EPOCHS)"),
        new_code_cell("EPOCHS = 12"),
        new_code_cell("model.fit(x, y, epochs=EPOCHS)"),
        new_code_cell("model.fit(x, y, epochs=True)"),
    ])
    assert [f.epochs for f in nb.fit_calls] == [None, 8, 12, None]


def test_trainable_sets_with_loops(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("base = VGG16(weights='imagenet', include_top=False, input_shape=(32, 32, 3))\n"
                      "base.trainable = False"),
        new_code_cell("base.trainable = True\n"
                      "for layer in base.layers[:-4]:\n"
                      "    layer.trainable = False\n"
                      "model.layers[0].trainable = flag\n"
                      "i = 0\n"
                      "while i < 3:\n"
                      "    if i > 1:\n"
                      "        model.get_layer('dense').trainable = True\n"
                      "    i += 1"),
    ])
    got = [(t.target, t.value, t.cell, t.line, t.in_loop) for t in nb.trainable_sets]
    assert got == [
        ("base", False, 0, 2, False),
        ("base", True, 1, 1, False),
        ("layer", False, 1, 3, True),
        ("model.layers[0]", None, 1, 4, False),
        ("model.get_layer('dense')", True, 1, 8, True),
    ]


def test_augmentation_apis_found_as_calls(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("augment = keras.Sequential([layers.RandomFlip('horizontal'), layers.RandomRotation(0.1),\n"
                      "                             layers.RandomZoom(0.1)])\n"
                      "gen = ImageDataGenerator(width_shift_range=0.1)\n"
                      "def aug(img, label):\n"
                      "    img = tf.image.random_flip_left_right(img)\n"
                      "    img = tf.image.random_brightness(img, 0.2)\n"
                      "    return tf.image.flip_left_right(img), label\n"
                      "# layers.RandomContrast(0.2)\n"
                      "kind = layers.RandomCrop"),
    ])
    assert nb.augmentation == ("ImageDataGenerator", "RandomFlip", "RandomRotation", "RandomZoom",
                               "flip_left_right", "random_brightness", "random_flip_left_right")
    assert {"RandomFlip", "RandomRotation", "RandomZoom"} <= set(nb.layer_calls)
    assert "RandomCrop" not in nb.layer_calls


def test_syntax_errors_name_the_cell_and_line_and_other_cells_still_count(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("import numpy as np"),
        new_code_cell("x = 1\nmodel.add(Dense(10)\nprint(x)"),
        new_code_cell("model.fit(x_train, y_train, epochs=3)"),
        new_code_cell("def f(:\n    pass"),
    ])
    assert len(nb.syntax_errors) == 2
    assert nb.syntax_errors[0].startswith("cell 1: ") and nb.syntax_errors[0].endswith("(line 2)")
    assert nb.syntax_errors[1] == "cell 3: invalid syntax (line 1)"
    assert nb.imports == ("numpy",) and [f.cell for f in nb.fit_calls] == [2]


# ---- claims


def test_keras2_fit_and_evaluate_claims(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("history = model.fit(x_train, y_train, epochs=2, validation_split=0.1)",
                      outputs=[_stream(KERAS2_FIT)]),
        new_code_cell("model.evaluate(x_test, y_test)", outputs=[
            _stream(KERAS2_EVALUATE),
            new_output("execute_result", data={"text/plain": "[0.3612, 0.8702]"}, execution_count=5)]),
    ])
    assert _facts(nb.claims) == [("accuracy", 0.865, 0), ("val_accuracy", 0.8601, 0), ("test_accuracy", 0.8702, 1)]
    assert nb.claims[-1].text == "313/313 [==============================] - 1s 2ms/step - loss: 0.3612 - accuracy: 0.8702"
    assert all(c.origin == "submitted" for c in nb.claims)


def test_keras3_fit_then_evaluate_in_one_cell(tmp_path: Path) -> None:
    nb = _read(tmp_path, [new_code_cell(
        "history = model.fit(x_train, y_train, epochs=3, validation_split=0.1)\n"
        "model.evaluate(x_test / 255.0, y_test)",
        outputs=[_stream(KERAS3_FIT), _stream(KERAS3_EVALUATE)])])
    assert _facts(nb.claims) == [("accuracy", 0.8702, 0), ("val_accuracy", 0.872, 0), ("test_accuracy", 0.8812, 0)]
    assert nb.claims[-1].text == "313/313 ━━━━━━━━━━━━━━━━━━━━ 1s 2ms/step - accuracy: 0.8812 - loss: 0.3312"


def test_fit_log_is_not_a_test_claim_when_evaluate_is_silent(tmp_path: Path) -> None:
    nb = _read(tmp_path, [
        new_code_cell("model.fit(x_train, y_train, epochs=3)\nmodel.evaluate(x_test, y_test, verbose=0)",
                      outputs=[_stream(KERAS3_FIT)]),
        new_code_cell("model.fit(x_train, y_train, epochs=3)\nmodel.evaluate(x_test, y_test)",
                      outputs=[_stream(KERAS3_FIT)]),  # evaluate printed nothing (yet)
    ])
    assert _facts(nb.claims) == [("accuracy", 0.8702, 0), ("val_accuracy", 0.872, 0),
                                 ("accuracy", 0.8702, 1), ("val_accuracy", 0.872, 1)]


def test_labelled_test_claims_win_over_the_evaluate_progress_line(tmp_path: Path) -> None:
    nb = _read(tmp_path, [new_code_cell(
        "test_loss, test_acc = model.evaluate(test_images, test_labels)\n"
        "print(f'Test accuracy: {test_acc:.4f}')\nprint(f'test_acc = {test_acc * 100:.2f}%')",
        outputs=[_stream(KERAS3_EVALUATE + "Test accuracy: 0.8812\ntest_acc = 88.12%\n")])])
    assert _facts(nb.claims) == [("test_accuracy", 0.8812, 0), ("test_accuracy", 0.8812, 0)]
    assert [c.text for c in nb.claims] == ["Test accuracy: 0.8812", "test_acc = 88.12%"]


def test_printed_test_accuracy_formats() -> None:
    lines = {
        "Test accuracy: 0.9123": 0.9123,
        "test_acc = 91.23%": 0.9123,
        "Test Accuracy 0.88": 0.88,
        "Test accuracy: 91.5": 0.915,
        "Accuracy on the test set: 89.5 %": 0.895,
        "Test loss: 0.3123 Test accuracy: 0.8912": 0.8912,
        "Test loss: 0.31, accuracy: 0.89": 0.89,
        "Final test accuracy (VGG16): 0.912": 0.912,
        "Test accuracy after 5 epochs: 0.91": 0.91,
        "Test accuracy: 0.9123 (91.23%)": 0.9123,
    }
    for line, value in lines.items():
        claims = claims_from_cells([(7, "", line)], "submitted")
        assert _facts(claims) == [("test_accuracy", value, 7)], line
        assert claims[0].text == line
    for line in ["Test accuracy: 150", "Test accuracy: n/a", "Точність на тесті: 0.91", "Test loss: 0.31",
                 "Train accuracy: 0.95, val accuracy: 0.91"]:
        assert all(c.metric != "test_accuracy" for c in claims_from_cells([(0, "", line)], "submitted")), line


def test_old_keras_acc_and_val_acc(tmp_path: Path) -> None:
    log = ("Epoch 1/2\n60000/60000 [==============================] - 3s 50us/step - loss: 0.5 - acc: 0.82 - val_loss: 0.4 - val_acc: 0.85\n"
           "Epoch 2/2\n60000/60000 [==============================] - 3s 49us/step - loss: 0.4 - acc: 0.87 - val_loss: 0.4 - val_acc: 0.86\n")
    nb = _read(tmp_path, [new_code_cell("model.fit(x, y, epochs=2, validation_data=(x_val, y_val))", outputs=[_stream(log)])])
    assert _facts(nb.claims) == [("accuracy", 0.87, 0), ("val_accuracy", 0.86, 0)]


def test_claims_are_capped_keeping_the_last(tmp_path: Path) -> None:
    cells = [new_code_cell(f"print('Test accuracy:', acc[{i}])", outputs=[_stream(f"Test accuracy: 0.{i:02d}\n")])
             for i in range(60)]
    nb = _read(tmp_path, cells)
    assert len(nb.claims) == MAX_CLAIMS == 50
    assert nb.claims[0].cell == 10 and nb.claims[0].value == 0.10
    assert nb.claims[-1].cell == 59 and nb.claims[-1].value == 0.59


def test_claims_from_cells_reads_the_graders_own_run() -> None:
    cells = [
        (0, "print('hi')", "hi"),
        (2, "model.fit(x_train, y_train, epochs=3, validation_split=0.1)\nmodel.evaluate(x_test, y_test)",
         outputs_text([{"output_type": "stream", "name": "stdout", "text": KERAS3_FIT + KERAS3_EVALUATE}])),
        (3, "", "\x1b[1mTest accuracy: 88.5%\x1b[0m"),  # not yet cleaned: cleaned again, harmlessly
        (4, "this is not python (", "Test accuracy: 0.87"),
    ]
    claims = claims_from_cells(cells, "executed")
    assert _facts(claims) == [("accuracy", 0.8702, 2), ("val_accuracy", 0.872, 2), ("test_accuracy", 0.8812, 2),
                              ("test_accuracy", 0.885, 3), ("test_accuracy", 0.87, 4)]
    assert all(c.origin == "executed" for c in claims)
    assert claims[3].text == "Test accuracy: 88.5%"
    assert claims_from_cells([], "executed") == ()


def test_claim_text_is_trimmed_to_200_chars() -> None:
    line = "Test accuracy: 0.9 " + "x" * 400
    (claim,) = claims_from_cells([(0, "", line)], "submitted")
    assert claim.text == line[:200] and claim.value == 0.9

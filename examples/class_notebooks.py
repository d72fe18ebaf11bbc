"""The example classes' notebooks: one per student, written as students write them (Colab lines,
`fashion_mnist.load_data()`, `model.save(...)`), each showing one thing the grader does with notebooks.

    python examples/make_class.py --step notebooks      # rewrite just these

They really run: the hw10 rubric executes notebooks in the sandbox, and each notebook trains briefly
when the grader runs it (``GRADER_EXECUTING`` is set there), so the example class stays quick to grade.
The saved outputs are what the student's own (longer) run printed: the grader reads them as claims.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

COLAB = "!pip install -q tensorflow\nfrom google.colab import drive\ndrive.mount('/content/drive')"
LOAD = ("import os\nimport numpy as np\nfrom tensorflow import keras\nfrom tensorflow.keras import layers\n\n"
        "(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()\n"
        "x_train, x_test = x_train / 255.0, x_test / 255.0\nprint(x_train.shape, x_test.shape)")
# what the course's starter notebook says: train briefly when the grader runs the notebook
QUICK = ("GRADED = bool(os.environ.get('GRADER_EXECUTING'))\n"
         "EPOCHS = 1 if GRADED else {epochs}\nN = 5000 if GRADED else len(x_train)")


def _code(source: str, *printed: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    if printed:
        cell.outputs = [new_output("stream", name="stdout", text="".join(line + "\n" for line in printed))]
    return cell


def _write(path: Path, cells: list[nbformat.NotebookNode]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=cells, metadata={"colab": {"provenance": []},
                                             "kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nbformat.write(nb, path)


def hw10(root: Path) -> None:
    # alice: part 1 runs; part 2 asks for ImageNet weights, which the grader's sandbox cannot download
    _write(root / "alice-nguyen" / "hw10.ipynb", [
        new_markdown_cell("# hw10: CNN and VGG16\nPart 1 is my own CNN, part 2 uses VGG16 as the convolutional base."),
        _code(COLAB, "Mounted at /content/drive"),
        _code(LOAD, "(60000, 28, 28) (10000, 28, 28)"),
        _code(QUICK.format(epochs=6)),
        new_markdown_cell("## Part 1: my CNN"),
        _code("cnn = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation='relu'), layers.MaxPooling2D(),\n"
              "                       layers.Conv2D(64, 3, activation='relu'), layers.MaxPooling2D(), layers.Flatten(),\n"
              "                       layers.Dropout(0.3), layers.Dense(64, activation='relu'), layers.Dense(10, activation='softmax')])\n"
              "cnn.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "history = cnn.fit(x_train[:N, ..., None], y_train[:N], epochs=EPOCHS, batch_size=128, validation_split=0.1, verbose=2)\n"
              "print('Test accuracy:', cnn.evaluate(x_test[..., None], y_test, verbose=0)[1])\n"
              "cnn.save('/content/drive/MyDrive/hw10_cnn.keras')",
              "Epoch 6/6", "352/352 - 9s - 25ms/step - accuracy: 0.9104 - loss: 0.2437 - val_accuracy: 0.9050 - val_loss: 0.2610",
              "Test accuracy: 0.8953000068664551"),
        new_markdown_cell("## Part 2: VGG16 as the convolutional base"),
        _code("from tensorflow.keras.applications import VGG16\n"
              "base = VGG16(weights='imagenet', include_top=False, input_shape=(32, 32, 3))\nbase.trainable = False",
              "Downloading data from https://storage.googleapis.com/tensorflow/keras-applications/vgg16/..."),
        _code("for layer in base.layers[-4:]:\n    layer.trainable = True"),
    ])
    # bob: validates on the test set, and claims more than his saved model reaches
    _write(root / "bob-kowalski" / "hw10_part1.ipynb", [
        new_markdown_cell("# Homework 10, part 1"),
        _code(LOAD, "(60000, 28, 28) (10000, 28, 28)"),
        _code(QUICK.format(epochs=15)),
        _code("model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation='relu'), layers.MaxPooling2D(),\n"
              "                         layers.Flatten(), layers.Dense(128, activation='relu'), layers.Dense(10, activation='softmax')])\n"
              "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "model.fit(x_train[:N, ..., None], y_train[:N], epochs=EPOCHS, validation_data=(x_test[..., None], y_test), verbose=2)",
              "Epoch 15/15", "1875/1875 - 12s - 6ms/step - accuracy: 0.9721 - loss: 0.0760 - val_accuracy: 0.9301 - val_loss: 0.2518"),
        _code("test_loss, test_acc = model.evaluate(x_test[..., None], y_test, verbose=0)\nprint(f'Test accuracy: {test_acc:.4f}')",
              "Test accuracy: 0.9301"),
        _code("model.save('cnn.h5')"),
    ])
    # carol: a clean dense notebook with a plot (matplotlib runs headless in the sandbox)
    _write(root / "carol-smith" / "hw10.ipynb", [
        new_markdown_cell("# hw10\nI only managed the dense network."),
        _code(LOAD, "(60000, 28, 28) (10000, 28, 28)"),
        _code(QUICK.format(epochs=3)),
        _code("%matplotlib inline\nimport matplotlib.pyplot as plt\n"
              "mlp = keras.Sequential([keras.Input((28, 28)), layers.Flatten(), layers.Dense(128, activation='relu'),\n"
              "                       layers.Dense(10, activation='softmax')])\n"
              "mlp.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "history = mlp.fit(x_train[:N], y_train[:N], epochs=EPOCHS, validation_split=0.1, verbose=2)\n"
              "plt.plot(history.history['accuracy'], label='train'); plt.plot(history.history['val_accuracy'], label='validation')\n"
              "plt.legend(); plt.show()", "Epoch 3/3", "1688/1688 - 3s - 2ms/step - accuracy: 0.8791 - loss: 0.3342 - val_accuracy: 0.8702 - val_loss: 0.3590"),
        _code("loss, acc = mlp.evaluate(x_test, y_test, verbose=0)\nprint('Test accuracy: %.2f%%' % (100 * acc))", "Test accuracy: 86.04%"),
        _code("mlp.save('mlp.h5')"),
    ])
    # dave: a notebook broken by a hand edit (invalid JSON): reported by name, the rest still graded
    path = root / "dave-okafor" / "hw10.ipynb"
    _write(path, [new_markdown_cell("# hw10"), _code(LOAD)])
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    # erin: forgot the models; her notebook reads a CSV from her Google Drive, which the grader cannot see
    _write(root / "erin-garcia" / "hw10.ipynb", [
        _code(COLAB, "Mounted at /content/drive"),
        _code("import pandas as pd\ntrain = pd.read_csv('/content/drive/MyDrive/fashion-mnist_train.csv')\ntrain.head()"),
    ])
    # frank: pads to 32x32 with numpy and rescales inside the model
    _write(root / "frank-mueller" / "hw10.ipynb", [
        _code(LOAD.replace("x_train, x_test = x_train / 255.0, x_test / 255.0\n", ""), "(60000, 28, 28) (10000, 28, 28)"),
        _code(QUICK.format(epochs=3)),
        _code("pad = lambda x: np.pad(x, ((0, 0), (2, 2), (2, 2)))[..., None].astype('float32')\n"
              "model = keras.Sequential([keras.Input((32, 32, 1)), layers.Rescaling(1 / 255.0), layers.Conv2D(32, 3, activation='relu'),\n"
              "                         layers.MaxPooling2D(), layers.Conv2D(32, 3, activation='relu'), layers.MaxPooling2D(),\n"
              "                         layers.Flatten(), layers.Dense(10, activation='softmax')])\n"
              "model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "model.fit(pad(x_train[:N]), y_train[:N], epochs=EPOCHS, batch_size=128, validation_split=0.1, verbose=2)\n"
              "print('Test accuracy:', round(model.evaluate(pad(x_test), y_test, verbose=0)[1], 4))\n"
              "model.save('cnn32.keras')", "Epoch 3/3", "Test accuracy: 0.8793"),
    ])
    # grace: a Lambda layer; the model her notebook saves carries code, so it is evaluated in the sandbox
    _write(root / "grace-lee" / "hw10.ipynb", [
        _code(LOAD, "(60000, 28, 28) (10000, 28, 28)"),
        _code(QUICK.format(epochs=2)),
        _code("model = keras.Sequential([\n    keras.Input((28, 28, 1)),\n"
              "    layers.Lambda(lambda t: keras.ops.image.resize(keras.ops.repeat(t, 3, axis=-1), (32, 32))),\n"
              "    layers.Conv2D(32, 3, activation='relu'), layers.MaxPooling2D(), layers.Conv2D(64, 3, activation='relu'),\n"
              "    layers.MaxPooling2D(), layers.Flatten(), layers.Dense(10, activation='softmax')])\n"
              "model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "model.fit(x_train[:N, ..., None], y_train[:N], epochs=EPOCHS, batch_size=128, verbose=2)\n"
              "print('Test accuracy:', model.evaluate(x_test[..., None], y_test, verbose=0)[1])\n"
              "model.save('cnn_lambda.keras')", "Test accuracy: 0.8745000123977661"),
    ])


def hw9(root: Path) -> None:
    _write(root / "gina-rossi" / "hw9.ipynb", [
        new_markdown_cell("# hw9: a dense network"),
        _code(LOAD, "(60000, 28, 28) (10000, 28, 28)"),
        _code("model = keras.Sequential([keras.Input((784,)), layers.Dense(256, activation='relu'), layers.Dense(128, activation='relu'),\n"
              "                         layers.Dense(10, activation='softmax')])\n"
              "model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "model.fit(x_train.reshape(60000, 784), y_train, epochs=5, validation_split=0.1)",
              "Epoch 5/5", "1688/1688 [==============================] - 4s 2ms/step - loss: 0.2781 - accuracy: 0.8962 - val_loss: 0.3127 - val_accuracy: 0.8870"),
        _code("print('Test accuracy:', model.evaluate(x_test.reshape(10000, 784), y_test)[1])",
              "313/313 [==============================] - 0s 1ms/step - loss: 0.3401 - accuracy: 0.8761", "Test accuracy: 0.8761"),
    ])
    _write(root / "hugo-lefevre" / "hw9.ipynb", [
        _code("import tf_keras as keras\n(x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()\n"
              "mean, std = x_train.mean(), x_train.std()\nx_train, x_test = (x_train - mean) / std, (x_test - mean) / std"),
        _code("model = keras.Sequential([keras.layers.Flatten(input_shape=(28, 28)), keras.layers.Dense(300, activation='relu'),\n"
              "                         keras.layers.Dropout(0.2), keras.layers.Dense(10, activation='softmax')])\n"
              "model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "model.fit(x_train, y_train, epochs=20, validation_split=0.1)\nmodel.save('mlp.h5')",
              "Epoch 20/20", "1688/1688 [==============================] - 4s 2ms/step - loss: 0.2318 - accuracy: 0.9123 - val_loss: 0.3311 - val_accuracy: 0.8850"),
        _code("test_acc = model.evaluate(x_test, y_test)[1]\nprint(f'Test accuracy: {test_acc:.2%}')", "Test accuracy: 87.78%"),
    ])
    _write(root / "ivan-petrov" / "hw9.ipynb", [
        _code(LOAD),
        _code("model = keras.Sequential([keras.Input((28, 28, 1)), layers.Conv2D(16, 3, activation='relu'), layers.MaxPooling2D(),\n"
              "                         layers.Flatten(), layers.Dense(10, activation='softmax')])\n"
              "model.compile('adam', 'sparse_categorical_crossentropy', metrics=['accuracy'])\n"
              "model.fit(x_train[..., None], y_train, epochs=1, validation_data=(x_test[..., None], y_test))",
              "1875/1875 [==============================] - 9s 5ms/step - loss: 0.4480 - accuracy: 0.8421 - val_loss: 0.3669 - val_accuracy: 0.8769"),
    ])


def write_all(hw10_root: Path, hw9_root: Path) -> None:
    hw10(hw10_root)
    hw9(hw9_root)

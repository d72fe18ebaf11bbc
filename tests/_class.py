"""Build a tiny real class of submissions: real Keras models trained briefly on the public split."""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np


def read_idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def train_split(data: Path, n: int = 6000) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(data / "train-images-idx3-ubyte.gz")[:n]
    y = read_idx(data / "train-labels-idx1-ubyte.gz")[:n]
    return x, y


def keras3_cnn(data: Path, path: Path, epochs: int = 1) -> None:
    import keras

    keras.utils.set_random_seed(1)
    x, y = train_split(data)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[..., None] / 255.0, y, epochs=epochs, batch_size=64, verbose=0)
    model.save(path)


def keras2_mlp(data: Path, path: Path) -> None:
    """A dense model saved by tf_keras (Keras 2), trained on raw 0-255 pixels, in a subprocess."""
    code = textwrap.dedent(f"""
        import os, sys
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        import tf_keras as k
        from tests._class import train_split
        from pathlib import Path
        k.utils.set_random_seed(2)
        x, y = train_split(Path({str(data)!r}))
        m = k.Sequential([k.layers.Flatten(input_shape=(28, 28)), k.layers.Rescaling(1 / 255.0),
                          k.layers.Dense(32, activation="relu"), k.layers.Dense(10)])
        m.compile("adam", k.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, epochs=1, batch_size=64, verbose=0)
        m.save({str(path)!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True)


def keras3_lambda(path: Path) -> None:
    import keras

    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Lambda(lambda t: t * 2.0), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(path)

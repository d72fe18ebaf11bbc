"""Input adaptation for every input shape students use, and the preprocessing choice."""

from __future__ import annotations

import numpy as np
import pytest

from grader import adapt

STATS = adapt.Stats(mean=0.286, std=0.353)
IMAGES = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize(
    ("shape", "out"),
    [
        ((None, 784), (5, 784)),
        ((None, 28, 28), (5, 28, 28)),
        ((None, 28, 28, 1), (5, 28, 28, 1)),
        ((None, 28, 28, 3), (5, 28, 28, 3)),
        ((None, 32, 32, 3), (5, 32, 32, 3)),
        ((None, 48, 48, 3), (5, 48, 48, 3)),
        ((None, 56, 56, 3), (5, 56, 56, 3)),
        ((None, 75, 75, 3), (5, 75, 75, 3)),
        ((None, 224, 224, 3), (5, 224, 224, 3)),
        ((None, 32, 32, 1), (5, 32, 32, 1)),
        ((None, None, None, 3), (5, 32, 32, 3)),
    ],
)
def test_every_candidate_produces_the_model_input_shape(shape: tuple, out: tuple) -> None:
    cands = adapt.candidates(shape)
    assert cands
    for cand in cands:
        x = adapt.adapt(IMAGES, shape, cand, STATS)
        assert x.shape == out and x.dtype == np.float32


def test_bigger_inputs_try_resize_and_pad_and_caffe_only_for_rgb() -> None:
    keys = {c.key for c in adapt.candidates((None, 32, 32, 3))}
    assert {"resize/unit", "pad/unit", "resize/caffe"} <= keys
    assert not any(k.endswith("caffe") for k in (c.key for c in adapt.candidates((None, 28, 28, 1))))


def test_pad_keeps_the_image_in_the_centre_and_channels_repeat() -> None:
    x = adapt.adapt(IMAGES, (None, 32, 32, 3), adapt.Candidate("pad", "raw"), STATS)
    assert np.array_equal(x[:, 2:30, 2:30, 0], IMAGES.astype(np.float32))
    assert x[:, :2].sum() == 0 and np.array_equal(x[..., 0], x[..., 2])


def test_scales() -> None:
    unit = adapt.adapt(IMAGES, (None, 784), adapt.Candidate("flatten", "unit"), STATS)
    assert 0 <= unit.min() and unit.max() <= 1
    sym = adapt.adapt(IMAGES, (None, 784), adapt.Candidate("flatten", "symmetric"), STATS)
    assert -1 <= sym.min() and sym.max() <= 1
    std = adapt.adapt(IMAGES, (None, 784), adapt.Candidate("flatten", "standard"), STATS)
    assert np.allclose(std, (IMAGES.reshape(5, 784) / 255 - 0.286) / 0.353, atol=1e-5)


def test_resize_matches_tensorflow_bilinear() -> None:
    tf = pytest.importorskip("tensorflow")
    x = IMAGES.astype(np.float32)
    for size in (32, 56, 75):
        ours = adapt.resize_bilinear(x, size, size)
        theirs = tf.image.resize(x[..., None], (size, size), method="bilinear").numpy()[..., 0]
        assert np.abs(ours - theirs).max() < 1e-3


@pytest.mark.parametrize("shape", [(None, 100), (None, 28, 28, 5), (None, 3, 28, 28), (None, 4, 4, 4, 4)])
def test_unusable_input_shapes_are_explained(shape: tuple) -> None:
    with pytest.raises(adapt.AdaptError):
        adapt.candidates(shape)


def test_choose_prefers_best_then_first_listed() -> None:
    assert adapt.choose({"a": 0.5, "b": 0.9, "c": 0.9}) == "b"
    with pytest.raises(adapt.AdaptError):
        adapt.choose({})


def test_shortlist_keeps_near_best_and_at_least_two_in_tie_break_order() -> None:
    screening = {"resize/unit": 0.86, "resize/raw": 0.12, "resize/standard": 0.80, "pad/unit": 0.88, "pad/raw": 0.10}
    assert adapt.shortlist(screening) == ["resize/unit", "resize/standard", "pad/unit"]
    # one clear winner still keeps the runner-up, so the final choice is made on the whole sample
    assert adapt.shortlist({"a": 0.9, "b": 0.2, "c": 0.1}) == ["a", "b"]
    # ties keep the listed order
    assert adapt.shortlist({"a": 0.5, "b": 0.5, "c": 0.5}, margin=0.0, keep=1) == ["a", "b", "c"]
    with pytest.raises(adapt.AdaptError):
        adapt.shortlist({})


def test_public_sample_is_class_balanced_in_every_prefix() -> None:
    from grader.pipeline import _public_sample

    labels = np.repeat(np.arange(10, dtype=np.uint8), 300)
    images = np.arange(len(labels), dtype=np.int64)[:, None]
    x, y = _public_sample(images, labels, 1000)
    assert len(y) == 1000 and np.array_equal(labels[x[:, 0]], y)
    for n in (10, 200, 1000):
        assert np.all(np.bincount(y[:n], minlength=10) == n // 10)
    again, _ = _public_sample(images, labels, 1000)
    assert np.array_equal(x, again)  # the same sample on every run
    # a teacher's split with a rare class still gives a balanced sample
    few = np.concatenate([labels[:300 * 9], np.full(5, 9, np.uint8)])
    _, y_few = _public_sample(np.zeros((len(few), 1)), few, 1000)
    assert np.all(np.bincount(y_few, minlength=10) == 5)

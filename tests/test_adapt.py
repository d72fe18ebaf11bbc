"""Input adaptation for every input shape students use, and the preprocessing choice."""

from __future__ import annotations

import numpy as np
import pytest

from grader.worker import adapt

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


# --------------------------------------------------------------------------------------------
# Any source: (n, h, w) gray or (n, h, w, 3) RGB of any size (cv4: 128×128 RGB photos)
# --------------------------------------------------------------------------------------------

RGB = np.random.default_rng(1).integers(0, 256, size=(2, 128, 128, 3), dtype=np.uint8)
SMALL_RGB = np.random.default_rng(2).integers(0, 256, size=(3, 20, 24, 3), dtype=np.uint8)  # not square: h ≠ w


@pytest.mark.parametrize(
    ("images", "shape", "out", "geometries"),
    [
        (RGB, (None, 224, 224, 3), (2, 224, 224, 3), ["resize", "pad"]),
        (RGB, (None, 128, 128, 3), (2, 128, 128, 3), ["as-is"]),
        (RGB, (None, 128, 128, 1), (2, 128, 128, 1), ["as-is"]),
        (RGB, (None, 64, 64, 3), (2, 64, 64, 3), ["resize"]),
        (RGB, (None, None, None, 3), (2, 128, 128, 3), ["as-is"]),
        (RGB, (None, None, None, None), (2, 128, 128, 3), ["as-is"]),
        (SMALL_RGB, (None, None, None, 3), (3, 32, 32, 3), ["resize", "pad"]),  # at least 32 (VGG)
        (SMALL_RGB, (None, 20 * 24 * 3), (3, 1440), ["flatten"]),
        (SMALL_RGB, (None, 20 * 24), (3, 480), ["flatten"]),  # flat gray
        (SMALL_RGB, (None, None), (3, 1440), ["flatten"]),
        (SMALL_RGB, (None, 20, 24), (3, 20, 24), ["as-is"]),  # a 2-D (gray) image input
        (SMALL_RGB, (None, None, None), (3, 20, 24), ["as-is"]),
        (SMALL_RGB, (None, 32, 40), (3, 32, 40), ["resize", "pad"]),
        (SMALL_RGB, (None, 36, 30, 1), (3, 36, 30, 1), ["resize", "pad"]),
        (SMALL_RGB, (None, 30, 20, 3), (3, 30, 20, 3), ["resize"]),  # larger in one dimension only
        (SMALL_RGB[..., 0], (None, 48, 48, 3), (3, 48, 48, 3), ["resize", "pad"]),  # gray, not 28×28
        (SMALL_RGB[..., 0], (None, 480), (3, 480), ["flatten"]),
    ],
)
def test_any_source_gives_the_model_input_shape(images: np.ndarray, shape: tuple, out: tuple, geometries: list) -> None:
    cands = adapt.candidates(shape, source=images.shape[1:])
    assert sorted({c.geometry for c in cands}) == sorted(geometries)
    channels = shape[3] if len(shape) == 4 and shape[3] else (images.shape[3] if images.ndim == 4 and len(shape) == 4 else 1)
    assert any(c.scale == "caffe" for c in cands) == (len(shape) == 4 and channels == 3)
    for cand in cands:
        x = adapt.adapt(images, shape, cand, STATS)
        assert x.shape == out and x.dtype == np.float32, cand.key
        assert np.isfinite(x).all()


def test_the_default_source_is_fashion_mnist() -> None:
    for shape in [(None, 784), (None, 28, 28), (None, 32, 32, 3), (None, None, None, 3), (None, 16, 16, 1)]:
        assert adapt.candidates(shape) == adapt.candidates(shape, source=(28, 28))
        assert adapt.target_shape(shape) == adapt.target_shape(shape, source=(28, 28))
        assert adapt.adapted_bytes(shape) == adapt.adapted_bytes(shape, source=(28, 28))


def test_unknown_sizes_follow_the_source() -> None:
    assert adapt.target_shape((None, None, None, None), source=(128, 128, 3)) == (128, 128, 3)
    assert adapt.target_shape((None, None, None, None), source=(128, 128)) == (128, 128, 1)
    assert adapt.target_shape((None, None, None, 1), source=(20, 24, 3)) == (32, 32, 1)
    assert adapt.target_shape((None, None, None), source=(20, 24, 3)) == (20, 24)
    assert adapt.target_shape((None, None), source=(20, 24, 3)) == (1440,)
    assert adapt.target_shape((None, None), source=(20, 24)) == (480,)


@pytest.mark.parametrize(
    ("source", "shape", "message"),
    [
        ((128, 128, 3), (None, 784), "the model takes 784 flat values; 128×128 RGB images give 49152 (or 16384 in gray)"),
        ((64, 64), (None, 784), "the model takes 784 flat values; 64×64 images give 4096"),
        ((128, 128, 3), (None, 128, 128, 4), "the model takes 4 channels; RGB images can give 1 or 3"),
        ((128, 128, 3), (None, 3, 128, 128), "looks channels-first"),
        ((128, 128, 4), (None, 128, 128, 3), "(h, w) grayscale or (h, w, 3) RGB"),
        ((128, 128, 1), (None, 128, 128, 1), "(h, w) grayscale or (h, w, 3) RGB"),
        ((128,), (None, 128), "(h, w) grayscale or (h, w, 3) RGB"),
        ((0, 28), (None, 28, 28), "empty"),
    ],
)
def test_unusable_sources_and_shapes_are_explained(source: tuple, shape: tuple, message: str) -> None:
    with pytest.raises(adapt.AdaptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        adapt.candidates(shape, source=source)


def test_adapt_reads_the_source_from_the_images() -> None:
    with pytest.raises(adapt.AdaptError, match="RGB"):
        adapt.adapt(np.zeros((2, 8, 8, 4), np.uint8), (None, 8, 8, 3), adapt.Candidate("as-is", "raw"), STATS)
    cand = adapt.Candidate("as-is", "raw")
    assert np.array_equal(adapt.adapt(RGB, (None, 128, 128, 3), cand, STATS), RGB.astype(np.float32))


def test_rgb_to_gray_matches_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    x = adapt.adapt(RGB, (None, 128, 128, 1), adapt.Candidate("as-is", "raw"), STATS)
    theirs = tf.image.rgb_to_grayscale(RGB.astype(np.float32)).numpy()
    assert np.abs(x - theirs).max() < 1e-3
    # a gray-looking RGB photo stays what it was (TF's weights sum to 0.9999: off by at most 0.0255)
    same = np.repeat(RGB[..., :1], 3, axis=-1)
    gray = adapt.adapt(same, (None, 128, 128), adapt.Candidate("as-is", "raw"), STATS)
    assert np.abs(gray - RGB[..., 0]).max() <= 0.0256


def test_caffe_on_rgb_is_keras_vgg16_preprocess_input() -> None:
    keras = pytest.importorskip("keras")
    ours = adapt.adapt(RGB, (None, 128, 128, 3), adapt.Candidate("as-is", "caffe"), STATS)
    theirs = keras.applications.vgg16.preprocess_input(RGB.astype(np.float32))
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-4)
    # the swap is real: channel 0 of the result is blue minus the blue mean
    assert np.allclose(ours[..., 0], RGB[..., 2] - 103.939, atol=1e-4)
    # gray replicated: the swap changes nothing, as before
    gray = adapt.adapt(RGB[..., 0], (None, 128, 128, 3), adapt.Candidate("as-is", "caffe"), STATS)
    np.testing.assert_allclose(gray, np.asarray(keras.applications.vgg16.preprocess_input(
        np.repeat(RGB[..., :1], 3, axis=-1).astype(np.float32))), atol=1e-4)


def test_resize_rgb_matches_tensorflow_up_down_and_not_square() -> None:
    tf = pytest.importorskip("tensorflow")
    for images in (RGB.astype(np.float32), SMALL_RGB.astype(np.float32)):
        for size in ((224, 224), (64, 64), (32, 40), (50, 17)):
            ours = adapt.resize_bilinear(images, *size)
            theirs = tf.image.resize(images, size, method="bilinear").numpy()
            assert ours.shape == theirs.shape and np.abs(ours - theirs).max() < 1e-3, size
    # a channel axis changes nothing about how each channel is resized
    x = SMALL_RGB.astype(np.float32)
    assert np.array_equal(adapt.resize_bilinear(x, 37, 29)[..., 1], adapt.resize_bilinear(x[..., 1], 37, 29))


def test_rgb_pad_and_flatten_keep_pixels_in_place() -> None:
    x = adapt.adapt(SMALL_RGB, (None, 32, 40, 3), adapt.Candidate("pad", "raw"), STATS)
    assert np.array_equal(x[:, 6:26, 8:32], SMALL_RGB.astype(np.float32))
    assert x[:, :6].sum() == 0 and x[:, :, :8].sum() == 0
    flat = adapt.adapt(SMALL_RGB, (None, 1440), adapt.Candidate("flatten", "unit"), STATS)
    assert np.array_equal(flat, (SMALL_RGB.astype(np.float32) / 255.0).reshape(3, 1440))  # h, w, c order, as Flatten
    gray_flat = adapt.adapt(SMALL_RGB, (None, 480), adapt.Candidate("flatten", "raw"), STATS)
    assert np.array_equal(gray_flat, adapt.rgb_to_gray(SMALL_RGB.astype(np.float32)).reshape(3, 480))


def test_describe_reads_right_for_every_source() -> None:
    rgb, gray = (128, 128, 3), (28, 28)
    assert (adapt.describe(adapt.Candidate("resize", "unit"), (None, 224, 224, 3), source=rgb)
            == "128×128 resized (bilinear) to 224×224; RGB channels as is; pixels scaled to [0, 1] (x / 255)")
    assert (adapt.describe(adapt.Candidate("as-is", "raw"), (None, 128, 128, 1), source=rgb)
            == "kept as 128×128; RGB converted to gray (ITU-R 601 luma, as tf.image.rgb_to_grayscale); raw pixels in [0, 255]")
    assert adapt.describe(adapt.Candidate("as-is", "caffe"), (None, 128, 128, 3), source=rgb).startswith(
        "kept as 128×128; RGB channels reordered to BGR; VGG-style preprocess_input")
    assert (adapt.describe(adapt.Candidate("flatten", "unit"), (None, 49152), source=rgb)
            == "flattened to 49152 values; RGB channels as is; pixels scaled to [0, 1] (x / 255)")
    assert (adapt.describe(adapt.Candidate("pad", "symmetric"), (None, 48, 48, 3), source=(20, 24))
            == "20×24 zero-padded around the centre to 48×48; gray channel repeated ×3; pixels scaled to [-1, 1] (x / 127.5 - 1)")
    # Fashion-MNIST strings are what they always were, with or without the keyword
    for kwargs in ({}, {"source": gray}):
        assert adapt.describe(adapt.Candidate("flatten", "unit"), (None, 784), **kwargs) == \
            "flattened to 784 values; pixels scaled to [0, 1] (x / 255)"
        assert adapt.describe(adapt.Candidate("as-is", "raw"), (None, 28, 28, 1), **kwargs) == \
            "kept as 28×28; raw pixels in [0, 255]"
        assert adapt.describe(adapt.Candidate("resize", "caffe"), (None, 32, 32, 3), **kwargs) == (
            "28×28 resized (bilinear) to 32×32; gray channel repeated ×3; "
            "VGG-style preprocess_input (BGR, ImageNet channel means subtracted from 0-255 pixels)")


def test_adapted_bytes_bound_the_larger_of_source_and_result() -> None:
    assert adapt.adapted_bytes((None, 224, 224, 3), source=(128, 128, 3)) == 4 * 224 * 224 * 3
    assert adapt.adapted_bytes((None, 32, 32, 3), source=(128, 128, 3)) == 4 * 128 * 128 * 3
    assert adapt.adapted_bytes((None, 784)) == 4 * 784
    assert adapt.adapted_bytes((None, 224, 224, 3)) == 4 * 224 * 224 * 3


def test_chunks_of_rgb_adapt_like_the_whole() -> None:
    shape, cand = (None, 56, 48, 3), adapt.Candidate("resize", "standard")
    whole = adapt.adapt(SMALL_RGB, shape, cand, STATS)
    parts = np.concatenate([adapt.adapt(SMALL_RGB[i : i + 2], shape, cand, STATS) for i in range(0, 3, 2)])
    assert np.array_equal(whole, parts)

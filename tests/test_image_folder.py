"""grader.inputs.image_folder: image-folder data sets read deterministically, with every problem named."""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grader.inputs.datasets import DatasetError
from grader.errors import GraderError
from grader.inputs.image_folder import MAX_PROBLEMS, ImageFolderError, load_image_folder

RNG = np.random.default_rng(0)


def _rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, image: Image.Image | np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (Image.fromarray(image) if isinstance(image, np.ndarray) else image).save(path, **kwargs)
    return path


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels but holds none: what a decompression bomb looks like to a reader."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _rotated_jpeg(path: Path) -> Path:
    """A 40×20 (w×h) JPEG, white on its left half, stored with EXIF orientation 6 (shown turned 90° clockwise:
    20 wide, 40 high, white on top)."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(path, pixels, exif=exif, quality=95)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    """Layout A: two classes, mixed formats and sizes."""
    root = tmp_path / "set"
    _save(root / "dog" / "b.jpg", _rgb(30, 40), quality=90)
    _save(root / "dog" / "a.png", _rgb(16, 16))
    _save(root / "dog" / "gray.png", RNG.integers(0, 256, (20, 20), dtype=np.uint8))
    _save(root / "cat" / "rgba.PNG", np.dstack([_rgb(16, 16), np.full((16, 16), 7, np.uint8)]))
    _rotated_jpeg(root / "cat" / "rotated.jpeg")
    _save(root / "cat" / "c.bmp", _rgb(10, 12))
    _save(root / "cat" / "d.gif", _rgb(8, 8))
    _save(root / "cat" / "e.webp", _rgb(9, 9), lossless=True)
    return root


# --------------------------------------------------------------------------------------------
# Layout A: one folder per class
# --------------------------------------------------------------------------------------------


def test_folders_layout_reads_every_format_sorted(folders: Path) -> None:
    data = load_image_folder(folders, size=(16, 16))
    assert data.class_names == ("cat", "dog") and data.info.class_names_from == "folders"
    assert data.info.layout == "folders"
    assert data.files == ("cat/c.bmp", "cat/d.gif", "cat/e.webp", "cat/rgba.PNG", "cat/rotated.jpeg",
                          "dog/a.png", "dog/b.jpg", "dog/gray.png")
    assert data.images.shape == (8, 16, 16, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and data.labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    assert data.info.warnings == ()


def test_pixels_are_pillow_rgb_resized_bilinear(folders: Path) -> None:
    data = load_image_folder(folders, size=(24, 20))
    by_name = dict(zip(data.files, data.images))
    want = np.asarray(Image.open(folders / "dog" / "b.jpg").convert("RGB").resize((20, 24), Image.Resampling.BILINEAR))
    assert np.array_equal(by_name["dog/b.jpg"], want)  # size is (height, width)
    gray = np.asarray(Image.open(folders / "dog" / "gray.png").resize((20, 24), Image.Resampling.BILINEAR))
    assert np.array_equal(by_name["dog/gray.png"][..., 1], gray)
    assert np.array_equal(by_name["dog/gray.png"][..., 0], by_name["dog/gray.png"][..., 2])


def test_rgba_loses_its_alpha_and_same_size_is_not_resampled(folders: Path) -> None:
    data = load_image_folder(folders, size=(16, 16))
    stored = np.asarray(Image.open(folders / "cat" / "rgba.PNG"))
    assert np.array_equal(data.images[data.files.index("cat/rgba.PNG")], stored[..., :3])
    assert np.array_equal(data.images[data.files.index("dog/a.png")], np.asarray(Image.open(folders / "dog" / "a.png")))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    _rotated_jpeg(tmp_path / "only" / "r.jpg")
    upright = load_image_folder(tmp_path, size=(40, 20)).images[0]  # 40 high, 20 wide, as shown
    assert upright[:20].mean() > 220 and upright[20:].mean() < 30  # white on top


def test_grayscale_on_request(folders: Path) -> None:
    data = load_image_folder(folders, size=(16, 16), grayscale=True)
    assert data.images.shape == (8, 16, 16) and data.info.grayscale
    want = np.asarray(Image.open(folders / "dog" / "a.png").convert("L"))
    assert np.array_equal(data.images[data.files.index("dog/a.png")], want)


def test_class_names_from_caller_then_labels_txt(folders: Path) -> None:
    given = load_image_folder(folders, size=(8, 8), class_names=["dog", "cat", "bird"])
    assert given.class_names == ("dog", "cat", "bird") and given.info.class_names_from == "caller"
    assert given.labels.tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert any("'bird' has no folder" in w for w in given.info.warnings)
    (folders / "labels.txt").write_text("dog\n cat \n\n", encoding="utf-8")
    txt = load_image_folder(folders, size=(8, 8))
    assert txt.class_names == ("dog", "cat") and txt.info.class_names_from == "labels.txt"
    assert txt.labels.tolist() == given.labels.tolist()
    assert load_image_folder(folders, size=(8, 8), class_names=["cat", "dog"]).labels.tolist()[0] == 0  # caller wins


def test_hidden_entries_loose_images_and_other_files(folders: Path) -> None:
    _save(folders / ".ipynb_checkpoints" / "x.png", _rgb(8, 8))
    _save(folders / "cat" / "._b.jpg", _rgb(8, 8))  # macOS zip junk
    (folders / "cat" / "notes.txt").write_text("hello")
    _save(folders / "loose.png", _rgb(8, 8))
    data = load_image_folder(folders, size=(8, 8))
    assert len(data.files) == 8 and data.class_names == ("cat", "dog")
    warnings = " | ".join(data.info.warnings)
    assert "loose.png" in warnings and "belong to no class folder" in warnings
    assert "cat/notes.txt" in warnings and "not images" in warnings


# --------------------------------------------------------------------------------------------
# Layout B: labels.csv
# --------------------------------------------------------------------------------------------


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    root = tmp_path / "test"
    for name in ("p1.jpg", "p2.png", "sub/p3.jpg", "sub/deeper/p4.png"):
        _save(root / name, _rgb(12, 14))
    return root


def test_csv_layout_with_bom_semicolons_and_sub_paths(flat: Path) -> None:
    (flat / "labels.csv").write_bytes("\ufeffFileName ; LABEL;note\np2.png;dog;x\n./sub/p3.jpg;cat;\n"
                                      "sub\\deeper\\p4.png;dog;\np1.jpg;cat;\n\n".encode())
    data = load_image_folder(flat, size=(12, 14))
    assert data.info.layout == "csv" and data.info.class_names_from == "csv"
    assert data.files == ("p1.jpg", "p2.png", "sub/deeper/p4.png", "sub/p3.jpg")
    assert data.class_names == ("cat", "dog") and data.labels.tolist() == [0, 1, 1, 0]
    assert np.array_equal(data.images[0], np.asarray(Image.open(flat / "p1.jpg")))


def test_csv_labels_by_index_and_a_named_csv(flat: Path) -> None:
    (flat / "truth.csv").write_text("filename,label\np1.jpg,2\np2.png,0\nsub/p3.jpg,1\nsub/deeper/p4.png,1\n")
    data = load_image_folder(flat, size=(4, 4), csv_name="truth.csv")
    assert data.class_names == ("0", "1", "2") and data.labels.tolist() == [2, 0, 1, 1]
    named = load_image_folder(flat, size=(4, 4), csv_name="truth.csv", class_names=["a", "b", "c"])
    assert named.class_names == ("a", "b", "c") and named.labels.tolist() == [2, 0, 1, 1]
    (flat / "labels.txt").write_text("x\ny\nz\n")
    assert load_image_folder(flat, size=(4, 4), csv_name="truth.csv").class_names == ("x", "y", "z")
    with pytest.raises(ImageFolderError, match="nope.csv not found"):
        load_image_folder(flat, size=(4, 4), csv_name="nope.csv")


def test_csv_mixes_names_and_indices_and_warns_about_unlisted_images(flat: Path) -> None:
    (flat / "labels.csv").write_text("filename,label\np1.jpg,cat\np2.png,1\n")
    data = load_image_folder(flat, size=(4, 4), class_names=["cat", "dog"])
    assert data.labels.tolist() == [0, 1]
    assert any("2 image files" in w and "not listed in labels.csv" in w and "sub/deeper/p4.png" in w
               for w in data.info.warnings)


@pytest.mark.parametrize(
    ("csv_text", "message"),
    [
        ("file,label\np1.jpg,cat\n", "no column filename in the header"),
        ("filename,label\np1.jpg,cat\np1.jpg,dog\n", "labels.csv:3: p1.jpg is listed again (first on line 2)"),
        ("filename,label\np1.jpg,cow\n", "labels.csv:2: label 'cow' of p1.jpg is neither a class ('cat', 'dog') nor an index 0..1"),
        ("filename,label\np1.jpg,7\n", "label '7' of p1.jpg is neither a class"),
        ("filename,label\np1.jpg\n", "labels.csv:2: 1 field, the header has 2"),
        ("", "labels.csv: empty"),
    ],
)
def test_csv_problems_are_named_with_their_line(flat: Path, csv_text: str, message: str) -> None:
    (flat / "labels.csv").write_text(csv_text)
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(flat, size=(4, 4), class_names=["cat", "dog"])
    assert message in str(info.value)


def test_csv_that_is_not_utf8(flat: Path) -> None:
    (flat / "labels.csv").write_bytes("filename,label\np1.jpg,Katze\xe4\n".encode("latin-1"))
    with pytest.raises(ImageFolderError, match="not UTF-8 text"):
        load_image_folder(flat, size=(4, 4))


# --------------------------------------------------------------------------------------------
# Paths never leave the root
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../outside.png", "sub/../../outside.png", "/etc/passwd", "C:\\data\\x.png", "..\\outside.png"])
def test_csv_paths_outside_the_root_are_refused(flat: Path, name: str) -> None:
    _save(flat.parent / "outside.png", _rgb(4, 4))
    (flat / "labels.csv").write_text(f"filename,label\np1.jpg,cat\n{name},cat\n")
    with pytest.raises(ImageFolderError, match="is not a path inside"):
        load_image_folder(flat, size=(4, 4))


def test_symlinks_that_leave_the_root_are_refused(flat: Path, tmp_path: Path) -> None:
    outside = _save(tmp_path / "elsewhere" / "secret.png", _rgb(4, 4))
    (flat / "link.png").symlink_to(outside)
    (flat / "inside.png").symlink_to(flat / "p1.jpg")  # a link within the root is fine
    (flat / "labels.csv").write_text("filename,label\ninside.png,cat\nlink.png,cat\n")
    with pytest.raises(ImageFolderError, match="link.png is a symlink to a file outside") as info:
        load_image_folder(flat, size=(4, 4))
    assert "inside.png" not in str(info.value)
    (flat / "labels.csv").write_text("filename,label\ninside.png,cat\n")
    assert load_image_folder(flat, size=(4, 4)).files == ("inside.png",)


def test_symlinked_class_folders_and_files_that_leave_the_root(folders: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _save(other / "x.png", _rgb(4, 4))
    (folders / "bird").symlink_to(other, target_is_directory=True)
    (folders / "dog" / "stolen.png").symlink_to(other / "x.png")
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(folders, size=(4, 4))
    text = str(info.value)
    assert "bird/: a symlink to a folder outside" in text and "dog/stolen.png: a symlink to a file outside" in text


# --------------------------------------------------------------------------------------------
# Broken files: the hidden set fails as a whole, listing every problem
# --------------------------------------------------------------------------------------------


def test_every_broken_file_is_listed_in_one_error(folders: Path) -> None:
    (folders / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    (folders / "cat" / "empty.png").write_bytes(b"")
    good = (folders / "dog" / "b.jpg").read_bytes()
    (folders / "dog" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folders / "dog" / "bomb.png").write_bytes(_png_header(20000, 20000))  # 400 MP: Pillow itself refuses it
    (folders / "dog" / "huge.png").write_bytes(_png_header(10000, 8000))  # 80 MP: over our 50 MP cap
    (folders / "dog" / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(folders, size=(8, 8))
    err = info.value
    assert isinstance(err, DatasetError) and isinstance(err, GraderError) and err.hint
    text = str(err)
    assert "6 problems in the image folder; the set is refused as a whole" in text
    assert "cat/corrupt.jpg: cannot be read as an image" in text
    assert "cat/empty.png: empty file (0 bytes); replace it with the image, or delete it" in text
    assert "dog/truncated.jpg: cannot be read as an image" in text
    assert "dog/bomb.png: refused by Pillow as a decompression bomb" in text
    assert "dog/huge.png: 10000×8000 pixels (80 MP), more than the 50 MP allowed" in text
    assert "dog/eps.png: not a JPEG/PNG/BMP/GIF/WEBP image (Pillow cannot identify it)" in text  # no EPS decoder
    assert len(err.problems) == 6


def test_unknown_class_folder_when_class_names_are_given(folders: Path) -> None:
    (folders / "cat" / "empty.png").write_bytes(b"")
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(folders, size=(8, 8), class_names=["cat", "bird"])
    text = str(info.value)
    assert "dog/: folder is not one of the classes ('cat', 'bird'); rename it to a class name" in text
    assert "cat/empty.png: empty file" in text  # the files of the known classes are still checked
    assert "2 problems" in text


def test_csv_row_naming_a_missing_file(flat: Path) -> None:
    (flat / "p2.png").write_bytes(b"")
    (flat / "labels.csv").write_text("filename,label\np1.jpg,cat\ngone.jpg,dog\np2.png,dog\n")
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(flat, size=(4, 4))
    text = str(info.value)
    assert "labels.csv:3: gone.jpg does not exist under" in text and "add the file or delete the row" in text
    assert "p2.png: empty file" in text  # decoded anyway, so that one run names every broken file


def test_skip_leaves_broken_files_out_with_warnings(folders: Path) -> None:
    (folders / "cat" / "empty.png").write_bytes(b"")
    (folders / "dog" / "corrupt.jpg").write_bytes(b"garbage")
    data = load_image_folder(folders, size=(8, 8), on_error="skip")
    assert "cat/empty.png" not in data.files and len(data.files) == 8 and len(data.images) == 8
    assert sum(w.startswith("skipped: ") for w in data.info.warnings) == 2
    with pytest.raises(ImageFolderError, match="not one of the classes"):  # set problems still fail
        load_image_folder(folders, size=(8, 8), class_names=["cat"], on_error="skip")


def test_problems_are_capped(tmp_path: Path) -> None:
    for i in range(MAX_PROBLEMS + 7):
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "a" / f"{i:03d}.png").write_bytes(b"")
    with pytest.raises(ImageFolderError) as info:
        load_image_folder(tmp_path, size=(4, 4))
    assert len(info.value.problems) == MAX_PROBLEMS and info.value.more == 7
    assert f"{MAX_PROBLEMS + 7} problems" in str(info.value) and "... and 7 more" in str(info.value)


def test_empty_or_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(ImageFolderError, match="no images found"):
        load_image_folder(tmp_path, size=(4, 4))
    with pytest.raises(ImageFolderError, match="does not exist or is not a folder"):
        load_image_folder(tmp_path / "nope", size=(4, 4))
    (tmp_path / "labels.txt").write_text("a\na\n")
    with pytest.raises(ImageFolderError, match="'a' appears more than once"):
        load_image_folder(tmp_path, size=(4, 4))
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, size=(0, 4))


# --------------------------------------------------------------------------------------------
# Determinism and the content hash
# --------------------------------------------------------------------------------------------


def test_loading_is_deterministic_and_the_hash_follows_the_content(folders: Path, tmp_path: Path) -> None:
    one = load_image_folder(folders, size=(16, 16), workers=1)
    many = load_image_folder(folders, size=(16, 16), workers=4)
    assert np.array_equal(one.images, many.images) and one.files == many.files and one.sha256 == many.sha256
    assert len(one.sha256) == 64

    copy = shutil.copytree(folders, tmp_path / "moved")
    assert load_image_folder(copy, size=(16, 16)).sha256 == one.sha256  # where it lives does not matter

    assert load_image_folder(copy, size=(16, 17)).sha256 != one.sha256  # the requested size does
    assert load_image_folder(copy, size=(16, 16), grayscale=True).sha256 != one.sha256
    assert load_image_folder(copy, size=(16, 16), class_names=["cat", "dog", "x"]).sha256 != one.sha256

    _save(copy / "dog" / "a.png", _rgb(16, 16))  # one file's content
    assert load_image_folder(copy, size=(16, 16)).sha256 != one.sha256
    shutil.copytree(folders, tmp_path / "renamed")
    (tmp_path / "renamed" / "dog" / "a.png").rename(tmp_path / "renamed" / "dog" / "a2.png")
    assert load_image_folder(tmp_path / "renamed", size=(16, 16)).sha256 != one.sha256


def test_csv_and_folder_hashes_see_labels(flat: Path) -> None:
    (flat / "labels.csv").write_text("filename,label\np1.jpg,cat\np2.png,dog\n")
    first = load_image_folder(flat, size=(4, 4), class_names=["cat", "dog"])
    (flat / "labels.csv").write_text("filename,label\np1.jpg,dog\np2.png,cat\n")
    swapped = load_image_folder(flat, size=(4, 4), class_names=["cat", "dog"])
    assert first.sha256 != swapped.sha256 and np.array_equal(first.images, swapped.images)
    (flat / "labels.csv").write_text("filename,label\np2.png,0\np1.jpg,1\n")  # same content by index, rows reordered
    assert load_image_folder(flat, size=(4, 4), class_names=["cat", "dog"]).sha256 == swapped.sha256


def test_info_round_trips_through_json(folders: Path) -> None:
    from grader.inputs.image_folder import ImageFolderInfo

    info = load_image_folder(folders, size=(8, 8), class_names=["cat", "dog", "bird"]).info
    assert ImageFolderInfo.model_validate_json(info.model_dump_json()) == info

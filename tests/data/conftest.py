"""Fixtures: tiny image folders with good images of odd modes and corrupt files."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def save(path: Path, img: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)
    return path


def rgb(seed: int, size: int = 12) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def make_class_folder(root: Path, classes: dict[str, int], size: int = 12) -> Path:
    """root/<class>/<i>.png with `n` random RGB images per class."""
    for c, (name, n) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            save(root / name / f"{i:03d}.png", rgb(100 * c + i, size))
    return root


def odd_mode_images() -> dict[str, tuple[Image.Image, str | None]]:
    """file name -> (image, format): every mode the scanner must convert to RGB."""
    grey = np.arange(144, dtype=np.uint8).reshape(12, 12)
    rgba = np.dstack([np.full((12, 12, 3), 10, np.uint8), np.full((12, 12), 0, np.uint8)])
    return {
        "grey.png": (Image.fromarray(grey), None),
        "la.png": (Image.fromarray(grey).convert("LA"), None),
        "rgba.png": (Image.fromarray(rgba), None),
        "palette.gif": (rgb(1).convert("P"), None),
        "sixteen.png": (Image.fromarray(grey.astype(np.uint16) * 257), None),
        "int32.tif": (Image.fromarray(grey.astype(np.int32) * 257), "TIFF"),
        "cmyk.jpg": (rgb(2).convert("CMYK"), "JPEG"),
        "cmyk.tif": (rgb(3).convert("CMYK"), "TIFF"),
        "png_named.jpg": (rgb(4), "PNG"),
        "one_bit.bmp": (Image.fromarray(grey > 70), None),
    }


def corrupt_files() -> dict[str, bytes]:
    """file name -> bytes of files with an image extension that cannot be decoded."""
    buf = io.BytesIO()
    rgb(5, 64).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    return {"empty.png": b"", "truncated.jpg": jpeg[: len(jpeg) // 2], "text.png": b"hello, not an image\n"}


@pytest.fixture
def messy_folder(tmp_path: Path) -> Path:
    """Two classes: 'a' holds every odd mode + corrupt files + non-image files; 'b' 3 plain images."""
    root = tmp_path / "messy"
    for name, (img, fmt) in odd_mode_images().items():
        save(root / "a" / name, img, fmt)
    for name, data in corrupt_files().items():
        (root / "a" / name).write_bytes(data)
    (root / "a" / "notes.txt").write_text("ignored")
    (root / "a" / ".DS_Store").write_bytes(b"\0\1")
    make_class_folder(root, {"b": 3})
    return root


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """Three classes with 10, 7 and 5 images: the one-sub-folder-per-class layout."""
    return make_class_folder(tmp_path / "classes", {"cat": 10, "dog": 7, "eel": 5})

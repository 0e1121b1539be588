"""Decode any image file PIL reads into 8-bit RGB, and resize it: the single pixel path.

The folder scanner, `Dataset.arrays`, `load_split` and the tf.data pipeline all call these
functions, so a model is trained, evaluated and parity-checked on exactly the same pixels.

Conversion rules (odd modes are converted, never rejected):
- L, 1, P, CMYK, YCbCr, RGBX ...: PIL's own conversion to RGB.
- Alpha (RGBA, LA, PA, P with transparency): composited over a WHITE background, which is how
  image viewers show it. (Dropping alpha instead would expose arbitrary colours hidden under fully
  transparent pixels.) Opaque images are unchanged.
- 16-bit grey (I;16, I;16B, I;16L): scaled to 0..255 by dividing by 257 (65535 -> 255).
- 32-bit integer (I): treated as 16-bit (/257) when its maximum exceeds 255, else as 8-bit.
- Float (F): treated as 0..1 when its maximum is <= 1, else as 0..255; clipped.
- EXIF orientation is applied, so a phone photo is upright. Multi-frame files use the first frame.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from edgexfer.errors import UserError

#: File extensions treated as images; every other file is ignored (and counted).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
     ".pnm"}
)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_WHITE = (255, 255, 255, 255)


class ImageDecodeError(Exception):
    """A file could not be decoded; `str(exc)` is the human-readable reason."""


def decode_bytes(data: bytes) -> np.ndarray:
    """Verify, fully decode and convert encoded image bytes to a uint8 [H, W, 3] array."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # catches bad checksums and truncation that lazy loading would hide
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(to_rgb(img), dtype=np.uint8)
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image (PIL cannot identify the format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None


def decode_file(path: str) -> np.ndarray:
    """Read and decode one file to uint8 RGB; ImageDecodeError says why it failed."""
    return decode_bytes(read_bytes(path))


def read_bytes(path: str) -> bytes:
    """Read a file, turning OS errors into ImageDecodeError (unreadable, permission denied)."""
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ImageDecodeError(f"unreadable: {exc.strerror or exc}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a PIL image of any common mode to 8-bit RGB (rules in the module docstring)."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = Image.fromarray(_high_depth_to_uint8(img))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE)
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """Scale 16/32-bit integer or float grey pixels to 0..255 (why: PIL's convert('L') clips them)."""
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        scale = 255.0 if arr.size and np.nanmax(arr) <= 1.0 else 1.0
        return np.clip(np.nan_to_num(arr) * scale, 0, 255).round().astype(np.uint8)
    arr = arr.astype(np.int64)
    if img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
        return (np.clip(arr, 0, 65535) / 257.0).round().astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def normalize_size(image_size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """Accept N or (H, W); return (H, W) with positive ints, or None for native resolution."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise UserError(f"Expected image_size as N or (height, width) with positive ints. Received: {image_size!r}")
    return size  # type: ignore[return-value]


def resize_rgb(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize a uint8 [H, W, 3] array to (H, W) with PIL bilinear (antialiased when shrinking)."""
    if size is None or image.shape[:2] == tuple(size):
        return image
    out = Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(out, dtype=np.uint8)

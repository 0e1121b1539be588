"""The one pixel path: decode any image file PIL reads to uint8 RGB at a target size (numpy + PIL only).

Training and serving both decode here, so the same file at the same size gives the same pixels everywhere:
the folder scanner, `Dataset.arrays`, `load_split` and the tf.data pipeline (training, evaluation, export
parity) and `edgexfer.runtime` (`Model.predict` / `classify` on paths and PIL images, `edgexfer predict`,
the device app). A difference here is training/serving skew, so there is no second copy of any step.

`decode(source, size)` on a file path or bytes:
1. the header's width x height is checked against the pixel limit before anything is decoded
   (`max_pixels_limit`: a 12 KB PNG can declare 100 million pixels);
2. PNG files are verified (checksums that lazy loading skips), as the scanner always did;
3. a JPEG with a target size is decoded in draft mode: libjpeg scales by 1/2, 1/4 or 1/8 inside the
   decoder, keeping at least DRAFT_GAP times the target in each direction (Pillow's `thumbnail` default).
   On photos for a small model that is 2-3x less work, within ~0.2 grey levels of a full decode on average;
4. conversion to RGB (odd modes are converted, never rejected):
   - EXIF orientation is applied, so a phone photo is upright. Multi-frame files use the first frame.
   - L, 1, P, CMYK, YCbCr, RGBX ...: PIL's own conversion to RGB.
   - alpha (RGBA, LA, PA, P with transparency) is composited over WHITE, as image viewers show it
     (dropping it would expose whatever colours hide under fully transparent pixels).
   - 16-bit grey (I;16*) is scaled to 0..255 by /257; 32-bit integer (I) the same when its maximum
     exceeds 255, else taken as 8-bit; float (F) as 0..1 when its maximum is <= 1, else 0..255, clipped;
5. one-channel models get PIL's RGB -> L conversion of that result;
6. a PIL bilinear resize (antialiased when shrinking) to (H, W), aspect ratio not kept.

A PIL image object skips steps 2 and 3: its pixels are already decoded, and the caller's object is never
changed. `decode_many` decodes a list across threads (PIL releases the GIL while it decodes and resizes).
One image that cannot be used raises `ImageDecodeError`, an `ImageError` naming it, with a short `.reason`.
"""
from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any, Callable, Iterable, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageFile, ImageOps

from edgexfer._env import env_number
from edgexfer.errors import ImageError, UserError

#: File extensions read as images, everywhere (scanner, `edgexfer predict DIR`, the app's watched folder).
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm",
     ".pnm"}
)
#: The same set, sorted, as a tuple (for `str.endswith`).
IMAGE_SUFFIXES = tuple(sorted(IMAGE_EXTENSIONS))
DEFAULT_MAX_PIXELS = 64_000_000  # one decoded image: 192 MB as RGB; an 8K frame is 33 million pixels
MAX_PIXELS_ENV = "EDGEXFER_MAX_IMAGE_PIXELS"
#: a JPEG is decoded at a reduced scale that keeps at least this many times the target size
DRAFT_GAP = 2.0
MAX_WORKERS = 8  # decoding threads; more only fight over the GIL between the C calls

_DRAFT_FORMATS = frozenset({"JPEG", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
_ORIENTATION = 0x0112  # EXIF tag
_WHITE = (255, 255, 255, 255)
_CHANNEL_MODES = {3: "RGB", 1: "L"}
#: what a damaged or hostile file makes PIL raise while reading its header or pixels
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

Size = tuple[int, int]
T = TypeVar("T")
R = TypeVar("R")


class ImageDecodeError(ImageError):
    """One image cannot be used. `str(exc)` names it and says what to do; `reason` is the short why
    ("not an image ...", "corrupt or truncated ...") that the scanner records per skipped file."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- sizes and limits ---------------------------------------------------------------------------------------
def normalize_size(image_size: int | tuple[int, int] | list[int] | None) -> Size | None:
    """Accept N or (H, W); return (H, W) with positive ints, or None for native resolution."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        image_size = (int(image_size), int(image_size))
    size = tuple(int(v) for v in image_size)
    if len(size) != 2 or min(size) < 1:
        raise UserError(f"Expected image_size as N or (height, width) with positive ints. Received: {image_size!r}")
    return size  # type: ignore[return-value]


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit for one image: `max_pixels`, else EDGEXFER_MAX_IMAGE_PIXELS, else 64 million.

    Why a limit of our own: PIL only refuses far larger images (with an exception type of its own), and
    the header gives the size before anything is decoded.
    """
    if max_pixels is None:
        return env_number(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, int)
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise UserError(f"Expected max_pixels ({MAX_PIXELS_ENV}) to be a positive integer. Received: "
                        f"{max_pixels!r}.")
    return max_pixels


def is_image_name(name: str) -> bool:
    """True for a file name with an image extension that is not hidden (".DS_Store", "._x.jpg")."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# -- decoding -------------------------------------------------------------------------------------------------
def decode(source: Any, size: int | tuple[int, int] | None = None, *, channels: int = 3,
           max_pixels: int | None = None) -> np.ndarray:
    """uint8 [H, W, channels] of a file path, encoded bytes or PIL image, resized to `size` (None: native).

    The steps are in the module docstring; ImageDecodeError (an ImageError) names an image that cannot be
    used, UserError a bad argument.
    """
    size, limit = normalize_size(size), max_pixels_limit(max_pixels)
    mode = _channel_mode(channels)
    label = describe(source)
    try:
        if is_pil(source):
            _check_pixels(source.size, label, limit)
            return _pixels(source, size, mode)
        with _open_file(source, label) as fh:
            img = _identify(fh, label)
            _check_pixels(img.size, label, limit)  # from the header: nothing decoded yet
            img = _verified(img, fh)
            _draft(img, size)
            img.load()
            return _pixels(img, size, mode)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:  # larger still than PIL's own cap (checked before ours)
        raise ImageDecodeError(f"Expected an image of at most {limit:,} pixels. Received: {label}, larger than "
                               f"PIL accepts ({exc}). Resize it before using it.", f"image too large: {exc}") from None
    except _DECODE_ERRORS as exc:
        reason = f"corrupt or truncated image: {type(exc).__name__}: {exc}"
        raise ImageDecodeError(f"Expected a readable image file. Received: {label}, which cannot be decoded "
                               f"({reason}).", reason) from None


def decode_many(sources: Sequence[Any], size: int | tuple[int, int] | None = None, *, channels: int = 3,
                max_pixels: int | None = None) -> list[np.ndarray | ImageDecodeError]:
    """`decode` of each source, in order, across threads; an image that cannot be used is its error.

    Why errors are returned, not raised: one bad file among many must not cost the others their pixels.
    Bad arguments (size, channels, max_pixels) raise UserError before anything is decoded.
    """
    size, limit = normalize_size(size), max_pixels_limit(max_pixels)
    _channel_mode(channels)

    def one(source: Any) -> np.ndarray | ImageDecodeError:
        try:
            return decode(source, size, channels=channels, max_pixels=limit)
        except ImageDecodeError as exc:
            return exc

    return parallel_map(one, sources)


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of an image file (the scanner hashes them, then decodes them); ImageDecodeError if unreadable."""
    label = describe(path)
    with _open_file(path, label) as fh:
        try:
            return fh.read()
        except OSError as exc:  # an I/O error mid-file (a failing card): that file, not the whole scan
            reason = f"unreadable: {exc.strerror or exc}"
            raise ImageDecodeError(f"Expected a readable image file. Received: {label} ({reason}).", reason) from None


def to_rgb(img: Image.Image) -> Image.Image:
    """An upright 8-bit RGB copy of a PIL image of any mode (conversion rules in the module docstring)."""
    img = _upright(img)
    if img.mode in _HIGH_DEPTH_MODES:
        img = Image.fromarray(_high_depth_to_uint8(img))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def resize(img: Image.Image, size: Size | None) -> Image.Image:
    """`img` at (H, W) with PIL bilinear (antialiased when shrinking); unchanged when already that size."""
    if size is None or img.size == (size[1], size[0]):
        return img
    return img.resize((size[1], size[0]), Image.Resampling.BILINEAR)


def resize_rgb(image: np.ndarray, size: int | tuple[int, int] | None) -> np.ndarray:
    """A uint8 [H, W, 3] array resized exactly as `decode` resizes (builtin datasets are arrays)."""
    size = normalize_size(size)
    if size is None or image.shape[:2] == size:
        return image
    return np.asarray(resize(Image.fromarray(image), size), dtype=np.uint8)


# -- helpers ----------------------------------------------------------------------------------------------
def is_pil(x: Any) -> bool:
    return isinstance(x, Image.Image)


def describe(source: Any) -> str:
    """How messages name an image: its path, else its kind."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"{len(source)} bytes of image data"
    return "the PIL image" if is_pil(source) else type(source).__name__


def _channel_mode(channels: int) -> str:
    if channels not in _CHANNEL_MODES:
        raise UserError(f"Expected a model of 1 or 3 channels to decode images for. Received: {channels} channels. "
                        "Pass arrays of the model's shape instead.")
    return _CHANNEL_MODES[channels]


def _open_file(source: Any, label: str) -> IO[bytes]:
    """A binary file object over a path or bytes; OS errors become an ImageDecodeError naming the file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(source)
    if not isinstance(source, (str, os.PathLike)):
        raise ImageDecodeError(f"Expected a file path, image bytes or a PIL image. Received: {label}.",
                               f"not an image source: {label}")
    try:
        return open(source, "rb")  # noqa: SIM115  (closed by the caller's with-block)
    except FileNotFoundError:
        raise ImageDecodeError(f"Expected an image file. Received: {label} (not found).", "not found") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"Expected an image file. Received: {label} (a directory).", "a directory") from None
    except OSError as exc:
        reason = f"unreadable: {exc.strerror or exc}"
        raise ImageDecodeError(f"Expected a readable image file. Received: {label} ({reason}).", reason) from None


def _identify(fh: IO[bytes], label: str) -> ImageFile.ImageFile:
    """PIL's image object over `fh` (header read, pixels not), or why there is none."""
    try:
        return Image.open(fh)
    except Image.UnidentifiedImageError:
        empty = fh.seek(0, io.SEEK_END) == 0
        reason = "empty file (0 bytes)" if empty else "not an image (PIL cannot identify the format)"
        raise ImageDecodeError(f"Expected a readable image file. Received: {label}, which cannot be decoded "
                               f"({reason}).", reason) from None


def _check_pixels(size: tuple[int, int], label: str, limit: int) -> None:
    width, height = size
    if width * height > limit:
        raise ImageDecodeError(
            f"Expected an image of at most {limit:,} pixels. Received: {label}, {width}x{height} = "
            f"{width * height:,} pixels (read from its header, not decoded). Resize it, or raise the limit "
            f"(max_pixels=..., {MAX_PIXELS_ENV}).", f"{width}x{height} pixels, over the limit of {limit:,}")


def _verified(img: ImageFile.ImageFile, fh: IO[bytes]) -> ImageFile.ImageFile:
    """Run the format's integrity check and reopen; only PNG has one (its chunk checksums).

    Why only then: verify() leaves the image unusable, and reopening costs a second header parse that
    would buy nothing for a JPEG, whose verify() does nothing.
    """
    if type(img).verify is ImageFile.ImageFile.verify:
        return img
    img.verify()
    fh.seek(0)
    return Image.open(fh)


def _draft(img: ImageFile.ImageFile, size: Size | None) -> None:
    """Ask libjpeg for a reduced-scale decode that keeps DRAFT_GAP x the target (module docstring, step 3)."""
    if size is None or img.format not in _DRAFT_FORMATS:
        return
    height, width = size
    if img.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # stored sideways: the target turns with it
        height, width = width, height
    img.draft("RGB", (int(width * DRAFT_GAP), int(height * DRAFT_GAP)))


def _upright(img: Image.Image) -> Image.Image:
    """`img` turned by its EXIF orientation; the same object when it has none (no copy)."""
    if img.getexif().get(_ORIENTATION, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(img)
    return img


def _pixels(img: Image.Image, size: Size | None, mode: str) -> np.ndarray:
    """Decoded image -> uint8 HWC array: conversion, channel mode, resize (steps 4-6)."""
    out = to_rgb(img)
    if mode != "RGB":
        out = out.convert(mode)
    arr = np.array(resize(out, size), dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


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


# -- threads --------------------------------------------------------------------------------------------------
_THREAD_PREFIX = "edgexfer-decode"
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def decode_workers() -> int:
    """Threads for decoding: the CPUs this process may use, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def parallel_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(x) for x in items], run on the shared decoding threads when there is more than one item.

    Why one shared pool: threads are started once, not per call (a batch-1 predict pays nothing), and many
    threads calling predict at once share the cores instead of each starting its own pool.
    """
    items = list(items)
    nested = threading.current_thread().name.startswith(_THREAD_PREFIX)  # a worker waiting on workers could deadlock
    if len(items) < 2 or nested or decode_workers() < 2:
        return [fn(x) for x in items]
    return list(_shared_pool().map(fn, items))


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(decode_workers(), thread_name_prefix=_THREAD_PREFIX)
        return _pool


def _forget_pool() -> None:
    """In a forked child the parent's threads do not exist: a new pool is started on first use."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)

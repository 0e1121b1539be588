"""Turn what callers pass into a validated NHWC batch (uint8 or float32), and (de)quantize for int8 engines.

Accepted: a uint8 / float (16, 32, 64) numpy array, HWC (one image) or NHWC; a PIL image; a file path; or a
list/tuple of any of these (arrays in a list must be single HWC images). PIL images and files are decoded to
RGB (or L for one-channel models) and resized to the input spec by `edgexfer.imaging.decode`, the decode the
training side uses (EXIF orientation, alpha over white, 16-bit scaling, JPEG draft mode, PIL bilinear), several
files at once across threads. Arrays are NOT resized: an array of the wrong height/width is an error (resize it
yourself, or pass PIL images / paths).

Files and PIL images are refused (ImageError) above a pixel limit read from the header before decoding
(`imaging.max_pixels_limit`: 64 million by default, EDGEXFER_MAX_IMAGE_PIXELS or `Model.max_pixels`). A file
that cannot be read is an ImageError naming it; `prepare_each` collects those per image.
"""
from __future__ import annotations

import functools
import math
import os
import sys
from typing import Any

import numpy as np

from edgexfer.errors import ImageError, UserError
from edgexfer.manifest import InputSpec, QuantParams

_FLOATS = (np.float16, np.float64)


def prepare(x: Any, spec: InputSpec, max_pixels: int | None = None) -> np.ndarray:
    """A C-contiguous uint8 or float32 array [N, H, W, C] matching `spec`, or UserError saying what is wrong.

    The first image that cannot be used raises (an ImageError naming it); `prepare_each` keeps going instead.
    """
    if isinstance(x, np.ndarray):
        return check_array(x, spec)
    items = _items(x, spec)
    decoded = _decode_files(items, spec, max_pixels)
    return _stack([_one(item, spec, i, decoded) for i, item in enumerate(items)], spec)


def prepare_each(x: Any, spec: InputSpec, max_pixels: int | None = None
                 ) -> tuple[np.ndarray | None, list[int], dict[int, ImageError]]:
    """Like `prepare`, image by image: (batch of the usable images or None, their indices, errors by index).

    Why: one unreadable file among many must not cost the others their results. An array batch is one
    input, checked as a whole (a wrong shape is the caller's bug, not one bad image).
    """
    if isinstance(x, np.ndarray):
        batch = check_array(x, spec)
        return batch, list(range(len(batch))), {}
    items = _items(x, spec)
    decoded = _decode_files(items, spec, max_pixels)
    arrays, good, errors = [], [], {}
    for i, item in enumerate(items):
        try:
            arrays.append(_one(item, spec, i, decoded))
        except ImageError as exc:
            errors[i] = exc
            continue
        good.append(i)
    return (_stack(arrays, spec) if arrays else None), good, errors


def _items(x: Any, spec: InputSpec) -> list[Any]:
    if isinstance(x, (str, os.PathLike)) or _is_pil(x):
        return [x]
    if isinstance(x, (list, tuple)):
        if not x:
            raise UserError(f"Expected at least one image of shape {spec.shape}. Received: an empty "
                            f"{type(x).__name__}.")
        return list(x)
    raise UserError(f"Expected a numpy array, a PIL image, a file path or a list of them. "
                    f"Received: {type(x).__name__}.")


def _stack(arrays: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """One batch from single images already checked to have the spec's shape (dtypes may differ)."""
    return check_array(np.stack(arrays), spec)


def check_array(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    if arr.dtype != np.uint8 and arr.dtype != np.float32:
        if arr.dtype.type not in _FLOATS:
            raise UserError(f"Expected image values as uint8 (0..255) or float32 (0..255). "
                            f"Received: dtype {arr.dtype}. Cast with .astype('uint8') or .astype('float32').")
        arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    elif arr.ndim != 4:
        raise UserError(f"Expected one image (H, W, C) = {spec.shape} or a batch (N, H, W, C) = "
                        f"(N, {spec.height}, {spec.width}, {spec.channels}). Received: rank {arr.ndim} array "
                        f"of shape {arr.shape}.")
    n, h, w, c = arr.shape
    if n == 0:
        raise UserError(f"Expected at least one image. Received: an empty batch of shape {arr.shape}.")
    if c != spec.channels:
        raise UserError(f"Expected {spec.channels} channels (NHWC, shape (N, {spec.height}, {spec.width}, "
                        f"{spec.channels})). Received: {c} channels in shape {arr.shape}"
                        f"{' (channels-first? transpose to NHWC)' if arr.shape[1] == spec.channels else ''}.")
    if (h, w) != (spec.height, spec.width):
        raise UserError(f"Expected images of {spec.height}x{spec.width} (H x W). Received: {h}x{w} in shape "
                        f"{arr.shape}. Arrays are not resized: resize them first, or pass PIL images or file "
                        "paths, which are resized to the model's input size.")
    if arr.dtype == np.float32 and not _finite(arr):
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.argwhere(bad)[0][0]
            raise UserError(f"Expected finite pixel values (0..255). Received: {int(bad.sum())} NaN/inf "
                            f"values (first in image {first}).")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def _finite(arr: np.ndarray) -> bool:
    """One fast pass (a BLAS dot product): NaN/inf propagate, so a finite result means finite values.

    An infinite result can also come from huge finite values; the caller then checks element-wise.
    """
    flat = arr.reshape(-1) if arr.flags.c_contiguous else np.ravel(arr)
    with np.errstate(over="ignore", invalid="ignore"):
        return math.isfinite(float(flat.dot(flat)))


# -- decoding files and PIL images (edgexfer.imaging: the decode training uses) ----------------------------
def load_image(item: Any, spec: InputSpec, max_pixels: int | None = None) -> np.ndarray:
    """A file path or PIL image as uint8 HWC at the spec's size, decoded exactly as training decodes it
    (`edgexfer.imaging.decode`); an ImageError names an image that cannot be used."""
    from edgexfer import imaging

    return imaging.decode(item, (spec.height, spec.width), channels=spec.channels, max_pixels=max_pixels)


def _decode_files(items: list[Any], spec: InputSpec, max_pixels: int | None) -> dict[int, Any]:
    """{index: uint8 HWC array or its ImageError} for the file paths and PIL images among `items`, decoded
    in parallel (`imaging.decode_many`); {} when there are none, without importing PIL."""
    wanted = [i for i, item in enumerate(items) if isinstance(item, (str, os.PathLike)) or _is_pil(item)]
    if not wanted:
        return {}
    from edgexfer import imaging

    decoded = imaging.decode_many([items[i] for i in wanted], (spec.height, spec.width), channels=spec.channels,
                                  max_pixels=max_pixels)
    return dict(zip(wanted, decoded))


def _one(item: Any, spec: InputSpec, index: int, decoded: dict[int, Any]) -> np.ndarray:
    """One list item as a single HWC image of the spec's shape, or ImageError naming the item."""
    if index in decoded:
        if isinstance(decoded[index], Exception):
            raise decoded[index]
        return decoded[index]
    if isinstance(item, np.ndarray):
        if item.ndim != 3:
            raise ImageError(f"Expected each array in a list to be one image (H, W, C) = {spec.shape}. "
                             f"Received: item {index} with shape {item.shape}.")
        if item.shape != spec.shape:
            raise ImageError(f"Expected each array in a list to have the model's shape (H, W, C) = {spec.shape}. "
                             f"Received: item {index} with shape {item.shape}. Arrays are not resized: resize "
                             "them first, or pass PIL images or file paths.")
        try:
            return check_array(item, spec)[0]
        except UserError as exc:
            raise ImageError(f"Item {index}: {exc}") from exc
    raise ImageError(f"Expected list items to be arrays, PIL images or file paths. Received: item {index} of "
                     f"type {type(item).__name__}.")


def _is_pil(x: Any) -> bool:
    image_module = sys.modules.get("PIL.Image")  # not imported -> x cannot be a PIL image
    return image_module is not None and isinstance(x, image_module.Image)


def __getattr__(name: str) -> Any:
    """`IMAGE_SUFFIXES` moved to edgexfer.imaging; kept here, looked up on use, for deploy/arm64/compare.py."""
    if name == "IMAGE_SUFFIXES":
        from edgexfer.imaging import IMAGE_SUFFIXES

        return IMAGE_SUFFIXES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- integer engines ---------------------------------------------------------------------------------------
def quantize(batch: np.ndarray, q: QuantParams | None, dtype: np.dtype,
             out: np.ndarray | None = None) -> np.ndarray:
    """real -> integer with q = round(real / scale + zero_point), clipped to the dtype's range.

    uint8 images (the common input) go through a 256-entry lookup table: the same values as the
    arithmetic, in one gather instead of five array passes (it matters at batch 1 on small models).
    With `out` (the engine's own input memory) the result is written there, in the same single pass.
    """
    if q is None:  # an integer input without quantization: the model takes raw 0..255 values
        if batch.dtype == dtype:
            return put(batch, out)
        info = np.iinfo(dtype)
        return put(np.clip(np.rint(batch), info.min, info.max).astype(dtype), out)
    if batch.dtype == np.uint8:
        if float(q.scale) == 1.0:  # the input range pinned to 0..255 at export: no arithmetic at all
            if int(q.zero_point) == 0 and dtype == np.uint8:
                return put(batch, out)
            if int(q.zero_point) == -128 and dtype == np.int8:  # x - 128 in two's complement
                return np.bitwise_xor(batch.view(np.int8), np.int8(-128), out=out)
        table = _uint8_table(float(q.scale), int(q.zero_point), np.dtype(dtype).str)
        return np.take(table, batch, out=out, mode="clip")  # uint8 indices are in range; "clip" skips buffering
    info = np.iinfo(dtype)
    real = batch.astype(np.float32, copy=False)
    return put(np.clip(np.rint(real / np.float32(q.scale) + np.float32(q.zero_point)), info.min, info.max)
               .astype(dtype), out)


def put(arr: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """`arr`, or `arr` copied (and cast) into `out` when one is given."""
    if out is None:
        return arr
    out[...] = arr  # cheaper than np.copyto for small batches, same cast
    return out


@functools.lru_cache(maxsize=32)
def _uint8_table(scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """quantize() of every uint8 value, computed with the same float32 arithmetic."""
    info = np.iinfo(dtype)
    real = np.arange(256, dtype=np.float32)
    table = np.clip(np.rint(real / np.float32(scale) + np.float32(zero_point)), info.min, info.max).astype(dtype)
    table.setflags(write=False)
    return table


def dequantize(out: np.ndarray, q: QuantParams | None) -> np.ndarray:
    """integer -> real: (q - zero_point) * scale in float32. 8-bit outputs take one lookup in a 256-entry
    table of the same values: right after an engine call every numpy operation is slow (the model has
    evicted the caches), and at batch 1 the arithmetic's four operations cost more than the rest of predict."""
    if q is None:
        return out.astype(np.float32)
    if out.dtype == np.int8 or out.dtype == np.uint8:
        return _dequant_table(float(q.scale), int(q.zero_point), out.dtype.str)[out.view(np.uint8)]
    return (out.astype(np.float32) - np.float32(q.zero_point)) * np.float32(q.scale)


@functools.lru_cache(maxsize=32)
def _dequant_table(scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """dequantize() of every 8-bit value, indexed by its bits read as uint8."""
    values = np.arange(256, dtype=np.uint8).view(dtype).astype(np.float32)
    table = (values - np.float32(zero_point)) * np.float32(scale)
    table.setflags(write=False)
    return table

"""The images export needs, rebuilt from run.json through edgexfer.data (no TensorFlow).

- test images: the exact held-out split of the run (parity runs on real images, never noise)
- calibration images: a seeded random sample of the TRAINING split, raw uint8 RGB; the children
  cast them to float32 0..255, which is exactly what the graph takes (preprocessing is inside it)
- validation images: the run's validation split (NNCF accuracy control; never the test split)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgexfer.errors import DataError

SEED = 0


def _split(record: Any, split: str, size: tuple[int, int], required: bool = True) -> Any:
    """(x uint8, y int64) of a recorded split; an empty one is a DataError, or None when not `required`."""
    from edgexfer.data import load_split

    x, y = load_split(record.data, split, size)
    x, y = np.asarray(x), np.asarray(y).astype(np.int64)
    if len(x) == 0 and not required:
        return None
    if len(x) == 0:
        raise DataError(f"The run's {split} split is empty; export needs real {split} images.")
    return x.astype(np.uint8, copy=False), y


def _sample(n_total: int, n: int | None) -> np.ndarray:
    """A seeded subset of indices, kept in the original order (all of them when n is None)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(SEED).choice(n_total, size=n, replace=False))


def test_images(record: Any, size: tuple[int, int], limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    x, y = _split(record, "test", size)
    keep = _sample(len(x), limit)
    return x[keep], y[keep]


def calibration_images(record: Any, size: tuple[int, int], n: int) -> np.ndarray:
    """`n` training images in a seeded random order (the first k of them are a random sample too)."""
    x, _ = _split(record, "train", size)
    order = np.random.default_rng(SEED).permutation(len(x))[:n]
    return np.ascontiguousarray(x[order])


def validation_images(record: Any, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's validation split, or None when it has none (a k-shot run): accuracy control is then off."""
    return _split(record, "val", size, required=False)

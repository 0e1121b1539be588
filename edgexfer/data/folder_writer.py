"""Write a dataset as an image folder (`out/<split>/<class>/<n>.png`) so the folder path is
exercised with real files (`edgexfer data export builtin:NAME DIR`).

The written folder uses the train/ val/ test/ layout, so `open_dataset(out_dir)` reproduces the
same splits and counts. Images are written losslessly at native resolution.
"""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edgexfer.data.dataset import Dataset, open_dataset
from edgexfer.data.splits import SPLITS
from edgexfer.errors import UserError


def write_image_folder(spec_or_dataset: "str | Path | Dataset", out_dir: str | Path, *, overwrite: bool = False,
                       image_size: int | tuple[int, int] | None = None, **open_kwargs: Any) -> Path:
    """Write every split of a dataset as PNG files; return the folder.

    Refuses a non-empty `out_dir` unless overwrite=True, which replaces its train/ val/ test/ folders.
    `open_kwargs` (seed, val_fraction, ...) are passed to open_dataset when a spec is given.
    """
    out = Path(out_dir).expanduser()
    _check_target(out, overwrite)  # before the (slow) open, and before deleting anything
    dataset = open_dataset(spec_or_dataset, **open_kwargs)
    _clear(out)
    for split in SPLITS:
        x, y = dataset.arrays(split, image_size)
        _write_split(out / split, x, y, dataset.class_names)
    return out.resolve()


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected a folder to write images into. Received the file {out}.")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(
            f"{out} is not empty. Choose an empty or new folder, or pass overwrite=True (--overwrite) "
            "to replace its train/ val/ test/ folders."
        )


def _clear(out: Path) -> None:
    """Remove the split folders a previous export left (other files are kept), create `out`."""
    for split in SPLITS:
        if (out / split).exists():
            shutil.rmtree(out / split)
    out.mkdir(parents=True, exist_ok=True)


def _write_split(split_dir: Path, x: np.ndarray, y: np.ndarray, class_names: list[str]) -> None:
    """One folder per class that has images (the split folder always exists), files numbered per class."""
    split_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for label, name in enumerate(class_names):
        class_dir = split_dir / name
        for n, i in enumerate(np.flatnonzero(y == label)):
            class_dir.mkdir(exist_ok=True)
            jobs.append((x[i], class_dir / f"{n:05d}.png"))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda job: Image.fromarray(job[0]).save(job[1]), jobs))

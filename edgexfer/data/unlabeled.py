"""Unlabelled images: every readable image under a folder, any layout, no classes.

Why: AdaBN (`train(adapt_bn=True, unlabeled=DIR)`) needs target-domain images but no labels; a
team often has many more of those than labelled ones. Unreadable files are skipped and counted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgexfer import imaging
from edgexfer.errors import UserError
from edgexfer.imaging import IMAGE_EXTENSIONS


def unlabeled_images(folder: str | Path, image_size: int | tuple[int, int], *,
                     limit: int | None = None) -> tuple[np.ndarray, int]:
    """(uint8 [N, H, W, 3] resized to image_size, number of files skipped as unreadable), sorted by path."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"Expected --unlabeled to be a folder of images. Received: {folder} (not a directory).")
    paths = sorted(p for p in root.rglob("*") if imaging.is_image_name(p.name) and p.is_file())
    decoded = imaging.decode_many(paths[:limit] if limit else paths, image_size)
    images = [im for im in decoded if isinstance(im, np.ndarray)]
    skipped = len(decoded) - len(images)
    if not images:
        raise UserError(f"Expected readable images under {root} (extensions {' '.join(sorted(IMAGE_EXTENSIONS))}). "
                        f"Received: {len(paths)} candidate files, {skipped} unreadable.")
    return np.stack(images).astype(np.uint8, copy=False), skipped

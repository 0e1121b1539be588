"""Unlabelled images: every readable image under a folder, any layout, no classes.

Why: AdaBN (`train(adapt_bn=True, unlabeled=DIR)`) needs target-domain images but no labels; a
team often has many more of those than labelled ones. Unreadable files are skipped and counted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgexfer.data.images import IMAGE_EXTENSIONS, ImageDecodeError, decode_file, normalize_size, resize_rgb
from edgexfer.errors import UserError


def unlabeled_images(folder: str | Path, image_size: int | tuple[int, int], *,
                     limit: int | None = None) -> tuple[np.ndarray, int]:
    """(uint8 [N, H, W, 3] resized to image_size, number of files skipped as unreadable), sorted by path."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise UserError(f"Expected --unlabeled to be a folder of images. Received: {folder} (not a directory).")
    size = normalize_size(image_size)
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                   and not p.name.startswith("."))
    images, skipped = [], 0
    for path in paths[:limit] if limit else paths:
        try:
            images.append(resize_rgb(decode_file(str(path)), size))
        except (OSError, ImageDecodeError):
            skipped += 1
    if not images:
        raise UserError(f"Expected readable images under {root} (extensions {' '.join(sorted(IMAGE_EXTENSIONS))}). "
                        f"Received: {len(paths)} candidate files, {skipped} unreadable.")
    return np.stack(images).astype(np.uint8, copy=False), skipped

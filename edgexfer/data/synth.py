"""Synthetic domain recipes for the builtin datasets (numpy only, deterministic given a generator).

- `colorize`: the colour randomisation that makes the pretraining source (`mnist_color`) teach a
  backbone shapes rather than "white stroke on black". Tune it here (and bump the builtin's
  version in builtin.py so old run records warn that their images changed).
- `blend_over_photos`: the MNIST-M recipe (Ganin et al. 2016): out = |photo_crop - digit| per channel.
"""
from __future__ import annotations

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114])


def _interp_matrix(out_len: int, grid: int) -> np.ndarray:
    """[out_len, grid] weights for bilinear upsampling a `grid`-point signal (align corners)."""
    pos = np.linspace(0.0, grid - 1.0, out_len)
    lo = np.clip(np.floor(pos).astype(int), 0, grid - 2) if grid > 1 else np.zeros(out_len, int)
    frac = pos - lo
    mat = np.zeros((out_len, grid))
    mat[np.arange(out_len), lo] += 1.0 - frac
    if grid > 1:
        mat[np.arange(out_len), lo + 1] += frac
    return mat


def smooth_color_field(rng: np.random.Generator, n: int, h: int, w: int, grid: int = 3) -> np.ndarray:
    """n smooth random colour fields in [0, 1], [n, h, w, 3]: random grid colours, upsampled."""
    coarse = rng.uniform(0.0, 1.0, size=(n, grid, grid, 3)).astype(np.float32).transpose(0, 3, 1, 2)
    rows, cols = _interp_matrix(h, grid).astype(np.float32), _interp_matrix(w, grid).astype(np.float32)
    return (rows @ coarse @ cols.T).transpose(0, 2, 3, 1)  # [n, 3, h, w] -> [n, h, w, 3]


def _foreground_colors(rng: np.random.Generator, background: np.ndarray, min_dist: float) -> np.ndarray:
    """Random stroke colours at least `min_dist` (RGB, 0..1) from each background's mean colour."""
    bg_mean = background.mean(axis=(1, 2))
    fg = rng.uniform(0.0, 1.0, size=bg_mean.shape)
    delta = fg - bg_mean
    norm = np.linalg.norm(delta, axis=1, keepdims=True)
    direction = np.where(norm > 1e-6, delta / np.maximum(norm, 1e-6), 1.0)
    fg = np.where(norm < min_dist, np.clip(bg_mean + direction * min_dist, 0, 1), fg)
    too_close = np.linalg.norm(fg - bg_mean, axis=1) < min_dist * 0.75
    fg[too_close] = np.where(bg_mean[too_close] > 0.5, 0.0, 1.0)  # fall back to maximal contrast
    return fg


def colorize(
    digits_gray: np.ndarray,
    rng: np.random.Generator,
    *,
    invert_prob: float = 0.3,
    contrast: tuple[float, float] = (0.6, 1.0),
    noise: float = 0.03,
    min_dist: float = 0.45,
) -> np.ndarray:
    """Colour-randomise grey digits [N, H, W] (0..255) into uint8 RGB [N, H, W, 3].

    Each digit is alpha-blended (its grey level is the alpha) with a random foreground colour over
    a smooth random colour field (2x2..4x4 random colours, upsampled), then optionally inverted,
    its contrast scaled around the mean, and a little pixel noise added.
    """
    digits = np.asarray(digits_gray, dtype=np.float32)
    n, h, w = digits.shape
    grids = rng.integers(2, 5, size=n)
    background = np.empty((n, h, w, 3), dtype=np.float32)
    for grid in np.unique(grids):
        sel = np.flatnonzero(grids == grid)
        background[sel] = smooth_color_field(rng, len(sel), h, w, int(grid))
    fg = _foreground_colors(rng, background, min_dist).astype(np.float32)
    alpha = (digits / np.float32(255.0))[..., None]
    out = background + (fg[:, None, None, :] - background) * alpha
    invert = rng.uniform(size=n) < invert_prob
    out[invert] = 1.0 - out[invert]
    factor = rng.uniform(*contrast, size=(n, 1, 1, 1)).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * factor + mean
    out += rng.standard_normal(size=out.shape, dtype=np.float32) * np.float32(noise)
    return (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def random_crops(
    photos: list[np.ndarray], n: int, size: tuple[int, int], rng: np.random.Generator
) -> np.ndarray:
    """n random [h, w, 3] crops from random photos, each randomly flipped left-right."""
    h, w = size
    out = np.empty((n, h, w, 3), dtype=np.uint8)
    which = rng.integers(0, len(photos), size=n)
    for i, p in enumerate(which):
        photo = photos[p]
        y = rng.integers(0, photo.shape[0] - h + 1)
        x = rng.integers(0, photo.shape[1] - w + 1)
        crop = photo[y:y + h, x:x + w]
        out[i] = crop[:, ::-1] if rng.uniform() < 0.5 else crop
    return out


def blend_over_photos(digits_gray: np.ndarray, photos: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """MNIST-M: |crop - digit| per channel over random photo crops; uint8 [N, H, W, 3]."""
    digits = np.asarray(digits_gray, dtype=np.int16)
    crops = random_crops(photos, len(digits), digits.shape[1:3], rng).astype(np.int16)
    return np.abs(crops - digits[..., None]).astype(np.uint8)


def luma(images: np.ndarray) -> np.ndarray:
    """Per-pixel luminance of RGB images (used by tests and tuning scripts)."""
    return np.asarray(images, dtype=np.float64) @ _LUMA

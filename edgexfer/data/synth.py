"""Synthetic domain recipes for the builtin datasets (numpy only, deterministic given a generator).

- `colorize`: the colour randomisation that makes the pretraining source (`mnist_color`) teach a
  backbone shapes rather than "white stroke on black". Tune it here (and bump the builtin's
  version in builtin.py so old run records warn that their images changed).
- `blend_over_photos`: the MNIST-M recipe (Ganin et al. 2016): out = |photo_crop - digit| per channel.
"""
from __future__ import annotations

from dataclasses import dataclass

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


# --------------------------------------------------------------------------- domain randomisation


@dataclass(frozen=True)
class Randomization:
    """How far `randomize_digits` varies a source digit. The defaults are the shipped backbone's recipe.

    Every factor is something a digit can look like in some target domain without being a different
    digit: no flips, rotations within +-rotate degrees. Probabilities are per image.
    """

    rotate: float = 12.0  # degrees
    scale: tuple[float, float] = (0.8, 1.15)
    shear: float = 0.15
    shift: float = 0.12  # fraction of the side
    thickness_prob: float = 0.35  # stroke dilated or eroded by one pixel
    texture_prob: float = 0.5  # fractal-noise background instead of a smooth colour field
    fg_texture_prob: float = 0.15  # the stroke is a texture, not one colour
    difference_prob: float = 0.4  # |background - stroke| instead of painting the stroke over it
    invert_prob: float = 0.25
    grey_prob: float = 0.15
    contrast: tuple[float, float] = (0.5, 1.0)
    lowres_prob: float = 0.2  # down to 7..16 px and back: a low-resolution sensor
    blur_prob: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.3)
    noise: tuple[float, float] = (0.0, 0.04)


def randomize_digits(digits_gray: np.ndarray, rng: np.random.Generator,
                     config: Randomization = Randomization()) -> np.ndarray:
    """Domain-randomise grey digits [N, H, W] (0..255) into uint8 RGB [N, H, W, 3].

    Why: a backbone that must transfer to unseen domains should learn digit shape, not the look of
    one source. Each call draws new geometry, stroke, background, blend, colour, resolution, blur
    and noise per image, so calling it once per epoch gives every epoch a new source domain.
    """
    digits = _random_affine(np.asarray(digits_gray, dtype=np.float32) / 255.0, rng, config)
    digits = _random_thickness(digits, rng, config.thickness_prob)
    n, h, w = digits.shape
    background = _backgrounds(rng, n, h, w, config.texture_prob)
    stroke = _strokes(rng, background, config.fg_texture_prob)
    alpha = digits[..., None]
    over = background + (stroke - background) * alpha
    bright = rng.uniform(0.6, 1.0, size=(n, 1, 1, 3)).astype(np.float32)  # a dark stroke would vanish
    difference = np.abs(background - alpha * bright)
    use_diff = (rng.uniform(size=n) < config.difference_prob)[:, None, None, None]
    out = np.where(use_diff, difference, over)
    return _finish(out, rng, config)


def _finish(out: np.ndarray, rng: np.random.Generator, config: Randomization) -> np.ndarray:
    """Photometric steps on composed images [N, H, W, 3] in 0..1: invert, grey, contrast, resolution, blur, noise."""
    n = len(out)
    invert = rng.uniform(size=n) < config.invert_prob
    out[invert] = 1.0 - out[invert]
    grey = rng.uniform(size=n) < config.grey_prob
    out[grey] = (out[grey] @ _LUMA.astype(np.float32))[..., None]
    factor = rng.uniform(*config.contrast, size=(n, 1, 1, 1)).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    out = (out - mean) * factor + mean
    out = _random_lowres(out, rng, config.lowres_prob)
    out = _random_blur(out, rng, config.blur_prob, config.blur_sigma)
    sigma = rng.uniform(*config.noise, size=(n, 1, 1, 1)).astype(np.float32)
    out = out + rng.standard_normal(size=out.shape, dtype=np.float32) * sigma
    return (np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _random_affine(digits: np.ndarray, rng: np.random.Generator, config: Randomization) -> np.ndarray:
    """Rotation, anisotropic scale, shear and shift about the centre; bilinear, zero fill, vectorised."""
    n, h, w = digits.shape
    angles = np.deg2rad(rng.uniform(-config.rotate, config.rotate, n))
    scales = rng.uniform(*config.scale, size=(n, 2))
    shears = rng.uniform(-config.shear, config.shear, n)
    shifts = rng.uniform(-config.shift, config.shift, size=(n, 2)) * np.array([h, w])
    c, s = np.cos(angles), np.sin(angles)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # [n, 2, 2]
    shear = np.tile(np.eye(2), (n, 1, 1))
    shear[:, 0, 1] = shears
    forward = rot @ shear @ (scales[:, :, None] * np.eye(2))
    inverse = np.linalg.inv(forward)  # output pixel -> input pixel
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    grid = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2)  # [hw, 2]
    # input = inverse @ (output - centre - shift) + centre
    src = np.einsum("nij,pj->npi", inverse, grid - centre) - np.einsum("nij,nj->ni", inverse, shifts)[:, None] + centre
    return _bilinear(digits, src[..., 0], src[..., 1]).reshape(n, h, w)


def _bilinear(images: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample images [n, h, w] at float coordinates [n, p]; zero outside."""
    n, h, w = images.shape
    padded = np.zeros((n, h + 2, w + 2), dtype=np.float32)
    padded[:, 1:-1, 1:-1] = images
    r = np.clip(rows + 1.0, 0.0, h + 0.999)
    q = np.clip(cols + 1.0, 0.0, w + 0.999)
    r0, q0 = np.floor(r).astype(np.int64), np.floor(q).astype(np.int64)
    fr, fq = (r - r0).astype(np.float32), (q - q0).astype(np.float32)
    flat = padded.reshape(n, -1)
    stride = w + 2

    def at(rr: np.ndarray, qq: np.ndarray) -> np.ndarray:
        return np.take_along_axis(flat, rr * stride + qq, axis=1)

    top = at(r0, q0) * (1 - fq) + at(r0, q0 + 1) * fq
    bottom = at(r0 + 1, q0) * (1 - fq) + at(r0 + 1, q0 + 1) * fq
    return top * (1 - fr) + bottom * fr


def _random_thickness(digits: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """One-pixel dilation (max of 2x2 shifts) or erosion (min) on a random subset."""
    chosen = rng.uniform(size=len(digits)) < prob
    dilate = rng.uniform(size=len(digits)) < 0.6
    for mask, reduce in ((chosen & dilate, np.maximum), (chosen & ~dilate, np.minimum)):
        if mask.any():
            d = digits[mask]
            shifted = [d, np.roll(d, 1, axis=1), np.roll(d, 1, axis=2), np.roll(np.roll(d, 1, axis=1), 1, axis=2)]
            digits[mask] = reduce.reduce(shifted)
    return digits


def fractal_noise(rng: np.random.Generator, n: int, h: int, w: int, octaves: int = 3) -> np.ndarray:
    """n textures [n, h, w, 3] in 0..1: grey fractal noise (smooth fields at doubling frequencies)
    mapped between two random colours, plus a faint colour field, so they look like photo crops
    (correlated channels) rather than rainbow noise."""
    total = np.zeros((n, h, w, 1), dtype=np.float32)
    persistence = rng.uniform(0.3, 0.7, size=(n, 1, 1, 1)).astype(np.float32)
    for octave in range(octaves):
        grid = min(2 ** (octave + 2), max(h, w))
        # first channel of a colour field: keeps the random draws of the shipped backbone's recipe
        total += smooth_color_field(rng, n, h, w, grid)[..., :1] * persistence ** octave
    low, high = total.min(axis=(1, 2), keepdims=True), total.max(axis=(1, 2), keepdims=True)
    t = (total - low) / np.maximum(high - low, 1e-6)
    c0, c1 = (rng.uniform(size=(n, 1, 1, 3)).astype(np.float32) for _ in range(2))
    tint = smooth_color_field(rng, n, h, w, 2) - 0.5
    return np.clip(c0 + (c1 - c0) * t + 0.2 * tint, 0.0, 1.0)


def _backgrounds(rng: np.random.Generator, n: int, h: int, w: int, texture_prob: float) -> np.ndarray:
    background = np.empty((n, h, w, 3), dtype=np.float32)
    textured = rng.uniform(size=n) < texture_prob
    if textured.any():
        background[textured] = fractal_noise(rng, int(textured.sum()), h, w)
    plain = np.flatnonzero(~textured)
    grids = rng.integers(2, 5, size=len(plain))
    for grid in np.unique(grids):
        sel = plain[grids == grid]
        background[sel] = smooth_color_field(rng, len(sel), h, w, int(grid))
    return background


def _strokes(rng: np.random.Generator, background: np.ndarray, texture_prob: float) -> np.ndarray:
    """Stroke colour per image [N, 1, 1, 3] far enough from the background, or a texture [N, H, W, 3]."""
    n, h, w, _ = background.shape
    solid = np.broadcast_to(_foreground_colors(rng, background, 0.45).astype(np.float32)[:, None, None, :],
                            background.shape)
    textured = (rng.uniform(size=n) < texture_prob)[:, None, None, None]
    return np.where(textured, fractal_noise(rng, n, h, w), solid)


def _random_lowres(images: np.ndarray, rng: np.random.Generator, prob: float) -> np.ndarray:
    """Down to a random 7..16 px and back up (bilinear): the look of a low-resolution sensor."""
    n, h, w, _ = images.shape
    chosen = np.flatnonzero(rng.uniform(size=n) < prob)
    sizes = rng.integers(7, 17, size=len(chosen))
    for size in np.unique(sizes):
        sel = chosen[sizes == size]
        images[sel] = resize_batch(resize_batch(images[sel], (int(size), int(size))), (h, w))
    return images


def _random_blur(images: np.ndarray, rng: np.random.Generator, prob: float, sigma: tuple[float, float]) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    chosen = np.flatnonzero(rng.uniform(size=len(images)) < prob)
    levels = np.round(rng.uniform(*sigma, size=len(chosen)), 1)
    for level in np.unique(levels):
        sel = chosen[levels == level]
        images[sel] = gaussian_filter(images[sel], sigma=(0, float(level), float(level), 0))
    return images


def resize_batch(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (align-corners) resize of uint8/float images [N, H, W, C] to float32 0..255 [N, h, w, C]."""
    n, h, w, c = images.shape
    rows, cols = _interp_matrix(size[0], h).astype(np.float32), _interp_matrix(size[1], w).astype(np.float32)
    x = np.asarray(images, dtype=np.float32).transpose(0, 3, 1, 2)
    return (rows @ x @ cols.T).transpose(0, 2, 3, 1)

"""tf.data input pipeline: decode -> resize -> cache -> shuffle -> batch -> augment -> prefetch.

Decoding and resizing are `edgexfer.imaging.decode` (via tf.numpy_function): the function the scanner,
`Dataset.arrays` and the runtime use, so odd formats (16-bit, CMYK, palette, a PNG named .jpg) work and
the pixels match `arrays()` and serving exactly (no tf.image resize anywhere in training).
Augmentation runs here, after the cache, with stateless random ops seeded from
`tf.data.Dataset.random(seed)`: never inside the model that gets exported, and deterministic for a
given seed. TensorFlow is imported only when a pipeline is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from edgexfer._deps import require
from edgexfer.errors import UserError

FLIP_MODES = (None, "horizontal", "vertical", "horizontal_and_vertical")


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation applied per image in the pipeline.

    flip: one of FLIP_MODES (use None for digits/text, where a mirror changes the class).
    rotation: maximum angle as a fraction of a full turn (0.05 = +-18 degrees), like keras RandomRotation.
    zoom: maximum relative scale change (0.1 = 90%..110%). contrast: factor drawn from [1-c, 1+c].
    """

    flip: str | None = "horizontal"
    rotation: float = 0.05
    zoom: float = 0.1
    contrast: float = 0.2

    def __post_init__(self) -> None:
        if self.flip not in FLIP_MODES:
            raise UserError(f"Expected augment flip in {list(FLIP_MODES)}. Received: {self.flip!r}.")
        for name in ("rotation", "zoom", "contrast"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"Expected augment {name} in [0, 1). Received: {getattr(self, name)!r}.")


def augment_config(augment: Any) -> AugmentConfig | None:
    """False/None -> no augmentation; True -> defaults; a dict or AugmentConfig -> those settings."""
    if augment is None or augment is False:
        return None
    if augment is True:
        return AugmentConfig()
    if isinstance(augment, AugmentConfig):
        return augment
    if isinstance(augment, dict):
        known = {f.name for f in fields(AugmentConfig)}
        unknown = sorted(set(augment) - known)
        if unknown:
            raise UserError(f"Unknown augment settings {unknown}. Known: {sorted(known)}.")
        return AugmentConfig(**augment)
    raise UserError(f"Expected augment as a bool, a dict or an AugmentConfig. Received: {augment!r}.")


def make_tf_dataset(load: Callable[[int], np.ndarray], labels: np.ndarray, size: tuple[int, int] | None,
                    batch_size: int, *, shuffle: bool = False, augment: Any = False, seed: int = 0,
                    repeat: bool = False, cache: bool | str = True):
    """Batches of (float32 [B, H, W, 3] in 0..255, int32 [B]); `load(i)` returns uint8 [H, W, 3]."""
    if size is None:
        raise UserError("Expected image_size=(H, W) for a tf.data pipeline (batches need one size). Received: None.")
    if int(batch_size) < 1:
        raise UserError(f"Expected batch_size >= 1. Received: {batch_size!r}.")
    config = augment_config(augment)
    tf = require("tensorflow", purpose="the tf.data input pipeline")
    ds = _decoded(tf, load, np.asarray(labels), size)
    if cache:
        ds = ds.cache() if cache is True else ds.cache(str(cache))
    if shuffle:
        ds = ds.shuffle(max(len(labels), 1), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(int(batch_size)).map(lambda x, y: (tf.cast(x, tf.float32), y))
    if config is not None:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda batch, s: (augment_batch(tf, batch[0], s, config), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _decoded(tf, load: Callable[[int], np.ndarray], labels: np.ndarray, size: tuple[int, int]):
    """(uint8 image, int32 label) per element, decoded by `load` in a numpy_function."""
    h, w = size
    index = np.arange(len(labels), dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices((index, labels.astype(np.int32)))

    def _load(i: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(load(int(i)), dtype=np.uint8)

    def _map(i, y):
        image = tf.numpy_function(_load, [i], tf.uint8, stateful=False)
        image.set_shape((h, w, 3))
        return image, y

    return ds.map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def augment_batch(tf, images, seed, config: AugmentConfig):
    """Flip / rotate+zoom / contrast a float32 batch with stateless ops derived from `seed` [2]."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    n = tf.shape(images)[0]
    if config.flip in ("horizontal", "horizontal_and_vertical"):
        images = _random_flip(tf, images, seeds[0], axis=2)
    if config.flip in ("vertical", "horizontal_and_vertical"):
        images = _random_flip(tf, images, seeds[1], axis=1)
    if config.rotation or config.zoom:
        angle = tf.random.stateless_uniform([n], seeds[2], -config.rotation, config.rotation) * (2 * math.pi)
        scale = tf.random.stateless_uniform([n], seeds[3], 1 - config.zoom, 1 + config.zoom)
        images = _rotate_zoom(tf, images, angle, scale)
    if config.contrast:
        factor = tf.random.stateless_uniform([n, 1, 1, 1], seeds[4], 1 - config.contrast, 1 + config.contrast)
        mean = tf.reduce_mean(images, axis=[1, 2], keepdims=True)
        images = tf.clip_by_value((images - mean) * factor + mean, 0.0, 255.0)
    return images


def _random_flip(tf, images, seed, axis: int):
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, [axis]), images)


def _rotate_zoom(tf, images, angle, scale):
    """Rotate by `angle` (radians) and scale by `scale` about the centre; reflect at the borders.

    The projective transform maps each output pixel to the input point it samples:
    input = scale * R(angle) @ (output - centre) + centre.
    """
    h, w = images.shape[1], images.shape[2]
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    zeros = tf.zeros_like(cos)
    transforms = tf.stack([cos, -sin, cx - cos * cx + sin * cy,
                           sin, cos, cy - sin * cx - cos * cy, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([h, w], tf.int32),
        fill_value=tf.constant(0.0), interpolation="BILINEAR", fill_mode="REFLECT")

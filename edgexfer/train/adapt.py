"""AdaBN (Li et al., 2016): re-estimate a backbone's BatchNorm statistics on unlabelled target images.

Why: a frozen backbone normalises every layer with the SOURCE domain's running mean and variance.
On a target domain with other colours, contrast or texture those statistics are wrong, and the
features drift before the head sees them. Replacing them with the target's statistics needs no
labels and a few forward passes; the weights are untouched.

How: every BatchNorm layer's moving mean and variance become the cumulative average over the target
images of the batch statistics, computed in order from the first layer to the last (each layer
sees inputs already normalised with the target statistics of the layers below), in chunks so any
number of images fits in memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

ADAPT_BATCH = 512


@dataclass
class AdaptReport:
    """What run.json records under training.adapt_bn."""

    images: int
    layers: int
    source: str
    seconds: float
    mean_shift: float  # mean |target - source| moving mean, averaged over layers: how far the domains are

    def record(self) -> dict[str, Any]:
        return {"method": "AdaBN", "images": self.images, "batchnorm_layers": self.layers, "source": self.source,
                "seconds": round(self.seconds, 2), "mean_shift": round(self.mean_shift, 4)}


def batchnorm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer of a (possibly nested) Keras model, in graph order."""
    from keras.layers import BatchNormalization

    from edgexfer.train.backbones import flat_layers

    return [layer for layer in flat_layers(model) if isinstance(layer, BatchNormalization)]


def adapt_batchnorm(backbone: Any, images: np.ndarray, *, source: str = "images",
                    batch_size: int = ADAPT_BATCH) -> AdaptReport:
    """Replace the BatchNorm statistics of `backbone` with those of `images` (float 0..255 NHWC, any N >= 2).

    The trainable flags and momenta are restored afterwards; only moving_mean/moving_variance change.
    """
    from edgexfer.errors import UserError

    layers = batchnorm_layers(backbone)
    if len(images) < 2:
        raise UserError(f"AdaBN needs at least 2 unlabelled target images. Received: {len(images)}.")
    if not layers:
        raise UserError(f"AdaBN needs BatchNorm layers; backbone {backbone.name!r} has none.")
    started = time.perf_counter()
    before = [np.asarray(layer.moving_mean) for layer in layers]
    saved = [(layer, layer.momentum, layer.trainable) for layer in layers]
    was_trainable = backbone.trainable
    try:
        backbone.trainable = True  # a frozen BatchNorm ignores training=True in Keras 3
        for start in range(0, len(images), batch_size):
            chunk = np.asarray(images[start:start + batch_size], dtype=np.float32)
            for layer in layers:  # running average weighted by images: momentum 0 on the first chunk
                layer.trainable, layer.momentum = True, start / (start + len(chunk))
            backbone(chunk, training=True)
    finally:
        for layer, momentum, trainable in saved:
            layer.momentum, layer.trainable = momentum, trainable
        backbone.trainable = was_trainable
    shift = float(np.mean([np.mean(np.abs(np.asarray(layer.moving_mean) - b)) for layer, b in zip(layers, before)]))
    return AdaptReport(len(images), len(layers), source, time.perf_counter() - started, shift)

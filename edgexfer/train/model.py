"""The classifier: raw image -> frozen-mode backbone -> optional Dropout -> Dense -> float32 softmax.

Why the head is a separate set of layers: stage 1 trains the head alone on cached backbone
features (a small functional model over a feature vector) and the full classifier reuses the very
same layer objects, so the trained head is in the full model without any copy. No augmentation
layer is ever part of the model (they do not convert and they disable XLA).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras

HEAD_DROPOUT, HEAD_DENSE, HEAD_SOFTMAX = "head_dropout", "head_dense", "head_softmax"


@dataclass
class Head:
    """Dropout (optional) + Dense + softmax; the softmax is float32 even under mixed precision."""

    dropout: Any
    dense: Any
    softmax: Any

    def __call__(self, features: Any) -> Any:
        x = self.dropout(features) if self.dropout is not None else features
        return self.softmax(self.dense(x))


def make_head(num_classes: int, dropout: float) -> Head:
    drop = keras.layers.Dropout(dropout, name=HEAD_DROPOUT) if dropout > 0 else None
    dense = keras.layers.Dense(num_classes, name=HEAD_DENSE)
    softmax = keras.layers.Activation("softmax", dtype="float32", name=HEAD_SOFTMAX)
    return Head(drop, dense, softmax)


def build_classifier(backbone: Any, head: Head, input_shape: tuple[int, int, int]) -> Any:
    """Input (raw RGB 0..255 float32 NHWC) -> backbone(training=False) -> head.

    `training=False` keeps BatchNorm in inference mode even when the top of the backbone is
    unfrozen in stage 2, so its moving statistics never drift on a small target set.
    """
    inputs = keras.Input(input_shape, name="image", dtype="float32")
    features = backbone(inputs, training=False)
    return keras.Model(inputs, head(features), name="classifier")


def build_head_model(feature_dim: int, head: Head) -> Any:
    """The head alone over a feature vector: what stage 1 fits on cached features."""
    features = keras.Input((feature_dim,), name="features", dtype="float32")
    return keras.Model(features, head(features), name="head")


def compile_model(model: Any, learning_rate: float, jit_compile: bool, steps_per_execution: int = 1) -> None:
    """Adam + sparse categorical cross-entropy; compile again after any `trainable` change.

    `steps_per_execution` > 1 runs several steps per graph call: for the head on cached features
    a step is microseconds of math, so Python overhead per step would otherwise dominate.
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)


def freeze(backbone: Any) -> None:
    backbone.trainable = False


def unfreeze_top(backbone: Any, n_layers: int) -> list[str]:
    """Make the top `n_layers` weighted, non-BatchNorm layers trainable; everything else frozen.

    BatchNorm stays frozen (and in inference mode through `training=False`), and the in-graph
    preprocessing layers are never trained. Returns the names of the unfrozen layers.
    """
    from edgexfer.train.backbones import PREPROCESS_PREFIX, flat_layers

    backbone.trainable = True  # nested models: parents must be trainable for children to train
    chosen: list[str] = []
    for layer in reversed(flat_layers(backbone)):
        eligible = (layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
                    and not layer.name.startswith(PREPROCESS_PREFIX))
        layer.trainable = bool(eligible and len(chosen) < n_layers)
        if layer.trainable:
            chosen.append(layer.name)
    return chosen

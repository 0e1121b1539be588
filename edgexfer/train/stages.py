"""The two training stages.

Stage 1 trains the head on a frozen backbone. Without augmentation the backbone output never
changes, so it is computed ONCE per image (`extract_features`) and the head is fitted on the cached
numpy features: the backbone forward pass, the expensive part, runs once instead of once per epoch
(benchmarks/bench_train_cache.py measures it). With augmentation every epoch sees new pixels, so
stage 1 fits through the frozen backbone on the augmented tf.data pipeline.

Stage 2 (optional) unfreezes the top N weighted non-BatchNorm layers of the backbone and fits the
whole classifier with a low learning rate; BatchNorm stays frozen and in inference mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgexfer.train.checkpoints import Checkpointer, EpochCallback
from edgexfer.train.model import (
    Head,
    build_head_model,
    compile_model,
    freeze,
    unfreeze_top,
)

INFERENCE_BATCH = 256


@dataclass
class Fit:
    """Everything a stage needs besides the models (so the stage functions stay small)."""

    data: Any  # edgexfer.data.Dataset (or anything with its interface)
    image_size: tuple[int, int]
    batch_size: int
    seed: int
    plan: Any  # strategy.Plan
    ckpt: Checkpointer
    patience: int
    verbose: int = 1
    callbacks: list[Any] = field(default_factory=list)

    def has(self, split: str) -> bool:
        return int(self.data.counts().get(split, 0)) > 0

    def pipeline(self, split: str, *, train: bool = False, augment: bool = False, batch_size: int | None = None
                 ) -> Any:
        return self.data.tf_dataset(split, self.image_size, batch_size or self.batch_size, shuffle=train,
                                    augment=augment, seed=self.seed)

    def keras_callbacks(self, stage: int) -> list[Any]:
        return [EpochCallback(self.ckpt, stage, self.patience), *self.callbacks]


def forward_fn(model: Any) -> Any:
    """The model's inference pass as a graph function with a batch-polymorphic signature, traced once."""
    import tensorflow as tf

    height, width = int(model.input_shape[1]), int(model.input_shape[2])
    spec = tf.TensorSpec((None, height, width, 3), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def extract_features(model: Any, dataset: Any, forward: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Run a frozen model once over a (images, labels) tf.data pipeline, in order.

    Pass the same `forward` (from `forward_fn`) for several pipelines so the model is traced only once.
    """
    forward = forward or forward_fn(model)
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(np.asarray(forward(images), dtype=np.float32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    if not features:
        return np.zeros((0, int(model.output_shape[-1])), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(features), np.concatenate(labels)


def cache_features(backbone: Any, fit: Fit) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Backbone features of the train and validation splits (the one expensive pass, one trace)."""
    splits = ["train"] + (["val"] if fit.has("val") else [])
    batch = max(fit.batch_size, INFERENCE_BATCH)  # inference only: bigger batches, fewer graph calls
    forward = forward_fn(backbone)
    return {split: extract_features(backbone, fit.pipeline(split, batch_size=batch), forward) for split in splits}


def stage1_cached(backbone: Any, head: Head, epochs: int, learning_rate: float, fit: Fit,
                  initial_epoch: int = 0) -> Any:
    """Fit the head alone on cached features; the full classifier shares the head layers."""
    freeze(backbone)
    cached = cache_features(backbone, fit)
    steps = max(1, -(-len(cached["train"][1]) // fit.batch_size))
    # Several steps per graph call; single device only (Keras' multi-step loop fails under Mirrored).
    per_call = min(steps, 32) if fit.plan.name == "one" else 1
    with fit.plan.strategy.scope():
        head_model = build_head_model(int(backbone.output_shape[-1]), head)
        compile_model(head_model, learning_rate, fit.plan.jit_compile, steps_per_execution=per_call)
    train = _feature_pipeline(*cached["train"], fit.batch_size, shuffle_seed=fit.seed)
    val = _feature_pipeline(*cached["val"], fit.batch_size) if "val" in cached else None
    return head_model.fit(train, epochs=epochs, initial_epoch=initial_epoch, validation_data=val, shuffle=False,
                          verbose=fit.verbose, callbacks=fit.keras_callbacks(1))


def _feature_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None = None) -> Any:
    """Cached features as a tf.data pipeline built once (numpy inputs are re-wrapped every fit call)."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    if shuffle_seed is not None:
        data = data.shuffle(len(y), seed=shuffle_seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def stage1_through(classifier: Any, backbone: Any, epochs: int, learning_rate: float, fit: Fit,
                   augment: bool, initial_epoch: int = 0) -> Any:
    """Fit the head through the frozen backbone (used with augmentation, and by the benchmark)."""
    freeze(backbone)
    with fit.plan.strategy.scope():
        compile_model(classifier, learning_rate, fit.plan.jit_compile)
    return _fit_full(classifier, epochs, fit, augment, initial_epoch, stage=1)


def stage2(classifier: Any, backbone: Any, n_layers: int, epochs: int, learning_rate: float, fit: Fit,
           augment: bool, initial_epoch: int = 0) -> list[str]:
    """Unfreeze the top `n_layers` (BatchNorm excluded), recompile with a low LR, fit end to end."""
    unfrozen = unfreeze_top(backbone, n_layers)
    with fit.plan.strategy.scope():
        compile_model(classifier, learning_rate, fit.plan.jit_compile)
    _fit_full(classifier, epochs, fit, augment, initial_epoch, stage=2)
    freeze(backbone)
    return unfrozen


def _fit_full(classifier: Any, epochs: int, fit: Fit, augment: bool, initial_epoch: int, stage: int) -> Any:
    val = fit.pipeline("val") if fit.has("val") else None
    return classifier.fit(fit.pipeline("train", train=True, augment=augment), validation_data=val, epochs=epochs,
                          initial_epoch=initial_epoch, shuffle=False, verbose=fit.verbose,
                          callbacks=fit.keras_callbacks(stage))


def predict_pipeline(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels over a (images, labels) pipeline, in order."""
    return extract_features(model, dataset)

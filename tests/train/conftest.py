"""Fixtures for the training tests: a tiny in-memory dataset that follows the data API contract.

Why not the builtin sets everywhere: the unit tests of the training internals should not depend on
image decoding or dataset building; `ArrayDataset` has exactly the interface train() uses
(class_names, counts, tf_dataset, arrays, to_record, source, fingerprint, skipped).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = 32


class ArrayDataset:
    """Numpy images split into train/val/test, served like edgexfer.data.Dataset."""

    def __init__(self, x: np.ndarray, y: np.ndarray, class_names: list[str], seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        n_val = n_test = max(len(y) // 6, 1)
        self.idx = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        self.x, self.y, self.class_names = x, y.astype(np.int64), list(class_names)
        self.source, self.skipped, self.fingerprint = "arrays:synthetic", [], f"synthetic-{len(y)}-{seed}"

    def counts(self) -> dict:
        counts = {split: int(len(ids)) for split, ids in self.idx.items()}
        counts["per_class"] = {name: int((self.y == i).sum()) for i, name in enumerate(self.class_names)}
        return counts

    def arrays(self, split: str, image_size) -> tuple[np.ndarray, np.ndarray]:
        assert tuple(image_size) == (SIZE, SIZE)
        ids = self.idx[split]
        return self.x[ids], self.y[ids]

    def tf_dataset(self, split, image_size, batch_size, *, shuffle=False, augment=False, seed=0, repeat=False):
        import tensorflow as tf

        x, y = self.arrays(split, image_size)
        ds = tf.data.Dataset.from_tensor_slices((x.astype(np.float32), y.astype(np.int32)))
        if shuffle:
            ds = ds.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size)
        if augment:
            ds = ds.map(lambda a, b: (tf.image.random_flip_left_right(a, seed=seed), b))
        return ds.prefetch(2)

    def to_record(self) -> dict:
        return {"source": self.source, "counts": self.counts(), "skipped": [],
                "splits": {k: v.tolist() for k, v in self.idx.items()}}


def _shape_mask(label: int, rng: np.random.Generator) -> np.ndarray:
    """Class 0: a horizontal bar, 1: a vertical bar, 2: a hollow square, 3: a diagonal; jittered."""
    mask = np.zeros((SIZE, SIZE), bool)
    a, b = rng.integers(6, 12), rng.integers(20, 26)
    c = rng.integers(12, 18)
    if label == 0:
        mask[c - 2:c + 2, a:b] = True
    elif label == 1:
        mask[a:b, c - 2:c + 2] = True
    elif label == 2:
        mask[a:b, a:b] = True
        mask[a + 3:b - 3, a + 3:b - 3] = False
    else:
        for i in range(a, b):
            mask[i, max(i - 2, 0):i + 2] = True
    return mask


def shape_images(n_per_class: int = 40, classes: int = 3, seed: int = 0) -> ArrayDataset:
    """Shapes (bars, squares) in random colours on random backgrounds plus noise.

    The shipped backbone was trained on colour-randomised digits, so classes must differ by SHAPE.
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for label in range(classes):
        for _ in range(n_per_class):
            background, foreground = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            while np.abs(background - foreground).sum() < 200:
                foreground = rng.uniform(0, 255, 3)
            image = np.where(_shape_mask(label, rng)[..., None], foreground, background)
            xs.append(np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8))
            ys.append(label)
    return ArrayDataset(np.stack(xs), np.array(ys), [f"c{i}" for i in range(classes)], seed)


@pytest.fixture
def tiny_data() -> ArrayDataset:
    return shape_images()

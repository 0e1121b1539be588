"""Fixtures for the export tests: a tiny trained run directory (32x32, builtin:uci_digits).

The model follows the input contract (raw RGB 0..255 float -> Rescaling inside the graph ->
softmax) and is fitted briefly so its outputs mean something (parity on an untrained model
would prove little). One session-scoped run dir is shared by every test.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SIZE = (32, 32)


def _tiny_model(keras, augment: bool = False):
    inputs = keras.Input((*SIZE, 3), name="images")
    h = keras.layers.RandomFlip("horizontal")(inputs) if augment else inputs
    h = keras.layers.Rescaling(1 / 255.0)(h)
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, activation="softmax")(h)
    return keras.Model(inputs, outputs)


def _write_run(run_dir: Path, model, dataset, metrics: dict) -> Path:
    from edgexfer.record import MODEL_FILE, RunRecord

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / MODEL_FILE)
    RunRecord(
        labels=list(dataset.class_names), input_shape=[*SIZE, 3],
        preprocessing={"in_graph": "Rescaling(1/255)", "caller": "raw RGB 0..255, NHWC"},
        backbone={"name": "tiny-cnn", "weights": None}, data=dataset.to_record(), seed=0,
        metrics=metrics, versions={"keras": "test"}, created="test",
    ).save(run_dir)
    return run_dir


@pytest.fixture(scope="session")
def digits():
    from edgexfer.data import open_dataset

    return open_dataset("builtin:uci_digits")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, digits) -> Path:
    """A trained tiny CNN run directory (about 5 s of training)."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    x, y = digits.arrays("train", SIZE)
    model = _tiny_model(keras)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype(np.float32), y, epochs=15, batch_size=32, verbose=0)
    xt, yt = digits.arrays("test", SIZE)
    acc = float(np.mean(model.predict(xt.astype(np.float32), verbose=0).argmax(1) == yt))
    return _write_run(tmp_path_factory.mktemp("run"), model, digits, {"test_accuracy": acc})


@pytest.fixture(scope="session")
def augmented_run_dir(tmp_path_factory, digits) -> Path:
    """A run dir whose model still contains a RandomFlip layer (must not export)."""
    keras = pytest.importorskip("keras")
    return _write_run(tmp_path_factory.mktemp("aug_run"), _tiny_model(keras, augment=True), digits, {})

"""Build a tiny test bundle for the runtime tests (needs the full environment: TensorFlow and converters).

    python tests/runtime/make_bundle.py OUT_DIR

A tiny Keras classifier (32x32x3 float 0..255 -> Rescaling -> conv -> GAP -> Dense(3) softmax), briefly fitted
on synthetic "which colour dominates" images so its outputs are not uniform, exported to every format the
runtime reads with `edgexfer.export.export`, exactly as a user would (a run directory over a small image
folder, then export).

Call this script in a subprocess (the test fixture does), so the test process itself never imports
TensorFlow.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

LABELS = ["red", "green", "blue"]
SIZE = 32
SEED = 0


def sample_images(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 32, 32, 3] noisy images whose dominant channel is the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    x = rng.integers(0, 110, (n, SIZE, SIZE, 3)).astype(np.int32)
    x[np.arange(n), :, :, y] += rng.integers(60, 140, (n, 1, 1))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def build_keras_model():
    import keras

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    h = keras.layers.Rescaling(1.0 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", dtype="float32")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x, y = sample_images(96)
    model.fit(x.astype("float32"), y, epochs=4, batch_size=32, verbose=0)
    return model


# -- through edgexfer.export: the tests run against what users get ------------------------------
def build_with_export(out: Path, export) -> Path:
    """Write a run directory (model.keras + run.json over a small image folder) and export it like a user."""
    from PIL import Image

    from edgexfer.data import open_dataset
    from edgexfer.record import RunRecord

    run_dir = out.with_name(out.name + "-run")
    data_dir = out.with_name(out.name + "-data")
    x, y = sample_images(90, seed=3)
    for i, (img, label) in enumerate(zip(x, y)):
        (data_dir / LABELS[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(data_dir / LABELS[label] / f"{i:03d}.png")
    data = open_dataset(str(data_dir), seed=SEED).to_record()
    run_dir.mkdir(parents=True, exist_ok=True)
    build_keras_model().save(run_dir / "model.keras")
    RunRecord(labels=LABELS, input_shape=[SIZE, SIZE, 3],
              preprocessing={"in_graph": "Rescaling(1/255)", "caller": "raw RGB 0..255, NHWC"},
              backbone={"name": "tiny-conv", "weights": None, "trainable_layers": "all"},
              data=data, seed=SEED).save(run_dir)
    export(str(run_dir), str(out))
    return out


def build(out: str | Path) -> Path:
    """The test bundle, made by edgexfer.export (no second conversion path: an export bug fails here)."""
    from edgexfer.export import export

    return build_with_export(Path(out), export)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/runtime/make_bundle.py OUT_DIR")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = build(sys.argv[1])
    print(json.dumps({"bundle": str(result)}))

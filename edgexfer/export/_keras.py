"""Helpers shared by the converters; they run inside the conversion subprocess (TensorFlow here).

- `load_model`: the Keras model, once per process, refusing augmentation layers.
- `serving_function`: a tf.function with a named, batch-dynamic input (raw RGB 0..255, NHWC).
- `reference`: the float32 Keras probabilities on the held-out images (the parity reference).
"""
from __future__ import annotations

import functools
import os
import tempfile
from typing import Any

import numpy as np

from edgexfer._deps import require
from edgexfer.errors import ConversionError, UserError
from edgexfer.export.jobs import Job

INPUT_NAME = "images"
OUTPUT_NAME = "probs"
#: Keras layers that transform images randomly in training; they belong in the tf.data pipeline.
AUGMENTATION_LAYERS = ("RandAugment", "AugMix", "CutMix", "MixUp", "Solarization")


def augmentation_layers(model: Any) -> list[str]:
    """Names of augmentation layers (Random*, RandAugment, MixUp...) anywhere inside the model."""
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        cls = type(layer).__name__
        if cls.startswith("Random") or cls in AUGMENTATION_LAYERS:
            found.append(f"{layer.name} ({cls})")
    return found


@functools.lru_cache(maxsize=2)
def load_model(path: str) -> Any:
    """Load model.keras once per process; a model with augmentation layers is a ConversionError.

    tf2onnx cannot convert random image ops and the Keras 3 layers silently become identities in
    inference mode, so exporting such a model would either lose ops or pass by accident.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    keras = require("keras", purpose="export")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # a truncated or foreign file: the user's to fix, not a converter bug
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"Expected a Keras model file written by `edgexfer train`. Received: {path}, which Keras "
                        f"cannot load ({type(exc).__name__}: {first[:200]}). Train the run again.") from None
    found = augmentation_layers(model)
    if found:
        raise ConversionError(
            f"The model contains augmentation layers {found}, which are not convertible (tf2onnx drops "
            "random ops). Augment in the tf.data pipeline and export a model without them."
        )
    return model


def serving_function(model: Any, input_shape: list[int]) -> Any:
    """tf.function(images[None,H,W,C] float32) -> probs, with the model in inference mode."""
    tf = require("tensorflow", purpose="export")
    spec = tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images):
        return model(images, training=False)

    return serve


@functools.lru_cache(maxsize=2)
def saved_model(path: str, input_shape: tuple[int, ...], work_dir: str) -> str:
    """The model exported ONCE per process as a SavedModel with the named, batch-dynamic input.

    TFLiteConverter.from_keras_model re-traces and re-saves the model on every call (about 10 s
    for MobileNetV3Small); converting every TFLite variant from one SavedModel avoids that.
    """
    tf = require("tensorflow", purpose="export")
    model = load_model(path)
    out = tempfile.mkdtemp(prefix="savedmodel-", dir=work_dir)
    spec = tf.TensorSpec((None, *input_shape), tf.float32, name=INPUT_NAME)
    try:
        model.export(out, format="tf_saved_model", verbose=False, input_signature=[spec])
    except Exception as exc:
        raise ConversionError(f"Keras could not export the model as a SavedModel: {exc}") from exc
    return out


def reference(job: Job) -> dict[str, Any]:
    """Write the Keras float32 probabilities on job.args['images'] to job.args['out']."""
    model = load_model(job.model)
    x = np.load(job.args["images"]).astype(np.float32)
    probs = np.asarray(model.predict(x, batch_size=64, verbose=0), dtype=np.float32)
    if probs.ndim != 2 or not np.all(np.isfinite(probs)):
        raise ConversionError(f"The Keras model gave invalid probabilities (shape {probs.shape}, non-finite values).")
    np.save(job.args["out"], probs)
    return {"files": [], "details": {"shape": list(probs.shape)}}


def calibration_images(job: Job) -> np.ndarray:
    """The variant's calibration images, the first `calibration_count` of the pool (uint8 RGB; cast each to
    float32 0..255 as at inference)."""
    x = np.load(job.calibration, mmap_mode="r")
    return x[: job.options.calibration_count]

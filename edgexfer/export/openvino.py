"""OpenVINO IR: FP32, FP16-compressed, and int8 through NNCF (runs inside the subprocess).

The source is the ONNX file of the same export when there is one (no TensorFlow needed in this
process), otherwise a SavedModel of the Keras model. `ov.save_model` compresses weights to FP16 by
default: the FP32 IR passes compress_to_fp16=False explicitly. NNCF 3.x has no TensorFlow
backend: int8 is `nncf.quantize` on the ov.Model with the calibration images, or
`nncf.quantize_with_accuracy_control` (validation on held-out images) when max_drop is given.

int8 fallback ladder (formats.OPENVINO_INT8_LADDER, walked by edgexfer.export.guardrail when
`openvino-int8` misses its gate):
  0. default           nncf.quantize, performance preset (symmetric), `calibration_samples` images
  1. mixed-preset      QuantizationPreset.MIXED (asymmetric activations)
  2. accuracy-control  nncf.quantize_with_accuracy_control on the run's validation split with
                       max_drop = half the gate's max_acc_drop (guardrail._rung_changes): NNCF reverts layers
The child needs no TensorFlow (the source is the ONNX file), so rungs are built one per child and
the walk stops at the first that passes (formats: ladder_chunk=1).

Every IR carries its labels: rt_info["model_info"] holds what OpenVINO's Model API
(ClassificationModel) and DL Streamer read, rt_info["edgexfer"] the job's metadata as JSON (the keys
ONNX has as edgexfer.* metadata_props). It is set on the model that is saved, after NNCF, which
returns a new ov.Model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer._deps import require
from edgexfer.errors import ConversionError
from edgexfer.export.jobs import Job
from edgexfer.export._keras import calibration_images, saved_model


def convert(job: Job) -> dict[str, Any]:
    ov = require("openvino", purpose="OpenVINO export")
    model, source = _source_model(ov, job)
    details: dict[str, Any] = {"source": source}
    if job.options.quantize == "int8":
        model = _quantize(ov, model, job, details)
    add_model_info(model, job.metadata)
    path = Path(job.out_dir) / "model.xml"
    compress = job.options.compress_to_fp16
    ov.save_model(model, str(path), compress_to_fp16=compress)
    details.update({"compress_to_fp16": compress, "inputs": [p.get_any_name() for p in model.inputs],
                    "input_shape": str(model.inputs[0].get_partial_shape())})
    return {"files": [path.name, path.with_suffix(".bin").name], "details": details}


def model_info(metadata: dict[str, Any]) -> dict[str, str]:
    """rt_info["model_info"] of a classifier, as OpenVINO's Model API parses it (strings; lists space-separated).

    mean_values / scale_values stay unset (no normalisation by the caller): the graph takes raw 0..255
    and normalises inside. reverse_input_channels is False: the graph takes RGB, so a caller decoding
    with OpenCV (BGR) converts to RGB first.
    """
    return {"model_type": "Classification", "labels": " ".join(model_api_label(v) for v in metadata["labels"]),
            "multilabel": "False", "hierarchical": "False", "reverse_input_channels": "False"}


def model_api_label(label: str) -> str:
    """A label as one token of the space-separated list: each run of whitespace becomes one underscore
    ("golden retriever" -> "golden_retriever"), since the Model API splits the list on whitespace. The
    exact labels stay in rt_info["edgexfer"]["labels"] and in manifest.json."""
    return "_".join(str(label).split()) or "_"


def add_model_info(model: Any, metadata: dict[str, Any]) -> None:
    """Labels and classifier settings into the model's rt_info (serialized into the .xml by save_model)."""
    for key, value in model_info(metadata).items():
        model.set_rt_info(value, ["model_info", key])
    for key, value in metadata.items():
        model.set_rt_info(value if isinstance(value, str) else json.dumps(value), ["edgexfer", key])


def _source_model(ov: Any, job: Job) -> tuple[Any, str]:
    onnx_path = job.source_onnx
    try:
        if onnx_path and Path(onnx_path).is_file():
            return ov.convert_model(onnx_path), "onnx"
        return ov.convert_model(saved_model(job.model, job.input_shape, job.work_dir)), "savedmodel"
    except ConversionError:
        raise
    except Exception as exc:
        raise ConversionError(f"ov.convert_model failed: {str(exc).strip()[-500:]}") from exc


def _quantize(ov: Any, model: Any, job: Job, details: dict[str, Any]) -> Any:
    nncf = require("nncf", purpose="OpenVINO int8 export")
    opts = job.options
    images = calibration_images(job)
    calibration = nncf.Dataset([np.asarray(images[i: i + 1], dtype=np.float32) for i in range(len(images))])
    max_drop = opts.max_drop
    preset = nncf.QuantizationPreset.MIXED if opts.preset == "mixed" else nncf.QuantizationPreset.PERFORMANCE
    details.update({"calibration_images": len(images), "preset": preset.value, "rung": opts.rung})
    try:
        if max_drop is None or not job.validation:
            return nncf.quantize(model, calibration, preset=preset, subset_size=len(images))
        return _quantize_with_accuracy_control(nncf, model, calibration, len(images), job, float(max_drop),
                                               details)
    except Exception as exc:
        raise ConversionError(f"NNCF quantization failed: {str(exc).strip()[-500:]}") from exc


def _quantize_with_accuracy_control(nncf: Any, model: Any, calibration: Any, n_calibration: int,
                                    job: Job, max_drop: float, details: dict[str, Any]) -> Any:
    """Revert the layers that cost accuracy until the drop on held-out images is <= max_drop points."""
    data = np.load(job.validation)
    x, y = data["x"].astype(np.float32), data["y"]
    batches = [(x[i: i + 64], y[i: i + 64]) for i in range(0, len(x), 64)]

    def validate(compiled: Any, items: Any) -> float:
        hits = sum(int(np.sum(np.argmax(compiled(bx)[0], 1) == by)) for bx, by in items)
        return hits / max(1, sum(len(by) for _, by in items))

    validation = nncf.Dataset(batches, lambda item: item[0])
    details.update({"accuracy_control": True, "max_drop_points": max_drop, "validation_images": len(x)})
    return nncf.quantize_with_accuracy_control(
        model, calibration, validation, validation_fn=validate, max_drop=max_drop / 100.0,
        drop_type=nncf.DropType.ABSOLUTE, subset_size=n_calibration,
        preset=nncf.QuantizationPreset.MIXED if job.options.preset == "mixed" else None)

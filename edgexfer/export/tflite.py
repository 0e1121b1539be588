"""TFLite / LiteRT: float32, float16 weights, and full integer quantization (runs in the subprocess).

Only builtin ops are allowed (never SELECT_TF_OPS / Flex: ai-edge-litert cannot run them).
Full int8 uses a representative dataset of REAL training images preprocessed as at inference
(raw 0..255 float; the preprocessing is inside the graph), TFLITE_BUILTINS_INT8 and integer I/O.
Every variant then passes through one writer (edgexfer.export.tflite_metadata): TFLITE_METADATA
(input normalisation and range, the output's labels file) as MediaPipe Model Maker writes it, the
I/O tensors named `images` / `probs` as in ONNX, and labels.txt packed at the end of the file. The
populated file must give bit-identical outputs to the converter's. After that the model is read back
with the LiteRT interpreter: integer I/O is asserted, scale/zero point recorded, and every op still
computing in float is reported.

int8 fallback ladder (formats.TFLITE_INT8_LADDER, walked by edgexfer.export.guardrail when
`tflite-int8` misses its gate; each rung is a variant built here, the best passing one is kept):
  0. default          per-channel weights, `calibration_samples` images
  1. more-calibration 4x the calibration images (capped at the training split)
  2. per-tensor       per-tensor weight scales (converter._experimental_disable_per_channel)
  3. denylist         the layers with the largest quantization error (QuantizationDebugger,
                      RMSE / scale) stay in float (`denylisted_nodes`); I/O stays integer
  4. 16x8             int16 activations, int8 weights (EXPERIMENTAL_..._INT16_WEIGHTS_INT8),
                      int16 I/O; bigger and slower but much closer to float
Rungs 2-4 also use the larger calibration set of rung 1. A TFLite child pays for TensorFlow and a
SavedModel export (~20 s), so all rungs are built in ONE child (formats: ladder_chunk=4) and the
best passing variant is kept.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer._deps import require
from edgexfer.errors import ConversionError
from edgexfer.export import tflite_metadata
from edgexfer.export.jobs import Job
from edgexfer.export._keras import INPUT_NAME, OUTPUT_NAME, calibration_images, saved_model

_INTEGER = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}


def convert(job: Job) -> dict[str, Any]:
    """Keras model -> out_dir/model.tflite according to job.options (quantize, int8_io, rung)."""
    tf = require("tensorflow", purpose="TFLite export")
    opts = job.options
    source = saved_model(job.model, job.input_shape, job.work_dir)
    converter = tf.lite.TFLiteConverter.from_saved_model(source)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    quantize = opts.quantize
    if quantize == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    details: dict[str, Any] = {"quantize": quantize, "supported_ops": ["TFLITE_BUILTINS"]}
    if quantize == "int8":
        content = _convert_int8(tf, converter, job, details)
    else:
        content = _run(converter)
    content = _with_metadata(content, job.metadata, details)
    path = Path(job.out_dir) / "model.tflite"
    path.write_bytes(content)
    result = {"files": [path.name], "details": details}
    result.update(_inspect(content, quantize, details))
    return result


def _run(converter: Any) -> bytes:
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises ConverterError / RuntimeError / ValueError
        raise ConversionError(f"TFLiteConverter failed: {str(exc).strip().splitlines()[-1][:500]}") from exc


def _with_metadata(content: bytes, metadata: dict[str, Any], details: dict[str, Any]) -> bytes:
    """The converted model with TFLITE_METADATA, named I/O and labels.txt; its outputs must not change."""
    meta = tflite_metadata.classifier_metadata(metadata, INPUT_NAME, OUTPUT_NAME)
    populated = tflite_metadata.populate(content, meta, list(metadata["labels"]))
    difference = _output_difference(content, populated)
    if difference != 0.0:
        raise ConversionError(f"Expected the same outputs with and without {tflite_metadata.METADATA_NAME}. "
                              f"Received: a largest difference of {difference}.")
    details["metadata"] = {"name": tflite_metadata.METADATA_NAME, "associated_files": [meta.labels_file],
                           "input": INPUT_NAME, "output": OUTPUT_NAME}
    return populated


def _output_difference(original: bytes, populated: bytes) -> float:
    """Largest absolute output difference of two models on one fixed pseudo-random input (0.0: identical)."""
    from ai_edge_litert.interpreter import Interpreter

    outputs = []
    for content in (original, populated):
        interp = Interpreter(model_content=content, num_threads=1)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        info = np.iinfo(inp["dtype"]) if np.issubdtype(inp["dtype"], np.integer) else None
        low, high = (info.min, info.max) if info else (0, 255)
        x = np.random.default_rng(0).integers(low, high, inp["shape"], endpoint=True).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        outputs.append(interp.get_tensor(interp.get_output_details()[0]["index"]).astype(np.float64))
    if outputs[0].shape != outputs[1].shape:
        return float("inf")
    if np.array_equal(outputs[0], outputs[1], equal_nan=True):
        return 0.0
    return float(np.max(np.abs(outputs[0] - outputs[1])))  # NaN where only one of them is NaN


def _convert_int8(tf: Any, converter: Any, job: Job, details: dict[str, Any]) -> bytes:
    """Full integer quantization with the variant options of a ladder rung (default: rung 0)."""
    opts = job.options
    images = pin_input_range(calibration_images(job))
    mode = opts.mode
    io_type = "int16" if mode == "16x8" else opts.int8_io

    def representative():
        for i in range(len(images)):
            yield [np.asarray(images[i: i + 1], dtype=np.float32)]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    ops = (tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if mode == "16x8"
           else tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
    converter.target_spec.supported_ops = [ops]
    converter.inference_input_type = converter.inference_output_type = getattr(tf, io_type)
    if not opts.per_channel:
        converter._experimental_disable_per_channel = True
    details.update({"rung": opts.rung, "calibration_images": len(images), "mode": mode,
                    "per_channel": opts.per_channel, "io_dtype": io_type,
                    "input_range": [0, 255],
                    "supported_ops": [ops.name]})
    if opts.denylist_fraction:
        return _convert_denylisted(tf, converter, representative, opts.denylist_fraction, details)
    return _run(converter)


def pin_input_range(images: np.ndarray) -> np.ndarray:
    """A copy whose value range is exactly the input contract's 0..255 (one pixel of image 0 each).

    Why: the input tensor's quantization range comes from the calibration images. Their brightest
    pixel is often below 255, and then a brighter pixel at inference is clipped. With the range
    pinned to 0..255 the input scale is exactly 1 (zero point -128 for int8, 0 for uint8), so no
    value is clipped and the runtime turns a uint8 image into the engine's input without arithmetic.
    Two pixels out of a whole calibration set leave the inner layers' ranges as they were.
    """
    pinned = np.array(images, dtype=np.float32, copy=True)
    pinned[0, 0, 0, 0], pinned[0, 0, 0, 1 % pinned.shape[-1]] = 0.0, 255.0
    if pinned.shape[-1] == 1:
        pinned[0, 0, 1 % pinned.shape[2], 0] = 255.0
    return pinned


def _convert_denylisted(tf: Any, converter: Any, representative: Any, fraction: float,
                        details: dict[str, Any]) -> bytes:
    """Leave the layers with the largest RMSE/scale in float (QuantizationDebugger statistics).

    The debugger's own get_nondebug_quantized_model() drops the integer I/O types, so the
    calibrated model it holds is quantized here with the same call plus the I/O dtypes.
    """
    from tensorflow.lite.python import (
        convert as tfl_convert,  # the debugger's own quantizer
    )

    io_type = converter.inference_input_type
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=representative)
        debugger.run()
        buffer = io.StringIO()
        debugger.layer_statistics_dump(buffer)
        worst = _worst_layers(buffer.getvalue(), fraction)
        details["denylisted_nodes"] = worst
        # fully_quantize=True would force int8 I/O; the I/O dtypes below make the model integer-in/out
        return tfl_convert.mlir_quantize(
            debugger.calibrated_model, disable_per_channel=converter._experimental_disable_per_channel,
            input_data_type=io_type, output_data_type=io_type, denylisted_nodes=worst)
    except Exception as exc:
        raise ConversionError(f"Selective quantization (quantization debugger deny list) failed: {exc}") from exc


def _worst_layers(csv_text: str, fraction: float) -> list[str]:
    """Tensor names of the top `fraction` of layers by RMSE / scale (at least one)."""
    import csv

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    scored = sorted(rows, key=lambda r: -np.sqrt(float(r["mean_squared_error"])) / max(float(r["scale"]), 1e-12))
    keep = max(1, int(round(len(scored) * fraction)))
    return [r["tensor_name"] for r in scored[:keep]]


def _inspect(content: bytes, quantize: str, details: dict[str, Any]) -> dict[str, Any]:
    """Read the model back with LiteRT: assert integer I/O for int8, quant params, float ops left."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=content)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    float_ops = sorted({
        op["op_name"] for op in interp._get_ops_details()
        if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "DELEGATE")
        and any(tensors[i]["dtype"] == np.float32 for i in [*op["inputs"], *op["outputs"]] if i >= 0 and i in tensors)
    })
    details.update({"float_ops": float_ops, "input_dtype": np.dtype(inp["dtype"]).name,
                    "output_dtype": np.dtype(out["dtype"]).name, "input_shape": inp["shape_signature"].tolist()})
    if quantize != "int8":
        return {}
    expected = details["io_dtype"]
    for role, tensor in (("input", inp), ("output", out)):
        if np.dtype(tensor["dtype"]) != np.dtype(_INTEGER[expected]):
            raise ConversionError(
                f"Expected {expected} model {role} after full integer quantization. "
                f"Received: {np.dtype(tensor['dtype']).name}.")
    return {"input_quant": _quant(inp), "output_quant": _quant(out)}


def _quant(tensor: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = tensor["quantization"]
    return {"dtype": np.dtype(tensor["dtype"]).name, "scale": float(scale), "zero_point": int(zero_point)}

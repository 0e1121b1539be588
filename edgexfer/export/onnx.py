"""ONNX through tf2onnx (runs inside the conversion subprocess).

tf2onnx converts with continue_on_error=True: an unsupported op is only LOGGED. We capture the
tf2onnx logger and turn ERROR records into a ConversionError, then run the full ONNX checker.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edgexfer._deps import require
from edgexfer.errors import ConversionError
from edgexfer.export.jobs import Job
from edgexfer.export._keras import INPUT_NAME, OUTPUT_NAME, load_model, serving_function

BATCH_DIM = "batch"


class ErrorCollector(logging.Handler):
    """Collects ERROR (and worse) records of a logger while attached; `raise_if_any` fails loudly."""

    def __init__(self, logger_name: str = "tf2onnx") -> None:
        super().__init__(level=logging.ERROR)
        self.logger = logging.getLogger(logger_name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")

    def __enter__(self) -> "ErrorCollector":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.logger.removeHandler(self)

    def raise_if_any(self, what: str) -> None:
        if self.messages:
            shown = "\n  ".join(self.messages[:10])
            raise ConversionError(f"{what} logged {len(self.messages)} error(s) (unsupported ops?):\n  {shown}")


def convert(job: Job) -> dict[str, Any]:
    """Keras model -> out_dir/model.onnx (opset from the format options), checked and annotated."""
    tf2onnx = require("tf2onnx", purpose="ONNX export")
    onnx = require("onnx", purpose="ONNX export")
    model = load_model(job.model)
    serve = serving_function(model, job.input_shape)
    opset = job.options.opset
    with ErrorCollector() as errors:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature, opset=opset)
    errors.raise_if_any("tf2onnx")
    _name_io(proto)
    _add_metadata(proto, job.metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"The converted ONNX model is invalid: {exc}") from exc
    path = Path(job.out_dir) / "model.onnx"
    onnx.save(proto, str(path))
    ops = sorted({n.op_type for n in proto.graph.node})
    return {"files": [path.name], "details": {"opset": opset, "input": INPUT_NAME, "output": OUTPUT_NAME,
                                              "layout": "NHWC", "ops": ops, "nodes": len(proto.graph.node)}}


def _name_io(proto: Any) -> None:
    """Name the dynamic batch dimension `batch` and the output `probs`."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = BATCH_DIM
    old = proto.graph.output[0].name
    if old == OUTPUT_NAME:
        return
    for node in proto.graph.node:
        node.output[:] = [OUTPUT_NAME if o == old else o for o in node.output]
        node.input[:] = [OUTPUT_NAME if i == old else i for i in node.input]
    proto.graph.output[0].name = OUTPUT_NAME


def _add_metadata(proto: Any, metadata: dict[str, Any]) -> None:
    """Labels, preprocessing, input spec and the edgexfer version go into metadata_props."""
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key = f"edgexfer.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value)

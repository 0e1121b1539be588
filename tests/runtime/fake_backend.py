"""A backend from outside edgexfer, as a user would add one: one module, one `@register` line.

It runs ONNX artifacts on onnx's pure-numpy reference evaluator (`onnx.reference.ReferenceEvaluator`): slow,
but exact enough for the tiny test model, and a real engine the built-in backends do not use. The tests
register it for their duration (tests/runtime/test_fake_backend.py) or, for benchmark cells that run in
their own process, through EDGEXFER_BACKENDS=tests.runtime.fake_backend.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgexfer.runtime.backends import Engine, Loader, Runner, TensorInfo, register

NAME = "onnx-reference"


class ReferenceLoader(Loader):
    """An ONNX model (file or bytes) -> (its proto, a ReferenceEvaluator)."""

    def _load(self) -> Engine:
        import onnx
        from onnx.reference import ReferenceEvaluator

        self.check_device_name()  # "auto" / "cpu", else DeviceError (or the CPU with fallback=True)
        try:
            if self.source.content is not None:
                proto = onnx.load_from_string(self.source.content)
            else:
                proto = onnx.load(str(self.source.path))
            evaluator = ReferenceEvaluator(proto)
        except Exception as exc:  # onnx raises DecodeError / ValueError on a damaged file
            raise self.corrupt(exc) from exc
        return Engine((proto, evaluator), "cpu", {"engine": "onnx.reference"})


@register
class ReferenceRunner(Runner):
    name = NAME
    families = ("onnx",)
    engine_modules = ("onnx",)
    extra = "train"
    loader = ReferenceLoader

    def _activate_impl(self) -> None:
        proto, self._evaluator = self._load().handle
        self.input = _tensor(proto.graph.input[0])
        self.output = _tensor(proto.graph.output[0])

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self._evaluator.run(None, {self.input.name: batch})[0]

    def _close_impl(self) -> None:
        self._evaluator = None


def _tensor(value: Any) -> TensorInfo:
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)
    return TensorInfo(value.name, dims, np.dtype(np.float32))

"""OpenVINO backend: an OpenVINO IR (.xml + .bin) or an ONNX file on CPU, GPU, NPU or an OpenVINO device string.

Devices: "auto"/"cpu" -> CPU, "gpu" -> GPU (Intel), "npu" -> NPU, or any upper-case OpenVINO device string
passed through as is ("AUTO", "GPU.1", "AUTO:GPU,CPU", "HETERO:GPU,CPU"). "cuda" is not an OpenVINO device.

Precision: compiled with INFERENCE_PRECISION_HINT "f32" (on CPU OpenVINO otherwise picks bf16 where the CPU
has it, and outputs drift). `options={"inference_precision": "bf16"}` (or "f16") asks for another precision
explicitly; NPU gets the plugin default unless asked.

Batches: the model is reshaped to a dynamic batch. Batches smaller than `throughput_batch` (option, default
16) run on a LATENCY-hinted compile with one InferRequest per thread (`compiled_model(x)` shares one request
and is not thread-safe). Larger batches run on a THROUGHPUT-hinted compile (made on first use): the batch is
split into one chunk per optimal request and run concurrently on a per-thread pool of InferRequests
(start_async/wait: AsyncInferQueue without its Python callback, which can deadlock at teardown), outputs
copied before a request is reused. `options={"performance_hint": "latency" | "throughput"}` forces one path.

Static shapes: the CPU plugin runs a model compiled for a fixed batch size faster than the dynamic-batch one
(1.35x on MobileNetV3Small@224 here), so the LATENCY path compiles, on first use of each batch size, a copy
with that batch fixed (kept for the `static_batches` most recent sizes, default 4; 0 turns it off). The
first call at a new batch size pays that compile; the dynamic compile serves the rest.

Other options: `config` (dict passed to compile_model), `throughput_batch` (int), `static_batches` (int).

`OpenVinoLoader` reads the model (a file, or the .xml bytes plus the .bin weights), makes its batch dynamic,
settles the device and compiles the LATENCY model: its engine object is an `OpenVinoModel`, which compiles
further variants (THROUGHPUT, static batches) with the same device and config. `OpenVinoRunner` runs it.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from edgexfer._deps import require
from edgexfer.errors import UserError
from edgexfer.runtime.backends.base import Engine, Loader, Runner, TensorInfo
from edgexfer.runtime.backends.registry import register

_DEVICES = {"auto": "CPU", "cpu": "CPU", "gpu": "GPU", "npu": "NPU"}
_VIRTUAL = ("AUTO", "MULTI", "HETERO", "BATCH")
_PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}


class OpenVinoModel:
    """The engine object: the read (dynamic-batch) model on its device, and how to compile it."""

    def __init__(self, loader: "OpenVinoLoader", ov: Any, core: Any, model: Any, ov_device: str) -> None:
        self.loader, self.ov, self.core, self.model, self.ov_device = loader, ov, core, model, ov_device
        self.device: str = "cpu" if ov_device == "CPU" else ov_device.lower()
        self.latency: Any = None  # the LATENCY compile, made by the loader

    def config(self, hint: str) -> dict[str, Any]:
        options, threads = self.loader.options, self.loader.threads
        config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
        precision = _precision(options.get("inference_precision"), self.ov_device)
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads and self.ov_device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        config.update(options.get("config", {}))
        return config

    def compile(self, hint: str, model: Any = None) -> Any:
        model = self.model if model is None else model
        try:
            return self.core.compile_model(model, self.ov_device, self.config(hint))
        except Exception as exc:  # a device plugin that fails to start, or weights (.bin) that do not load
            if self.ov_device == "CPU":
                raise self.loader.corrupt(exc) from exc
            self.device = self.loader.device_unavailable(f"OpenVINO could not compile for {self.ov_device}: {exc}")
            self.ov_device = "CPU"
            return self.core.compile_model(model, "CPU", self.config(hint))


class OpenVinoLoader(Loader):
    """An OpenVINO IR or ONNX model (file or bytes) -> an OpenVinoModel with its LATENCY compile."""

    def _load(self) -> Engine:
        ov = require("openvino", purpose="the openvino backend", extra="cpu")
        core = ov.Core()
        ov_device = self._resolve_device(core)
        try:
            model = self._read(ov, core)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable IR/ONNX
            raise self.corrupt(exc) from exc
        model, fixed = _dynamic_batch(ov, model)
        engine = OpenVinoModel(self, ov, core, model, ov_device)
        latency = engine.compile("LATENCY")
        details = {"ov_device": engine.ov_device, "threads": self.threads or "default",
                   "inference_precision": _type_name(latency.get_property("INFERENCE_PRECISION_HINT")),
                   "execution_devices": list(latency.get_property("EXECUTION_DEVICES"))}
        engine.latency = latency
        return Engine(engine, engine.device, details, fixed)

    def _read(self, ov: Any, core: Any) -> Any:
        """From the file, or from bytes (an .xml with its .bin weights, or an ONNX model)."""
        source = self.source
        if source.content is None:
            return core.read_model(str(source.path))
        return core.read_model(source.content, source.weights or b"")

    def _resolve_device(self, core: Any) -> str:
        """The OpenVINO device string ("CPU" after a fallback the loader allowed)."""
        requested = str(self.requested_device)
        ov_device = requested if requested.isupper() else _DEVICES.get(requested.lower())
        if ov_device is None:
            return _DEVICES[self.check_device_name()]  # raises DeviceError or falls back to "cpu"
        base = ov_device.split(":")[0].split(".")[0]
        available = core.available_devices
        if base in _VIRTUAL or any(d.split(".")[0] == base for d in available):
            return ov_device
        self.device_unavailable(f"OpenVINO device {ov_device!r} is not available on this machine "
                                f"(available: {available}).")  # raises unless fallback=True
        return "CPU"


@register
class OpenVinoRunner(Runner):
    name = "openvino"
    families = ("openvino", "onnx")
    suffixes = {".xml": "openvino", ".onnx": "onnx"}
    engine_modules = ("openvino",)
    extra = "cpu"
    devices = ("cpu", "gpu", "npu")
    default_batch = 256
    loader = OpenVinoLoader

    def _activate_impl(self) -> None:
        self._engine: OpenVinoModel | None = self._load().handle
        self._ov, self._model = self._engine.ov, self._engine.model
        self._lock = threading.Lock()
        self._local = threading.local()
        self._throughput = None
        self._static: OrderedDict[int, Any] = OrderedDict()
        self._latency = self._engine.latency
        self.input = _tensor(self._latency.inputs[0])
        self.output = _tensor(self._latency.outputs[0])

    def _compile(self, hint: str, model: Any = None) -> Any:
        compiled = self._engine.compile(hint, model)
        self.device = self._engine.device
        return compiled

    # -- inference ----------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        hint = self.options.get("performance_hint")
        large = len(batch) >= int(self.options.get("throughput_batch", 16))
        if hint == "throughput" or (hint is None and large):
            return self._infer_throughput(batch)
        compiled = self._static_model(len(batch)) or self._latency
        requests = getattr(self._local, "requests_by_model", None)
        if requests is None:
            requests = self._local.requests_by_model = {}
        request = requests.get(id(compiled))
        if request is None or request[0] is not compiled:
            live = {id(c) for c in self._static.values() if c is not None} | {id(self._latency)}
            for key in [k for k in requests if k not in live]:  # requests of evicted compiles
                del requests[key]
            request = requests[id(compiled)] = (compiled, compiled.create_infer_request())
        return request[1].infer({0: batch}, share_inputs=True)[0]

    def _static_model(self, n: int) -> Any:
        """The LATENCY compile with the batch fixed to n (cached), or None to use the dynamic one."""
        limit = int(self.options.get("static_batches", 4))
        if limit <= 0 or self.fixed_batch is not None:
            return None
        with self._lock:
            if n not in self._static:  # a cached None (cannot be static) must not recompile every call
                self._static[n] = self._compile_static(n)
                while len(self._static) > limit:
                    self._static.popitem(last=False)
            self._static.move_to_end(n)
            return self._static[n]

    def _compile_static(self, n: int) -> Any:
        model = self._model.clone()
        shape = model.inputs[0].get_partial_shape()
        dims = [self._ov.Dimension(n)] + [shape[i] for i in range(1, shape.rank.get_length())]
        try:
            model.reshape({model.inputs[0]: self._ov.PartialShape(dims)})
        except Exception:  # a graph that cannot take this batch statically: the dynamic compile serves it
            return None
        return self._compile("LATENCY", model)

    def _infer_throughput(self, batch: np.ndarray) -> np.ndarray:
        """Split the batch over this thread's pool of requests, run them concurrently, gather in order.

        A pool of InferRequests with start_async()/wait() is what AsyncInferQueue does, minus the Python
        callback: OpenVINO runs that callback on its stream threads, and destroying a compiled model while a
        callback waits for the GIL deadlocks (seen here with openvino 2026.4). Outputs are copied after
        wait(), before the request is reused.
        """
        requests = getattr(self._local, "requests", None)
        if requests is None:
            compiled = self._throughput_model()
            count = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            requests = self._local.requests = [compiled.create_infer_request() for _ in range(count)]
        step = math.ceil(len(batch) / min(len(requests), len(batch)))
        started = []
        try:
            for request, start in zip(requests, range(0, len(batch), step)):
                request.start_async({0: batch[start:start + step]}, share_inputs=True)
                started.append(request)
        finally:
            for request in started:
                request.wait()
        return np.concatenate([r.get_output_tensor(0).data.copy() for r in started])

    def _throughput_model(self) -> Any:
        with self._lock:
            if self._throughput is None:
                self._throughput = self._compile("THROUGHPUT")
            return self._throughput

    def _close_impl(self) -> None:
        self._local = threading.local()
        self._engine = self._latency = self._throughput = self._model = None
        self._static = OrderedDict()


def _precision(asked: Any, ov_device: str) -> str | None:
    if asked is None:
        return None if ov_device.startswith("NPU") else "f32"
    if str(asked).lower() not in _PRECISIONS:
        raise UserError(f"Expected inference_precision in {sorted(_PRECISIONS)}. Received: {asked!r}.")
    return _PRECISIONS[str(asked).lower()]


def _dynamic_batch(ov: Any, model: Any) -> tuple[Any, int | None]:
    """The model reshaped to a dynamic batch, or as it is with its fixed batch size when it cannot be."""
    shape = model.inputs[0].get_partial_shape()
    if shape.rank.is_dynamic or shape[0].is_dynamic:
        return model, None
    dims = [ov.Dimension(-1)] + [shape[i] for i in range(1, shape.rank.get_length())]
    try:
        model.reshape({model.inputs[0]: ov.PartialShape(dims)})
    except Exception:  # a graph with a hard-coded batch (Reshape to a constant): keep it fixed
        return model, shape[0].get_length()
    return model, None


def _tensor(port: Any) -> TensorInfo:
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
    return TensorInfo(port.get_any_name() if port.get_names() else "", dims, np.dtype(port.get_element_type().to_dtype()))


def _type_name(value: Any) -> str:
    to_string = getattr(value, "to_string", None)
    return to_string() if callable(to_string) else str(value)

"""LiteRT backend: .tflite files with ai-edge-litert, or tflite_runtime where that is what a device has.

- The thread count is always passed (`Interpreter(num_threads=None)` means ONE thread): `threads`, else every
  core.
- Dynamic batch: `resize_tensor_input` + `allocate_tensors`, done once per batch size and kept (a few sizes).
- An Interpreter is not thread-safe: each thread gets its own interpreters (threading.local). Outputs are
  read with `get_tensor`, which returns a copy; inputs are converted straight into the `tensor()` view, which is
  never kept past that statement (`invoke()` refuses to run while one is alive).

- LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on fd 2 when the first interpreter
  allocates its tensors: construction and allocation run inside `edgexfer.enginelog.engine_stderr()`, which
  drops that line (and passes any real engine message on), so `edgexfer predict --json` prints only JSON.

Options: `max_cached_batch_sizes` (int, default 4): interpreters kept per thread, one per batch size.

`LiteRTLoader` checks the model (a file or its bytes) and makes an `InterpreterFactory`, the engine object:
LiteRT needs one interpreter per thread and batch size, so what the loader hands over is how to make them.
`LiteRTRunner` runs them.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from edgexfer.enginelog import engine_stderr
from edgexfer.errors import MissingDependencyError
from edgexfer.runtime.backends.base import Engine, Loader, Runner, TensorInfo, quant_from
from edgexfer.runtime.backends.registry import register


def interpreter_class() -> Any:
    """ai_edge_litert's Interpreter, else tflite_runtime's, else MissingDependencyError naming the extra."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        if exc.name is not None and not exc.name.startswith("ai_edge_litert"):
            raise
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise MissingDependencyError("ai-edge-litert", "cpu", "the litert backend") from exc
    return Interpreter


class InterpreterFactory:
    """Makes interpreters of one model (from its file or bytes) with a fixed thread count."""

    def __init__(self, loader: "LiteRTLoader", cls: Any, num_threads: int) -> None:
        self.loader, self.cls, self.num_threads = loader, cls, num_threads
        self.probe: Any = None  # the first interpreter made (read for the tensor details)

    def __call__(self) -> Any:
        source = self.loader.source
        model = {"model_content": source.content} if source.content is not None else {"model_path": str(source.path)}
        try:
            with engine_stderr():
                return self.cls(**model, num_threads=self.num_threads)
        except (ValueError, RuntimeError) as exc:  # "Could not open", "model identifier" on bad files
            raise self.loader.corrupt(exc) from exc


class LiteRTLoader(Loader):
    """A .tflite model (file or bytes) -> an InterpreterFactory (checked by making one interpreter)."""

    def _load(self) -> Engine:
        cls = interpreter_class()
        self.check_device_name()  # "auto"/"cpu", or DeviceError (or the CPU with fallback=True)
        factory = InterpreterFactory(self, cls, self.thread_count())
        factory.probe = factory()
        return Engine(factory, "cpu", {"num_threads": factory.num_threads, "engine": cls.__module__})


@register
class LiteRTRunner(Runner):
    name = "litert"
    families = ("tflite",)
    suffixes = {".tflite": "tflite"}
    engine_modules = ("ai_edge_litert", "tflite_runtime")
    extra = "cpu"
    devices = ("cpu",)
    default_batch = 32
    loader = LiteRTLoader

    def _activate_impl(self) -> None:
        self._new_interpreter: InterpreterFactory | None = self._load().handle
        self._cache_size = int(self.options.get("max_cached_batch_sizes", 4))
        self._local = threading.local()
        probe = self._new_interpreter.probe
        inp, out = probe.get_input_details()[0], probe.get_output_details()[0]
        self._input_index, self._output_index = inp["index"], out["index"]
        self.input = _tensor(inp)
        self.output = _tensor(out)
        self._base_shape = [int(d) for d in inp["shape"]]

    def _interpreter_for(self, n: int) -> Any:
        """This thread's interpreter allocated for batch size n (created and cached on first use)."""
        cache: OrderedDict[int, Any] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        interp = cache.get(n)
        if interp is not None:
            cache.move_to_end(n)
            return interp
        interp = self._new_interpreter()
        interp.resize_tensor_input(self._input_index, [n] + self._base_shape[1:], strict=False)
        with engine_stderr():  # the XNNPACK delegate is applied (and announced) here
            interp.allocate_tensors()
        cache[n] = interp
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return interp

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        interp = self._interpreter_for(len(batch))
        interp.set_tensor(self._input_index, batch)
        return self._invoke(interp)

    def _run_converted(self, chunk: np.ndarray, convert: Callable[..., np.ndarray]) -> np.ndarray:
        """Convert (quantize) the batch straight into the interpreter's input tensor: one pass instead of
        a new array plus `set_tensor`'s copy. The `tensor()` view dies with the statement, as `invoke()`
        requires."""
        interp = self._interpreter_for(len(chunk))
        convert(chunk, out=interp.tensor(self._input_index)())
        return self._invoke(interp)

    def _invoke(self, interp: Any) -> np.ndarray:
        interp.invoke()
        return interp.get_tensor(self._output_index)

    def _close_impl(self) -> None:
        self._local = threading.local()
        self._new_interpreter = None


def _tensor(detail: dict[str, Any]) -> TensorInfo:
    signature = detail.get("shape_signature", detail["shape"])
    dims = tuple(int(d) if d > 0 else None for d in signature)
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(detail["name"], dims, np.dtype(detail["dtype"]), quant_from(detail["dtype"], scale, zero_point))

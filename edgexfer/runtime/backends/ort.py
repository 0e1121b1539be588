"""onnxruntime backend: ONNX on the CPU EP, the CUDA EP, or the TensorRT EP.

Devices: "cpu"; "cuda" (CUDA EP, CPU EP as the engine's own per-node fallback); "tensorrt" (TensorRT EP, then
CUDA, then CPU: builds engines on the first run and needs the TensorRT libraries, so it is never chosen
implicitly; `options={"tensorrt": True}` with device="cuda" does the same); "auto" (CUDA only when it really
works, else CPU, silently).

onnxruntime-gpu lists the CUDA EP even when the CUDA/cuDNN libraries are missing and then runs on the CPU
after logging errors (onnxruntime#23372). So: try CUDA only when the EP is in get_available_providers(),
call `ort.preload_dlls()`, create the session with the engine's logging turned down, and check
`session.get_providers()[0]`; a GPU that was asked for and is not really used raises DeviceError (or warns
once with fallback=True).

`OnnxSessionLoader` makes the session (from a file or the model's bytes) on the device asked for;
`OnnxRuntimeRunner` runs it. One session is shared by all threads (`InferenceSession.run` is thread-safe).

Options: `graph_optimization_level` ("disable" | "basic" | "extended" | "all", default "all"),
`session_config` (dict of session config entries), `cuda_options` / `tensorrt_options` (provider option
dicts), `inter_op_threads` (int), `tensorrt` (bool), `log_severity` (0..4).
"""
from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from edgexfer._deps import require
from edgexfer.errors import UserError
from edgexfer.runtime.backends.base import Engine, Loader, Runner, TensorInfo, warn_once
from edgexfer.runtime.backends.registry import register

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8, "tensor(double)": np.float64}
_OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
               "all": "ORT_ENABLE_ALL"}


def import_ort() -> Any:
    """The onnxruntime module (MissingDependencyError naming the extra when it is not installed)."""
    return require("onnxruntime", purpose="the onnxruntime backend", extra="cpu")


def cuda_listed() -> bool:
    """True when the installed onnxruntime lists the CUDA EP (onnxruntime-gpu); says nothing about drivers."""
    return CUDA in import_ort().get_available_providers()


class OnnxSessionLoader(Loader):
    """An ONNX model (file or bytes) -> an onnxruntime InferenceSession on the CPU, CUDA or TensorRT EP."""

    def _load(self) -> Engine:
        ort = import_ort()
        session, device = self._open(ort, self.check_device_name())
        details = {"providers": session.get_providers(), "intra_op_threads": self.threads or "default"}
        return Engine(session, device, details)

    # -- session creation ------------------------------------------------------------------------
    def _open(self, ort: Any, device: str) -> tuple[Any, str]:
        if device == "cpu":
            return self._session(ort, [CPU]), "cpu"
        gpu_wanted = "tensorrt" if device == "tensorrt" or self.options.get("tensorrt") else "cuda"
        quiet = device == "auto"
        if CUDA not in ort.get_available_providers():
            if quiet:
                return self._session(ort, [CPU]), "cpu"
            device = self.device_unavailable(
                f"device={self.requested_device!r} needs onnxruntime's CUDAExecutionProvider, which this "
                f"onnxruntime does not provide (available: {ort.get_available_providers()}). "
                "Install it with: pip install 'edgexfer[gpu]' (in an environment without plain onnxruntime)."
            )
            return self._session(ort, [CPU]), device
        return self._open_gpu(ort, gpu_wanted, quiet)

    def _open_gpu(self, ort: Any, wanted: str, quiet: bool) -> tuple[Any, str]:
        providers = self._gpu_providers(wanted)
        with _quiet_engine(ort, quiet):
            _preload_dlls(ort)
            session = self._session(ort, providers, severity=4 if quiet else None)
        used = session.get_providers()[0]
        if used in (CUDA, TRT):
            return session, "cuda"
        reason = (f"onnxruntime could not initialise {providers[0][0]} (the session runs on {used}): the CUDA "
                  "13 / cuDNN 9 libraries (or the GPU driver) are missing or incompatible. Install them "
                  "(for example pip install 'nvidia-cudnn-cu13') or check `nvidia-smi`.")
        if quiet:
            warn_once(reason + " Running on the CPU.")
            return session, "cpu"
        device = self.device_unavailable(reason)
        return self._session(ort, [CPU]), device

    def _gpu_providers(self, wanted: str) -> list[tuple[str, dict[str, Any]]]:
        providers = [(CUDA, dict(self.options.get("cuda_options", {}))), (CPU, {})]
        if wanted == "tensorrt":
            providers.insert(0, (TRT, dict(self.options.get("tensorrt_options", {}))))
        return providers

    def _session(self, ort: Any, providers: list, severity: int | None = None) -> Any:
        so = ort.SessionOptions()
        so.log_severity_level = severity if severity is not None else int(self.options.get("log_severity", 3))
        level = str(self.options.get("graph_optimization_level", "all")).lower()
        if level not in _OPT_LEVELS:
            raise UserError(f"Expected graph_optimization_level in {list(_OPT_LEVELS)}. Received: {level!r}.")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _OPT_LEVELS[level])
        if self.threads:
            so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = int(self.options.get("inter_op_threads", 1))
        for key, value in dict(self.options.get("session_config", {})).items():
            so.add_session_config_entry(str(key), str(value))
        try:
            model = self.source.content if self.source.content is not None else str(self.source.path)
            return ort.InferenceSession(model, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime's pybind errors (InvalidProtobuf, Fail...) derive from Exception
            raise self.corrupt(exc) from exc


@register
class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    families = ("onnx",)
    suffixes = {".onnx": "onnx"}
    engine_modules = ("onnxruntime",)
    extra = "cpu"
    devices = ("cpu", "cuda", "tensorrt")
    default_batch = 32
    loader = OnnxSessionLoader

    def _activate_impl(self) -> None:
        self.session = self._load().handle
        self._describe(self.session)

    def _describe(self, session: Any) -> None:
        inp, out = session.get_inputs()[0], session.get_outputs()[0]
        self.input = TensorInfo(inp.name, _dims(inp.shape), np.dtype(_DTYPES.get(inp.type, np.float32)))
        self.output = TensorInfo(out.name, _dims(out.shape), np.dtype(_DTYPES.get(out.type, np.float32)))
        self.fixed_batch = self.input.shape[0] if self.input.shape else None
        self._outputs = [out.name]

    # -- inference ----------------------------------------------------------------------------------
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(self._outputs, {self.input.name: batch})[0]

    def _close_impl(self) -> None:
        self.session = None


def _dims(shape: list) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def _preload_dlls(ort: Any) -> None:
    """Load the CUDA/cuDNN libraries from the nvidia-* wheels when this onnxruntime can (1.21+)."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except OSError:
        pass  # a missing library shows up as the session not using the CUDA EP, checked right after


@contextlib.contextmanager
def _quiet_engine(ort: Any, quiet: bool):
    """Silence onnxruntime's default logger and stdout prints while probing CUDA under device='auto'."""
    if not quiet:
        yield
        return
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default (warning)

"""Loaders and runners: the two halves of every backend (modelled on Polygraphy's loaders and BaseRunner).

A `ModelSource` is an artifact's model on disk (a path) or in memory (its bytes, plus the OpenVINO weights).
A `Loader` turns a source into an engine object (`Engine`: the onnxruntime session, the OpenVINO model ready
to compile, the LiteRT interpreter factory) on the device asked for, falling back or refusing as told; a
`Runner` runs that engine: `OnnxRuntimeRunner(OnnxSessionLoader(source, device="cpu"))`, like Polygraphy's
`OnnxrtRunner(SessionFromOnnx(path))`. `edgexfer.runtime.load` (bundles and files) and
`edgexfer.runtime.open_artifact` (an in-memory Artifact, as export's parity uses it) both go through
`edgexfer.runtime.backends.open_runner`, the runtime's one way in.

Runner: public methods (`activate`, `infer`, `run`, `close`) do the checks; backends implement `_activate_impl`,
`_infer_impl` and `_close_impl`. `infer` takes a batch already in the engine's input dtype ([n, H, W, C],
C-contiguous); `run` takes the checked batch and the converter `Model` uses, so that a backend owning its input
memory (LiteRT) can override `_run_converted` and convert into it. Both return the raw output array [n, ...]
(still quantized for integer outputs: `Model` dequantizes). Runners must be safe to call from many threads;
`close()` waits for the calls in flight and refuses later ones (ModelClosedError), so backends never see a
call after `_close_impl`.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgexfer.errors import DeviceError, IntegrityError, ModelClosedError, UserError
from edgexfer.manifest import QuantParams

_WARNED: set[str] = set()
_WARN_LOCK = threading.Lock()


def warn_once(message: str) -> None:
    """Emit a RuntimeWarning once per process for a given message."""
    with _WARN_LOCK:
        if message in _WARNED:
            return
        _WARNED.add(message)
    warnings.warn(message, RuntimeWarning, stacklevel=4)


@dataclass(frozen=True)
class ModelSource:
    """An artifact's model: on disk (`path`, the main file) or in memory (`content`, plus `weights` for an
    OpenVINO .xml whose .bin is not beside it). `name` names it in messages."""

    path: Path | None = None
    content: bytes | None = None
    weights: bytes | None = None
    name: str = ""

    @classmethod
    def of(cls, source: "ModelSource | str | os.PathLike[str] | bytes") -> "ModelSource":
        """A ModelSource from a path, bytes or a ModelSource (UserError otherwise)."""
        if isinstance(source, ModelSource):
            return source
        if isinstance(source, (bytes, bytearray, memoryview)):
            return cls(content=bytes(source), name="<in-memory model>")
        if isinstance(source, (str, os.PathLike)):
            return cls(path=Path(source), name=Path(source).name)
        raise UserError(f"Expected a model path, its bytes or a ModelSource. Received: {type(source).__name__}.")

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else self.name or "<in-memory model>"

    def size(self) -> int:
        if self.content is not None:
            return len(self.content)
        return self.path.stat().st_size if self.path is not None and self.path.exists() else 0

    def check(self) -> None:
        """UserError when neither a readable file nor bytes are given."""
        if self.content is None and (self.path is None or not self.path.is_file()):
            raise UserError(f"Expected a model file. Received: {self.label} (not found).")


@dataclass
class Engine:
    """What a loader made: the engine object, the device it really runs on, and what the engine reports."""

    handle: Any
    device: str
    details: dict[str, Any] = field(default_factory=dict)
    fixed_batch: int | None = None  # set when the engine cannot change the batch dimension


class Loader:
    """Makes one engine object from a ModelSource. Subclasses implement `_load() -> Engine` and import
    their engine inside it. Device names, fallback and the corrupt-file error are decided here, once."""

    backend: ClassVar[str] = ""  # the registry name of the backend this loader serves (set by `register`)
    devices: ClassVar[tuple[str, ...]] = ("cpu",)  # edgexfer device names the backend understands

    def __init__(self, source: "ModelSource | str | os.PathLike[str] | bytes", *, device: str = "auto",
                 threads: int | None = None, options: dict[str, Any] | None = None, fallback: bool = False) -> None:
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise UserError(f"Expected threads to be a positive integer or None. Received: {threads!r}.")
        self.source = ModelSource.of(source)
        self.requested_device = device
        self.threads = threads
        self.options: dict[str, Any] = dict(options or {})
        self.fallback = fallback

    def __call__(self) -> Engine:
        self.source.check()
        return self._load()

    def _load(self) -> Engine:
        raise NotImplementedError(f"{type(self).__name__} must implement _load()")

    def device_unavailable(self, reason: str) -> str:
        """Fall back to the CPU (warning once) when allowed, else raise DeviceError with `reason`."""
        if not self.fallback:
            raise DeviceError(f"{reason} Pass device='cpu', or fallback=True to run on the CPU instead.")
        warn_once(f"{reason} Falling back to the CPU.")
        return "cpu"

    def check_device_name(self) -> str:
        """The requested device lower-cased, checked against `devices` ("auto" always allowed)."""
        device = str(self.requested_device).lower()
        if device != "auto" and device not in self.devices:
            return self.device_unavailable(
                f"The {self.backend} backend runs on {list(self.devices)}; device={self.requested_device!r} "
                "is not one of them."
            )
        return device

    def corrupt(self, exc: BaseException) -> IntegrityError:
        """The error to raise when the engine cannot read the model."""
        return IntegrityError(
            f"The {self.backend} backend could not read {self.source.label} ({self.source.size()} bytes): the "
            f"file is corrupt, truncated or not a valid model for this engine. Engine said: "
            f"{str(exc).strip()[:300]}"
        )

    def thread_count(self) -> int:
        """The engine thread count: `threads`, else every core."""
        return self.threads or os.cpu_count() or 1


@dataclass
class TensorInfo:
    """An engine tensor as the runner sees it: dims are None where dynamic."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype
    quant: QuantParams | None = None


def quant_from(dtype: Any, scale: float, zero_point: int) -> QuantParams | None:
    """QuantParams for an integer tensor with a real scale, else None."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or not scale:
        return None
    return QuantParams(dtype=dtype.name, scale=float(scale), zero_point=int(zero_point))


class Runner:
    """Base class: runs the engine its loader makes, on the device the loader chose."""

    name: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ()  # artifact families this backend runs
    #: model file suffix -> family, for the families this backend can open from a lone file (load(path))
    suffixes: ClassVar[dict[str, str]] = {}
    engine_modules: ClassVar[tuple[str, ...]] = ()  # importable modules, any of which provides the engine
    extra: ClassVar[str] = "cpu"  # pip extra that installs the engine
    devices: ClassVar[tuple[str, ...]] = ("cpu",)  # edgexfer device names the backend understands
    default_batch: ClassVar[int] = 32  # engine batch `Model.predict` uses when batch_size is None
    loader: ClassVar[type[Loader]] = Loader  # makes this backend's engine (set in each backend module)

    def __init__(self, source: "Loader | ModelSource | str | os.PathLike[str] | bytes", **settings: Any) -> None:
        """source: a Loader (used as is), or a path / bytes / ModelSource for this backend's own loader made
        with `settings` (device, threads, options, fallback)."""
        if isinstance(source, Loader):
            if settings:
                raise UserError(f"Expected settings on the loader or the runner, not both. Received: {sorted(settings)}.")
            self._loader = source
        else:
            self._loader = type(self).loader(source, **settings)
        self.source = self._loader.source
        self.threads = self._loader.threads
        self.options = self._loader.options
        self.device: str | None = None  # the device really used, set on activation
        self.input: TensorInfo | None = None
        self.output: TensorInfo | None = None
        self.fixed_batch: int | None = None  # set when the engine cannot change the batch dimension
        self.details: dict[str, Any] = {}  # what the engine really does (providers, hints, threads)
        self.is_active = False
        self._in_flight: deque[None] = deque()  # one entry per infer/run call running (see close)
        self._close_lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The model file (a placeholder name for a model given as bytes)."""
        return self.source.path if self.source.path is not None else Path(self.source.name or "<in-memory model>")

    # -- public lifecycle --------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if self.is_active:
            return self
        self._activate_impl()  # its _load() goes through the loader, which checks the source
        self.is_active = True
        return self

    def _load(self) -> Engine:
        """Ask the loader for the engine and adopt what it decided (device, fixed batch, details)."""
        engine = self._loader()  # not kept here: the backend holds the handle, and drops it in _close_impl
        self.device, self.fixed_batch = engine.device, engine.fixed_batch
        self.details = dict(engine.details)
        return engine

    def infer(self, batch: np.ndarray) -> np.ndarray:
        in_flight = self._in_flight
        in_flight.append(None)
        try:
            if not self.is_active:
                raise self._closed()
            return self._infer_impl(batch)
        finally:
            in_flight.pop()

    def run(self, chunk: np.ndarray, convert: Callable[..., np.ndarray]) -> np.ndarray:
        """Run a checked batch: `convert(chunk)` gives the engine's input; a backend that owns its input
        memory overrides `_run_converted` to call `convert(chunk, out=memory)` and skip one copy."""
        in_flight = self._in_flight
        in_flight.append(None)
        try:
            if not self.is_active:
                raise self._closed()
            return self._run_converted(chunk, convert)
        finally:
            in_flight.pop()

    def _closed(self) -> ModelClosedError:
        return ModelClosedError(f"The {self.name} runner for {self.path.name} is closed; load the model again.")

    @property
    def _calls(self) -> int:
        """infer/run calls running now."""
        return len(self._in_flight)

    def close(self) -> None:
        """Refuse new calls at once, wait for the calls in flight, then release the engine.

        Why wait: releasing a session under a running call crashes it with an engine error (a None session, or
        an OpenVINO model read as corrupt). Why a deque and no lock per call: append/pop are atomic, and a
        call registers itself BEFORE it checks `is_active`, while close clears `is_active` BEFORE it looks
        at the calls; so either close sees the call and waits, or the call sees the runner closed. That
        costs a call two deque operations (a lock pair cost ten times more on a 15 us predict).
        """
        with self._close_lock:  # a second closer returns once the engine is released
            if not self.is_active:
                return
            self.is_active = False
            while self._in_flight:
                time.sleep(0.0005)
            self._close_impl()

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses ------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _run_converted(self, chunk: np.ndarray, convert: Callable[..., np.ndarray]) -> np.ndarray:
        return self._infer_impl(convert(chunk))

    def _close_impl(self) -> None:
        pass

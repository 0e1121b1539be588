"""The backend registry: which engine runs which artifact family, whether it is installed, and the one way
in (`open_runner`: a source -> the backend's loader -> its runner, activated).

A backend is one module holding a `Loader` and a `Runner` subclass, the runner decorated with `@register`
(its `loader` class attribute names the loader). Backend modules import their engine only inside methods, so
importing the registry (and listing or checking backends) never loads onnxruntime, OpenVINO or LiteRT.
Availability is checked with `edgexfer._deps.available` (find_spec, nothing imported).

Registration order is the preference order when several backends can run a family (onnx: onnxruntime first,
then openvino). Backends outside edgexfer register the same way: name their modules in EDGEXFER_BACKENDS
(comma-separated; imported by `edgexfer.runtime.backends`, in every process, bench cells included).
"""
from __future__ import annotations

import importlib
import os
from typing import Any

from edgexfer._deps import available
from edgexfer.errors import MissingDependencyError, UserError
from edgexfer.runtime.backends.base import Loader, ModelSource, Runner, warn_once

PLUGINS_ENV = "EDGEXFER_BACKENDS"
_REGISTRY: dict[str, type[Runner]] = {}


def register(cls: type[Runner]) -> type[Runner]:
    """Class decorator: add a Runner subclass (with its loader) to the registry under `cls.name`."""
    if not cls.name or not cls.families or not cls.engine_modules:
        raise TypeError(f"{cls.__name__} must set name, families and engine_modules")
    if cls.loader is Loader:
        raise TypeError(f"{cls.__name__} must set `loader` to its own Loader subclass")
    bad = {s: f for s, f in cls.suffixes.items() if f not in cls.families or not s.startswith(".") or s != s.lower()}
    if bad:
        raise TypeError(f"{cls.__name__}.suffixes must map lower-case '.suffix' to one of its families "
                        f"{cls.families}; received {bad}")
    if cls.loader.backend and cls.loader.backend != cls.name:
        # A loader class another backend already uses (a runner subclassing a built-in one inherits its
        # loader): bind a subclass of it, so that naming this backend never renames the other one.
        cls.loader = type(cls.loader.__name__, (cls.loader,), {"__module__": cls.__module__})
    cls.loader.backend, cls.loader.devices = cls.name, cls.devices
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Runner]:
    """The Runner class registered as `name` (UserError listing the known names otherwise)."""
    if name not in _REGISTRY:
        raise UserError(f"Expected a backend in {list_backends()}. Received: {name!r}.")
    return _REGISTRY[name]


def list_backends(available_only: bool = False) -> list[str]:
    """Registered backend names in preference order (only the installed ones with available_only)."""
    return [n for n in _REGISTRY if not available_only or is_available(n)]


def families(name: str) -> tuple[str, ...]:
    """Artifact families ("onnx", "tflite", "openvino") the backend can run."""
    return get(name).families


def backends_for(family: str, available_only: bool = False) -> list[str]:
    """Backends able to run `family`, in preference order."""
    return [n for n in list_backends(available_only) if family in _REGISTRY[n].families]


def family_by_suffix() -> dict[str, str]:
    """Model file suffix -> artifact family, over every registered backend: what `load(path)` of a lone
    model file accepts. A backend that brings a new family brings its suffix with it."""
    found: dict[str, str] = {}
    for cls in _REGISTRY.values():
        for suffix, family in cls.suffixes.items():
            found.setdefault(suffix, family)
    return found


def is_available(name: str) -> bool:
    """True when one of the backend's engine modules can be imported (checked without importing it)."""
    return any(available(m) for m in get(name).engine_modules)


def require_available(name: str) -> None:
    """Raise MissingDependencyError naming the pip extra when the backend's engine is not installed."""
    cls = get(name)
    if not is_available(name):
        raise MissingDependencyError(cls.engine_modules[0], cls.extra, f"the {name} backend")


def open_runner(backend: str, source: ModelSource | Any, *, device: str = "auto", threads: int | None = None,
                options: dict[str, Any] | None = None, fallback: bool = False) -> Runner:
    """The runtime's one way to an engine: `source` (a path, bytes or ModelSource) through the backend's
    loader, run by its runner, activated. Raises MissingDependencyError naming the extra when absent."""
    require_available(backend)
    cls = get(backend)
    loader = cls.loader(source, device=device, threads=threads, options=options, fallback=fallback)
    return cls(loader).activate()


def load_plugins(env: str = PLUGINS_ENV) -> list[str]:
    """Import the backend modules named in $EDGEXFER_BACKENDS; one that fails to import is skipped with a
    warning naming it (a bad plugin must not take the built-in backends down with it)."""
    loaded = []
    for module in [m.strip() for m in os.environ.get(env, "").split(",") if m.strip()]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import-time failure of someone else's module
            warn_once(f"{env}: could not import backend module {module!r} ({type(exc).__name__}: {exc}); "
                      "its backends are not registered.")
            continue
        loaded.append(module)
    return loaded


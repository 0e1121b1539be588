"""Registry of inference backends: which engine runs which artifact family, and whether it is installed.

Each backend is one module holding a `Runner` subclass decorated with `@register`. Backend modules import
their engine only inside methods, so importing this registry (and listing or checking backends) never loads
onnxruntime, OpenVINO or LiteRT. Availability is checked with `importlib.util.find_spec`.

Registration order is the preference order when several backends can run a family (onnx: onnxruntime
first, then openvino).
"""
from __future__ import annotations

import importlib.util

from edgexfer.errors import MissingDependencyError, UserError
from edgexfer.runtime.backends.base import Runner

_REGISTRY: dict[str, type[Runner]] = {}


def register(cls: type[Runner]) -> type[Runner]:
    """Class decorator: add a Runner subclass to the registry under `cls.name`."""
    if not cls.name or not cls.families or not cls.engine_modules:
        raise TypeError(f"{cls.__name__} must set name, families and engine_modules")
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


def is_available(name: str) -> bool:
    """True when one of the backend's engine modules can be imported (checked without importing it)."""
    return any(_find_spec(m) for m in get(name).engine_modules)


def require_available(name: str) -> None:
    """Raise MissingDependencyError naming the pip extra when the backend's engine is not installed."""
    cls = get(name)
    if not is_available(name):
        raise MissingDependencyError(cls.engine_modules[0], cls.extra, f"the {name} backend")


def _find_spec(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# Built-in backends (light modules: engines are imported inside their methods).
from edgexfer.runtime.backends import litert as _litert  # noqa: E402,F401
from edgexfer.runtime.backends import ort as _ort  # noqa: E402,F401
from edgexfer.runtime.backends import ov as _ov  # noqa: E402,F401

__all__ = ["Runner", "register", "get", "list_backends", "families", "backends_for", "is_available",
           "require_available"]

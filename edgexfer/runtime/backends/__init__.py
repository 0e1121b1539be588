"""Inference backends: one module per engine (a Loader that makes the engine object, a Runner that runs
it), listed in the registry (edgexfer.runtime.backends.registry). Importing this package registers the
built-in backends (light modules: engines are imported inside their methods) and those named in
$EDGEXFER_BACKENDS.
"""
from __future__ import annotations

from edgexfer.runtime.backends import litert as _litert  # noqa: F401  (registration order = preference)
from edgexfer.runtime.backends import ort as _ort  # noqa: F401
from edgexfer.runtime.backends import ov as _ov  # noqa: F401
from edgexfer.runtime.backends.base import Engine, Loader, ModelSource, Runner, TensorInfo
from edgexfer.runtime.backends.registry import (
    PLUGINS_ENV,
    backends_for,
    families,
    family_by_suffix,
    get,
    is_available,
    list_backends,
    load_plugins,
    open_runner,
    register,
    require_available,
)

load_plugins()

__all__ = ["Engine", "Loader", "ModelSource", "Runner", "TensorInfo", "register", "get", "list_backends",
           "families", "family_by_suffix", "backends_for", "is_available", "require_available", "open_runner", "load_plugins",
           "PLUGINS_ENV"]

"""Import heavy optional packages on demand, with an error that names the pip extra to install."""
from __future__ import annotations

import importlib
from types import ModuleType

from edgexfer.errors import MissingDependencyError

#: Which extra provides which top-level module. `cpu`/`gpu` are mutually exclusive runtime extras.
EXTRA_FOR = {
    "tensorflow": "train",
    "keras": "train",
    "tf2onnx": "train",
    "onnx": "train",
    "nncf": "train",
    "mlxtend": "train",
    "sklearn": "train",
    "matplotlib": "train",
    "onnxruntime": "cpu",
    "openvino": "cpu",
    "ai_edge_litert": "cpu",
}


def require(module: str, purpose: str = "", extra: str | None = None) -> ModuleType:
    """Import `module` or raise MissingDependencyError naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of *its* dependencies is broken: show the real error
        raise MissingDependencyError(top, extra or EXTRA_FOR.get(top, "train"), purpose) from exc


def available(module: str) -> bool:
    """True when `module` can be imported (without importing it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

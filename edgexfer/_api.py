"""Callable packages: `edgexfer.train` and `edgexfer.export` are both a function and a subpackage.

Importing a subpackage binds it as an attribute of its parent, so `import edgexfer.train` would
replace the function `edgexfer.train` with a module and the README's second `edgexfer.train(...)`
would raise "'module' object is not callable". Making the two packages callable keeps the name
meaning the same thing whichever was imported first: calling either runs the function.
"""
from __future__ import annotations

import sys
import types
from typing import Any


class CallablePackage(types.ModuleType):
    """A package module whose call runs the package attribute named by `__call_target__`."""

    __call_target__ = ""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__call_target__)(*args, **kwargs)


def make_callable(module_name: str, target: str) -> None:
    """Turn the (already executing) package `module_name` into a CallablePackage calling `target`."""
    module = sys.modules[module_name]
    cls = type(f"{module_name}.package", (CallablePackage,), {"__call_target__": target})
    module.__class__ = cls

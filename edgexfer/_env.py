"""Positive numbers read from environment variables (limits the user may raise or lower), one rule for all:
unset or empty -> the default; anything else must parse as a positive number, or it is a UserError naming
the variable (a typo never silently means "no limit")."""
from __future__ import annotations

import os
from typing import Any

from edgexfer.errors import UserError


def env_number(name: str, default: Any, kind: type = int) -> Any:
    """The value of $name as `kind` (int or float), or `default` when it is unset or empty."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise UserError(f"Expected {name} to be a positive number. Received: {raw!r}. Unset it for the default "
                        f"({default}).")
    return value

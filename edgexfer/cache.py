"""Where edgexfer caches files (extracted bundle archives, converted ImageNet weights): one rule for all.

$EDGEXFER_CACHE_DIR, else $XDG_CACHE_HOME/edgexfer, else ~/.cache/edgexfer. Standard library only.
"""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "EDGEXFER_CACHE_DIR"


def cache_dir() -> Path:
    """The cache root (not created here: each user makes its own sub-folder)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgexfer"

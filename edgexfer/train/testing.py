"""Helpers for other parts' tests: a real, tiny run directory in seconds.

Why: export, runtime and benchmark tests need a run directory (model.keras + run.json whose data
record rebuilds real held-out images) without paying for a real training run.

    from edgexfer.train.testing import tiny_run
    run_dir = tiny_run(tmp_path / "run")          # ~10-20 s on 2 cores, no network
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_DATA = "builtin:uci_digits"


def tiny_run(out: str | Path, data: str = TINY_DATA, *, epochs: int = 1, **kwargs: Any) -> Path:
    """Train the digits backbone's head for `epochs` on `data` (default: UCI digits, 32x32) into `out`."""
    from edgexfer.train.trainer import train

    options = {"verbose": 0, "patience": 0, "backbone": "digits_mnv3s", **kwargs}
    return train(data, out, epochs=epochs, **options).run_dir

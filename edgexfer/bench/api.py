"""`edgexfer.bench.api.bench()`: the Python API behind `edgexfer bench BUNDLE`."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer.bench import report
from edgexfer.bench import tune as tuning
from edgexfer.bench.sweep import SweepConfig, run_sweep
from edgexfer.manifest import Manifest
from edgexfer.progress import Callback

__all__ = ["bench", "BenchResult", "SweepConfig"]


@dataclass
class BenchResult:
    results: dict[str, Any]
    paths: dict[str, Path]
    table: str
    tuning: dict[str, dict[str, Any]]


def _write_data(data: str, bundle: str | Path, folder: Path) -> str:
    """Decode the accuracy images once, resized to the bundle's input, into an .npz.

    When `data` is the dataset the bundle was trained on (same fingerprint), the images are the run's
    own held-out test split recorded in the manifest, never a new split that could include training
    images; another dataset contributes its test split (or all of it when it has none)."""
    import numpy as np

    from edgexfer.data import load_split, open_dataset

    manifest = Manifest.load(bundle)
    size = (manifest.input.height, manifest.input.width)
    dataset = open_dataset(data)
    held_out = manifest.provenance.get("test_split")
    if held_out and held_out.get("fingerprint") == dataset.fingerprint:
        x, y = load_split(held_out, "test", size)
    else:
        split = "test" if dataset.counts().get("test") else "train"
        x, y = dataset.arrays(split, size)
    path = folder / "data.npz"
    np.savez(path, x=x, y=y)
    return str(path)


def bench(bundle: str | Path, config: SweepConfig | None = None, *, data: str | None = None,
          out: str | Path | None = None, tune: bool = False,
          progress: Callback | None = None) -> BenchResult:
    """Run the sweep, write results.{json,csv,md} and plots to `out` (default BUNDLE/bench).

    progress: called with an edgexfer.progress.Step after each cell (`edgexfer.progress.Reporter` draws them)."""
    config = config or SweepConfig()
    with tempfile.TemporaryDirectory(prefix="edgexfer-bench-") as tmp:
        if data:
            config.data = _write_data(data, bundle, Path(tmp))
        results = run_sweep(bundle, config, progress=progress)
    if data:
        results["config"]["data"] = data
    paths = report.write_all(results, Path(out) if out else Path(bundle) / "bench")
    entries = tuning.write_tuning(bundle, results) if tune else {}
    return BenchResult(results, paths, report.text_table(results), entries)

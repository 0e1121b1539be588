"""Shared helpers for the scripts in benchmarks/: result files with the machine record, demo bundle.

Every script writes benchmarks/results/<name>.json holding its numbers, the settings and
`edgexfer.bench.machine.machine_record()`; benchmarks/readme_tables.py turns them into the README's tables.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / ".work"  # bundles and run dirs the scripts build (git-ignored)
EDGEXFER = [sys.executable, "-m", "edgexfer"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json with the machine record and a timestamp."""
    from edgexfer.bench.machine import machine_record

    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_record(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def run(cmd: list[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def demo_bundle(rebuild: bool = False) -> Path:
    """The demo model (shipped backbone, builtin:uci_digits) exported to every format, built once."""
    run_dir, bundle = WORK / "demo" / "run", WORK / "demo" / "bundle"
    if rebuild or not (run_dir / "model.keras").exists():
        run([*EDGEXFER, "train", "builtin:uci_digits", "--out", run_dir, "--epochs", "15", "--adapt-bn", "--quiet",
             "--force"])
    if rebuild or not (bundle / "manifest.json").exists():
        run([*EDGEXFER, "export", run_dir, "--out", bundle, "--force"])
    return bundle


def pairs(bundle: Path) -> list[tuple[str, str]]:
    """(artifact, backend) for every passed artifact and every installed backend that runs it."""
    from edgexfer.manifest import Manifest
    from edgexfer.runtime import backends

    manifest = Manifest.load(bundle)
    return [(a.name, b) for a in manifest.passed_artifacts() for b in backends.backends_for(a.format, True)]


def model_bundle(name: str, backbone: str, size: int, weights: str = "none", epochs: int = 1,
                 formats: str | None = None, rebuild: bool = False) -> Path:
    """A bundle for `backbone` at `size` px built through the real CLI path (train on builtin:uci_digits,
    export). With weights="none" the backbone is random: fine for speed, meaningless for accuracy."""
    run_dir, bundle = WORK / name / "run", WORK / name / "bundle"
    if rebuild or not (run_dir / "model.keras").exists():
        run([*EDGEXFER, "train", "builtin:uci_digits", "--out", run_dir, "--backbone", backbone, "--weights",
             weights, "--image-size", size, "--epochs", epochs, "--quiet", "--force"])
    if rebuild or not (bundle / "manifest.json").exists():
        extra = ["--formats", formats] if formats else []
        run([*EDGEXFER, "export", run_dir, "--out", bundle, "--force", *extra])
    return bundle

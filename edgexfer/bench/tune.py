"""`bench --tune`: record, per machine and batch size, the fastest passed artifact + backend + settings.

The record lives in the bundle manifest (`Manifest.tuning`) so `edgexfer.runtime.load(backend="auto")`
can use it on a machine with the same hardware fingerprint:

    {"<fingerprint>": {"<batch_size>": {"artifact": "tflite", "backend": "litert", "device": "cpu",
                                        "options": {...}, "threads": 2, "throughput_ips": 950.0,
                                        "p50_ms": 1.02, "measured": "<iso time>"}}}
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgexfer.errors import UserError
from edgexfer.manifest import Manifest


def best_per_batch(results: dict[str, Any], device: str = "cpu") -> dict[str, dict[str, Any]]:
    """The highest-throughput successful cell for each batch size (cells on `device` only)."""
    best: dict[str, dict[str, Any]] = {}
    for cell in results["cells"]:
        if cell.get("status") != "ok" or cell.get("device_used", cell["device"]) != device:
            continue
        if cell["artifact"] == "auto" or cell.get("variant"):
            continue  # variants run at another precision than the artifact's passed parity
        key = str(cell["batch_size"])
        if key not in best or cell["throughput_ips"] > best[key]["throughput_ips"]:
            best[key] = cell
    return {k: _entry(c, results["created"]) for k, c in best.items()}


def _entry(cell: dict[str, Any], measured: str) -> dict[str, Any]:
    return {"artifact": cell["artifact"], "backend": cell["backend"], "device": cell.get("device_used", "cpu"),
            "options": dict(cell.get("options") or {}), "threads": cell["threads"], "mode": cell["mode"],
            "variant": cell.get("variant", ""), "throughput_ips": cell["throughput_ips"],
            "p50_ms": cell["latency"]["p50_ms"], "measured": measured}


def write_tuning(bundle: str | Path, results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Store the best cells under this machine's fingerprint in the bundle's manifest (atomic write)."""
    entries = best_per_batch(results)
    if not entries:
        raise UserError("Expected at least one successful CPU cell to tune from. Received: none succeeded.")
    manifest = Manifest.load(bundle)
    manifest.tuning[results["machine"]["fingerprint"]] = entries
    manifest.save(bundle)
    return entries

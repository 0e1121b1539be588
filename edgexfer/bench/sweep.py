"""Plan and run the benchmark matrix: artifact x backend x device x mode x threads x batch size.

Every artifact that passed parity is paired with every installed backend that runs its family; OpenVINO is
measured under both its LATENCY and THROUGHPUT hints; named precision variants add cells. Each cell runs
in its own process (edgexfer.bench.cell), so the parent never imports an engine. An artifact of the bundle that
gets no cell (parity failed, no installed backend, no requested device) is listed with why under "skipped".
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.bench.cell import RESULT_PREFIX, CellSpec
from edgexfer.errors import UserError
from edgexfer.manifest import Artifact, Manifest
from edgexfer.progress import Callback, Tracker

RESULTS_SCHEMA_VERSION = 1

#: Per-backend performance modes: name -> runtime options. Backends not listed have one mode, "default".
MODES: dict[str, dict[str, dict[str, Any]]] = {
    "openvino": {"latency": {"performance_hint": "latency"}, "throughput": {"performance_hint": "throughput"}},
}

#: Named precision variants (`--variants`): a different numeric precision, so never the default.
#: `cpu_features`: the variant is only meaningful when the CPU has one of these (else it is skipped).
VARIANTS: dict[str, dict[str, Any]] = {
    "bf16": {"backend": "openvino", "precisions": ("fp32",), "options": {"inference_precision": "bf16"},
             "cpu_features": ("avx512_bf16", "amx_bf16"),
             "description": "OpenVINO with bf16 inference precision (CPUs with AVX512-BF16 or AMX)"},
}


@dataclass
class SweepConfig:
    devices: list[str] = field(default_factory=lambda: ["auto"])
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32])
    threads: list[int] = field(default_factory=lambda: [os.cpu_count() or 1])
    runs: int = 100
    seconds: float = 3.0
    warmup: int = 5
    formats: list[str] | None = None
    backends: list[str] | None = None
    variants: list[str] = field(default_factory=list)
    data: str | None = None  # .npz written by the caller for the accuracy column
    cell_timeout: float = 300.0


def resolve_devices(devices: list[str]) -> list[str]:
    """'auto' -> the CPU plus CUDA when onnxruntime can really see it."""
    if devices != ["auto"]:
        return devices
    from edgexfer.runtime.select import cuda_listed

    return ["cpu"] + (["cuda"] if cuda_listed() else [])


def _modes(backend: str) -> dict[str, dict[str, Any]]:
    return MODES.get(backend, {"default": {}})


def _variant_cells(name: str, artifact, backend: str, cpu_features: set[str]) -> list[tuple[str, dict]]:
    spec = VARIANTS[name]
    if backend != spec["backend"] or artifact.precision not in spec["precisions"]:
        return []
    if not cpu_features & set(spec["cpu_features"]):
        return []
    return [(name, spec["options"])]


def plan(bundle: str | Path, manifest: Manifest, config: SweepConfig, cpu_features: set[str]) -> list[CellSpec]:
    """All cells of the matrix for this bundle and machine, in a stable order."""
    from edgexfer.runtime import backends as registry

    unknown = sorted(set(config.variants) - set(VARIANTS))
    if unknown:
        raise UserError(f"Expected variants from {sorted(VARIANTS)}. Received: {unknown}.")
    cells = []
    for artifact in manifest.passed_artifacts():
        if config.formats and artifact.name not in config.formats:
            continue
        for backend in registry.backends_for(artifact.format, available_only=True):
            if config.backends and backend not in config.backends:
                continue
            variants = [("", {})] + [v for n in config.variants for v in _variant_cells(n, artifact, backend, cpu_features)]
            for device in resolve_devices(config.devices):
                if device not in registry.get(backend).devices:
                    continue
                for (variant, v_opts), (mode, m_opts) in ((v, m) for v in variants for m in _modes(backend).items()):
                    for threads in config.threads:
                        for batch in config.batch_sizes:
                            cells.append(CellSpec(
                                bundle=str(bundle), artifact=artifact.name, backend=backend, device=device,
                                batch_size=batch, threads=threads, mode=mode, variant=variant,
                                options={**m_opts, **v_opts}, runs=config.runs, seconds=config.seconds,
                                warmup=config.warmup, data=config.data))
    if not cells:
        why = "".join(f"\n  {s['artifact']}: {s['reason']}" for s in skipped_artifacts(manifest, config, cells))
        raise UserError("No benchmark cell to run: the bundle has no passed artifact that an installed backend "
                        "can run on the requested devices. Check `edgexfer info BUNDLE` and the installed extras."
                        + why)
    return cells


def skipped_artifacts(manifest: Manifest, config: SweepConfig, cells: list[CellSpec]) -> list[dict[str, str]]:
    """The bundle's artifacts that got no cell, each with why, so a report never drops one silently
    (those that --formats or --backends left out are what the user asked for, and not listed)."""
    planned = {c.artifact for c in cells}
    reasons = {a.name: _skip_reason(a, config) for a in manifest.artifacts.values()
               if a.name not in planned and not (config.formats and a.name not in config.formats)}
    return [{"artifact": name, "reason": why} for name, why in reasons.items() if why]


def _skip_reason(artifact: Artifact, config: SweepConfig) -> str | None:
    from edgexfer.runtime import backends as registry

    if not artifact.passed:
        why = artifact.verdict.reason
        return (f"parity {artifact.status}{' (' + why[:160] + ')' if why else ''}; the runtime refuses it: "
                "see `edgexfer info BUNDLE`, re-export it, or loosen its gate with `edgexfer export --gate`")
    names = registry.backends_for(artifact.format)
    installed = [n for n in names if registry.is_available(n)]
    if not installed:
        extras = sorted({registry.get(n).extra for n in names})
        return (f"no installed backend runs {artifact.format} artifacts ({', '.join(names)}; "
                f"pip install 'edgexfer[{extras[0] if extras else 'cpu'}]')")
    if config.backends and not set(installed) & set(config.backends):
        return None  # --backends left it out on purpose
    return f"none of {', '.join(installed)} runs on the requested devices {resolve_devices(config.devices)}"


def run_one(spec: CellSpec, timeout: float = 600.0) -> dict[str, Any]:
    """Run a cell in a fresh interpreter and return its result (status 'error' when it failed)."""
    cmd = [sys.executable, "-m", "edgexfer.bench.cell", json.dumps(asdict(spec))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**asdict(spec), "status": "error", "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {**asdict(spec), "status": "error", "error": f"cell process exited {proc.returncode}: {' | '.join(tail)}"}


def run_sweep(bundle: str | Path, config: SweepConfig, progress: Callback | None = None) -> dict[str, Any]:
    """Run every planned cell and return the results document (see RESULTS_SCHEMA_VERSION).

    progress: called with an edgexfer.progress.Step after each cell (its key and p50, or its error)."""
    from edgexfer.machine import machine_record

    manifest = Manifest.load(bundle)
    machine = machine_record()
    cells = plan(bundle, manifest, config, set(machine["cpu_features"]))
    tracker = Tracker(progress, total=len(cells))
    results = []
    for spec in cells:
        results.append(run_one(spec, config.cell_timeout))
        tracker.step(cell_text(spec, results[-1]), notable=results[-1].get("status") != "ok")
    for result in results:
        artifact = manifest.artifacts.get(result["artifact"])
        result["size_bytes"] = artifact.size_bytes if artifact else None
    return {
        "schema_version": RESULTS_SCHEMA_VERSION, "kind": "bench", "model": manifest.name,
        "bundle": str(bundle), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine,
        "config": asdict(config), "cells": results, "skipped": skipped_artifacts(manifest, config, cells),
    }


def cell_text(spec: CellSpec, result: dict[str, Any]) -> str:
    """One line for a finished cell: its key, then p50 and throughput, or the error."""
    if result.get("status") != "ok":
        return f"{spec.key()}: ERROR {str(result.get('error', ''))[:160]}"
    latency = result["latency"]
    noisy = " (noisy)" if latency.get("noisy") else ""
    return f"{spec.key()}: p50 {latency['p50_ms']:.3f} ms, {result['throughput_ips']:.0f} img/s{noisy}"

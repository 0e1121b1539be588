"""Choose the artifact and backend for `load()`: the rule is documented in `edgexfer.runtime`'s docstring.

Tuning record (written by `edgexfer bench --tune` into `Manifest.tuning`, read here):

    {"<machine fingerprint>": {"<batch size>": {"artifact": "openvino", "backend": "openvino",
                                                 "options": {...}, ...any measurement fields}}}

The fingerprint is `edgexfer.machine.hardware_fingerprint()` (the hardware part of the machine record).
The entry for the batch size `options["tuning_batch"]` (default 1; the largest recorded size not above it,
else the smallest) is used on any CPU architecture when its artifact passed parity (any precision: passing
its gate is what makes it eligible) and its backend is installed and runs that artifact's family;
otherwise the machine's default applies. Its options are merged under the caller's `options`, and its
`threads` apply when the caller passes none.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

from edgexfer.errors import DeviceError, UserError
from edgexfer.manifest import Artifact, Manifest
from edgexfer.runtime import backends

#: Preference when nothing more specific applies: fp32 first, then fp16, then int8.
FORMAT_PREFERENCE = ("onnx", "openvino", "tflite", "openvino-fp16", "tflite-fp16", "openvino-int8",
                     "tflite-int8")
_X86 = ("x86_64", "amd64", "i386", "i686", "x86")
_OV_DEVICES = ("gpu", "npu")


@dataclass
class Choice:
    artifact: Artifact
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    rule: str = ""  # which part of the rule decided, for Model.details
    threads: int | None = None  # measured thread count from a tuning record (used when the caller gives none)


def check_status(artifact: Artifact, allow_failed: bool) -> None:
    if not artifact.passed and not allow_failed:
        reason = artifact.verdict.reason
        raise UserError(
            f"Expected an artifact that passed parity. Received: '{artifact.name}' with status "
            f"'{artifact.status}'{': ' + reason if reason else ''}. Pick another format, or run it anyway "
            "with --allow-failed (Python: allow_failed=True)."
        )


def resolve_backend(family: str, backend: str, device: str) -> str:
    """The backend to run `family` with: `backend` checked, or the first installed one when "auto"."""
    if backend != "auto":
        if family not in backends.families(backend):
            raise UserError(f"Expected a backend that runs {family} artifacts "
                            f"({backends.backends_for(family)}). Received: {backend!r}.")
        backends.require_available(backend)
        return backend
    names = backends.backends_for(family)
    if _wants_openvino_device(device) and "openvino" in names:
        names = ["openvino"] + [n for n in names if n != "openvino"]
    for name in names:
        if backends.is_available(name):
            return name
    if not names:
        raise UserError(f"No registered backend runs {family} artifacts (backends: {backends.list_backends()}).")
    backends.require_available(names[0])  # raises MissingDependencyError naming the extra
    return names[0]


def choose(manifest: Manifest, *, format: str | None, backend: str, device: str, allow_failed: bool,
           options: dict[str, Any]) -> Choice:
    """Pick the artifact and backend for a bundle (see the rule in edgexfer.runtime)."""
    if format is not None:
        artifact = manifest.artifact(format)
        check_status(artifact, allow_failed)
        return Choice(artifact, resolve_backend(artifact.format, backend, device), rule="format=")
    pool = _candidates(manifest, allow_failed)
    if backend != "auto":
        backends.require_available(backend)
        runnable = [a for a in pool if a.format in backends.families(backend)]
        if not runnable:
            raise UserError(f"Expected the bundle to hold an artifact the {backend} backend runs "
                            f"({list(backends.families(backend))}). Received: {[a.name for a in pool]}.")
        return Choice(runnable[0], backend, rule="backend=")
    return _auto(manifest, pool, device, options)


def _auto(manifest: Manifest, pool: list[Artifact], device: str, options: dict[str, Any]) -> Choice:
    dev = device if device.isupper() else device.lower()
    if dev in ("cuda", "tensorrt") or (dev == "auto" and cuda_listed()):
        onnx = _first(pool, ("onnx",), "onnxruntime")
        if onnx is not None:
            return Choice(onnx, "onnxruntime", rule="cuda")
        if dev != "auto":
            raise DeviceError(f"device={device!r} runs ONNX artifacts on onnxruntime's CUDA EP; this bundle "
                              f"has no usable onnx artifact (artifacts: {[a.name for a in pool]}).")
    if _wants_openvino_device(dev):
        found = _first(pool, ("openvino", "openvino-fp16", "onnx", "openvino-int8"), "openvino")
        if found is not None:
            return Choice(found, "openvino", rule="openvino device")
    return cpu_choice(manifest, pool, options)


def cpu_choice(manifest: Manifest, pool: list[Artifact], options: dict[str, Any]) -> Choice:
    """The CPU part of the rule: tuned choice on x86, else ONNX/onnxruntime; TFLite/litert on ARM."""
    tuned = tuned_choice(manifest, pool, options)
    if tuned is not None:
        return tuned
    machine = platform.machine().lower()
    order = ("onnx", "openvino", "tflite") if machine in _X86 else ("tflite", "onnx", "openvino")
    for name in order:
        found = _first(pool, (name,), None)
        if found is not None:
            return Choice(found, resolve_backend(found.format, "auto", "cpu"), rule=f"cpu {machine}")
    return _fallback(pool)


def tuned_choice(manifest: Manifest, pool: list[Artifact], options: dict[str, Any]) -> Choice | None:
    if not manifest.tuning:
        return None
    from edgexfer.machine import hardware_fingerprint

    per_batch = manifest.tuning.get(hardware_fingerprint())
    entry = _entry_for_batch(per_batch, int(options.get("tuning_batch", 1))) if per_batch else None
    if not isinstance(entry, dict):
        return None
    artifact = next((a for a in pool if a.name == entry.get("artifact")), None)
    name = entry.get("backend")
    if artifact is None or name not in backends.list_backends():
        return None
    if artifact.format not in backends.families(name) or not backends.is_available(name):
        return None
    threads = entry.get("threads")
    return Choice(artifact, name, dict(entry.get("options") or {}), rule="tuning",
                  threads=threads if isinstance(threads, int) and threads > 0 else None)


def cuda_listed() -> bool:
    """onnxruntime is installed and lists the CUDA EP (whether it really works is checked at session time)."""
    if not backends.is_available("onnxruntime"):
        return False
    from edgexfer.runtime.backends.ort import cuda_listed as listed

    return listed()


# -- helpers --------------------------------------------------------------------------------------
def _candidates(manifest: Manifest, allow_failed: bool) -> list[Artifact]:
    pool = list(manifest.artifacts.values()) if allow_failed else manifest.passed_artifacts()
    if not pool:
        statuses = {a.name: a.status for a in manifest.artifacts.values()}
        raise UserError(f"Expected at least one artifact that passed parity in the bundle. Received: "
                        f"{statuses or 'no artifacts'}. Re-export, or name one with --format and --allow-failed (Python: format=..., allow_failed=True).")
    rank = {n: i for i, n in enumerate(FORMAT_PREFERENCE)}
    return sorted(pool, key=lambda a: rank.get(a.name, len(rank)))


def _first(pool: list[Artifact], names: tuple[str, ...], backend: str | None) -> Artifact | None:
    """The first artifact named in `names` (in that order) whose backend (or any backend) is installed."""
    for name in names:
        for artifact in pool:
            if artifact.name != name:
                continue
            runners = [backend] if backend else backends.backends_for(artifact.format)
            if any(backends.is_available(r) for r in runners):
                return artifact
    return None


def _fallback(pool: list[Artifact]) -> Choice:
    for artifact in pool:
        for name in backends.backends_for(artifact.format, available_only=True):
            return Choice(artifact, name, rule="first runnable")
    families = sorted({a.format for a in pool})
    first = backends.backends_for(families[0])[0] if families and backends.backends_for(families[0]) else None
    if first:
        backends.require_available(first)
    raise UserError(f"No installed backend runs this bundle's artifacts ({[a.name for a in pool]}).")


def _entry_for_batch(per_batch: dict[str, Any], batch: int) -> Any:
    sizes = sorted(int(k) for k in per_batch if str(k).isdigit())
    if not sizes:
        return None
    below = [s for s in sizes if s <= batch]
    return per_batch.get(str(below[-1] if below else sizes[0]))


def _wants_openvino_device(device: str) -> bool:
    return device.lower() in _OV_DEVICES or (device.isupper() and device != "CPU")

"""A record of the machine a number was measured on, so results from different hardware compare.

Standard library only: it runs on devices without TensorFlow and inside benchmark subprocesses.
"""
from __future__ import annotations

import functools
import hashlib
import os
import platform
import shutil
import subprocess
from typing import Any

from edgexfer._versions import installed_versions

#: CPU flags that decide which inference kernels run (x86: /proc/cpuinfo names; ARM: Features).
_INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16",
                      "amx_int8", "neon", "asimd", "asimddp", "sve", "i8mm", "bf16")
_ENGINES = ("edgexfer", "numpy", "onnxruntime", "onnxruntime-gpu", "openvino", "ai-edge-litert",
            "tflite-runtime", "tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx")


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware") and value.strip():
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, flags


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs via nvidia-smi (no CUDA libraries needed); empty when there are none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    return [{"name": r[0], "driver": r[1], "memory": r[2]} for r in rows if len(r) >= 3]


@functools.lru_cache(maxsize=1)
def _hardware() -> tuple[tuple[str, Any], ...]:
    """The hardware part of the record, read once per process (cpuinfo, nvidia-smi)."""
    model, flags = _cpuinfo()
    return (("cpu", model), ("arch", platform.machine()), ("cores", os.cpu_count()),
            ("cpu_features", sorted(f for f in _INTERESTING_FLAGS if f in flags)), ("gpus", _gpus()))


def machine_record() -> dict[str, Any]:
    """CPU model, cores, inference-relevant ISA flags, memory, GPUs, OS, Python and engine versions."""
    record = {"hostname": platform.node(), **dict(_hardware()), "memory_bytes": _memory_bytes(),
              "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
              "versions": installed_versions(_ENGINES)}
    record["fingerprint"] = machine_fingerprint(record)
    return record


def hardware_fingerprint() -> str:
    """This machine's fingerprint without the software survey (cheap enough for `runtime.load`)."""
    return machine_fingerprint(dict(_hardware()))


def machine_fingerprint(record: dict[str, Any]) -> str:
    """Identify the hardware (not the software): CPU, arch, cores, ISA flags and GPU names."""
    key = "|".join([record["cpu"], record["arch"], str(record["cores"]), ",".join(record["cpu_features"]),
                    ",".join(g["name"] for g in record["gpus"])])
    return hashlib.sha256(key.encode()).hexdigest()[:16]

"""One benchmark cell, run in its own process so import cost and peak memory are honest.

    python -m edgexfer.bench.cell '<json CellSpec>'   ->   prints one JSON line (the cell's result)

The parent (edgexfer.bench.sweep) never imports an engine; each cell imports only the runtime and the
one engine it measures. Timing uses time.perf_counter_ns (monotonic); warm-up runs are excluded.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

RESULT_PREFIX = "EDGEXFER_CELL_RESULT "


@dataclass
class CellSpec:
    bundle: str
    artifact: str
    backend: str
    device: str
    batch_size: int
    threads: int
    mode: str = "default"  # openvino: "latency" | "throughput"
    variant: str = ""  # a named precision variant, e.g. "bf16" (see edgexfer.bench.sweep.VARIANTS)
    options: dict[str, Any] = field(default_factory=dict)
    runs: int = 100
    seconds: float = 3.0
    warmup: int = 5
    data: str | None = None  # .npz with x (uint8 NHWC) and y (labels) for the accuracy column

    def key(self) -> str:
        variant = f"+{self.variant}" if self.variant else ""
        return f"{self.artifact}{variant}|{self.backend}|{self.device}|{self.mode}|b{self.batch_size}|t{self.threads}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process image.

    Linux: VmHWM from /proc/self/status. Not ru_maxrss: it survives execve, so a cell would inherit the
    high-water mark of the parent that forked it. Elsewhere ru_maxrss (KiB on Linux/BSD, bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _inputs(spec: CellSpec, shape: tuple[int, int, int]):
    import numpy as np

    if spec.data:
        with np.load(spec.data) as arrays:
            x, y = arrays["x"], arrays["y"]
    else:
        x, y = np.random.default_rng(0).integers(0, 256, (max(spec.batch_size, 1), *shape), dtype=np.uint8), None
    reps = -(-spec.batch_size // len(x))
    batch = np.concatenate([x] * reps)[: spec.batch_size] if reps > 1 else x[: spec.batch_size]
    return np.ascontiguousarray(batch), x, y


def _timed_loop(predict, batch, spec: CellSpec) -> list[int]:
    """At least `runs` timed calls, or fewer when `seconds` ran out (but never fewer than 5)."""
    for _ in range(spec.warmup):
        predict(batch)
    samples, start = [], time.perf_counter_ns()
    deadline = start + int(spec.seconds * 1e9)
    while len(samples) < spec.runs:
        t0 = time.perf_counter_ns()
        predict(batch)
        t1 = time.perf_counter_ns()
        samples.append(t1 - t0)
        if t1 > deadline and len(samples) >= 5:
            break
    return samples


def _accuracy(model, x, y, batch_size: int) -> float | None:
    """Top-1 accuracy on the held-out images, as the parity record measures it (edgexfer.parity)."""
    if y is None:
        return None
    from edgexfer.parity import top1_accuracy

    return top1_accuracy(model.predict(x, batch_size=batch_size), y)


def run_cell(spec: CellSpec) -> dict[str, Any]:
    """Measure one cell: import, load, cold first call, warm latency, throughput, RSS, accuracy."""
    from edgexfer.bench.stats import latency_stats

    t0 = time.perf_counter_ns()
    from edgexfer import runtime

    t_import = time.perf_counter_ns()
    auto = spec.artifact == "auto"  # measure what load() picks by itself (the tuned/default rule)
    model = runtime.load(spec.bundle, format=None if auto else spec.artifact, backend=spec.backend,
                         device=spec.device, threads=None if auto else spec.threads,
                         options={**spec.options, **({"tuning_batch": spec.batch_size} if auto else {})})
    t_load = time.perf_counter_ns()
    batch, x, y = _inputs(spec, model.input_spec.shape)
    t_first0 = time.perf_counter_ns()
    model.predict(batch)
    t_first = time.perf_counter_ns() - t_first0
    stats = latency_stats(_timed_loop(model.predict, batch, spec))
    result = {
        **asdict(spec), "status": "ok", "device_used": model.device, "precision": model.precision,
        "resolved": {"artifact": model.format, "backend": model.backend},
        "import_s": (t_import - t0) / 1e9, "load_s": (t_load - t_import) / 1e9, "first_inference_s": t_first / 1e9,
        "latency": stats.to_dict(), "throughput_ips": spec.batch_size / (stats.mean_ms / 1e3),
        "accuracy": _accuracy(model, x, y, spec.batch_size),
    }
    model.close()
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def main(argv: list[str]) -> int:
    spec = CellSpec(**json.loads(argv[1]))
    try:
        result = run_cell(spec)
    except Exception as exc:  # reported to the parent as a failed cell, never a crash of the sweep
        result = {**asdict(spec), "status": "error", "error": f"{type(exc).__name__}: {exc}"}
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Latency statistics from nanosecond samples, with a flag for cells too noisy to trust."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

#: A cell is flagged noisy when its spread is this large (coefficient of variation, tail ratio).
NOISY_CV = 0.25
NOISY_TAIL = 3.0


@dataclass
class LatencyStats:
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    noisy: bool

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of an already sorted list (numpy's default method)."""
    if not sorted_values:
        raise ValueError("Expected at least one sample. Received: none.")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(samples_ns: list[int]) -> LatencyStats:
    """Summarise per-call latencies; `noisy` when the spread makes the median untrustworthy."""
    ms = sorted(s / 1e6 for s in samples_ns)
    mean = sum(ms) / len(ms)
    std = math.sqrt(sum((v - mean) ** 2 for v in ms) / len(ms))
    p50, p99 = percentile(ms, 50), percentile(ms, 99)
    noisy = (std / mean > NOISY_CV) or (p99 / p50 > NOISY_TAIL) if mean > 0 and p50 > 0 else True
    return LatencyStats(runs=len(ms), p50_ms=p50, p90_ms=percentile(ms, 90), p99_ms=p99, mean_ms=mean,
                        min_ms=ms[0], max_ms=ms[-1], std_ms=std, noisy=noisy)

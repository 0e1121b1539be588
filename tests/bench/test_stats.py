"""Latency statistics and the noisy flag."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.bench.stats import latency_stats, percentile


def test_percentiles_match_numpy():
    values = sorted(np.random.default_rng(0).random(101).tolist())
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_stats_in_milliseconds_and_ordered():
    stats = latency_stats([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    assert stats.runs == 4 and stats.min_ms == 1.0 and stats.max_ms == 4.0 and stats.mean_ms == 2.5
    assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_steady_samples_are_not_noisy_and_spiky_ones_are():
    assert not latency_stats([1_000_000 + i for i in range(100)]).noisy
    assert latency_stats([1_000_000] * 95 + [50_000_000] * 5).noisy


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        percentile([], 50)

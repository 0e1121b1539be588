"""The one comparator on synthetic arrays: metrics, gates, truthiness (no TensorFlow)."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.export.formats import FP16_GATE, FP32_GATE, INT8_GATE, Gate
from edgexfer.export.parity import compare, format_markdown, format_table, parity_metrics


def _probs(n=200, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 3
    p = np.exp(logits - logits.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


@pytest.fixture
def ref():
    p = _probs()
    return p, p.argmax(1)  # labels = the reference's top-1: reference accuracy 100 %


def test_identical_passes_every_gate(ref):
    p, y = ref
    for gate in (FP32_GATE, FP16_GATE, INT8_GATE):
        result = compare(p, p.copy(), y, gate)
        assert result and result.passed and not result.failures
        assert result.metrics["max_abs_diff"] == 0 and result.metrics["agreement"] == 100.0
        assert result.metrics["cosine"] == pytest.approx(1.0)


def test_fp32_gate_fails_on_small_noise(ref):
    p, y = ref
    noisy = p + np.random.default_rng(1).normal(scale=1e-3, size=p.shape).astype(np.float32)
    result = compare(p, noisy, y, FP32_GATE)
    assert not result
    assert any(f.startswith("max_abs_diff") for f in result.failures)
    assert compare(p, noisy, y, FP16_GATE)  # the same noise is fine for fp16


def test_int8_gate_on_accuracy_drop(ref):
    p, y = ref
    worse = p.copy()
    flip = np.arange(len(p)) < 4  # 4 of 200 wrong = 2 points
    worse[flip] = np.roll(worse[flip], 1, axis=1)
    result = compare(p, worse, y, INT8_GATE)
    assert not result and result.metrics["accuracy_drop"] == pytest.approx(2.0)
    assert compare(p, worse, y, INT8_GATE.override({"max_acc_drop": 2.5}))
    # report cosine and agreement too
    assert result.metrics["agreement"] == pytest.approx(98.0) and result.metrics["cosine"] < 1


def test_metrics_values():
    ref = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    out = np.array([[0.7, 0.3], [0.6, 0.4]], dtype=np.float32)
    m = parity_metrics(ref, out, np.array([0, 0]))
    assert m["max_abs_diff"] == pytest.approx(0.4) and m["mean_abs_diff"] == pytest.approx(0.3)
    assert m["agreement"] == 50.0 and m["accuracy"] == 100.0 and m["reference_accuracy"] == 50.0
    assert m["accuracy_drop"] == -50.0 and m["n"] == 2


def test_nan_fails_and_shapes_are_checked(ref):
    p, y = ref
    bad = p.copy()
    bad[0, 0] = np.nan
    assert not compare(p, bad, y, FP32_GATE)
    with pytest.raises(UserError, match="Expected reference and artifact"):
        compare(p, p[:, :5], y, FP32_GATE)


def test_gate_override_validates_keys():
    assert Gate(max_abs_diff=1.0).override({"min_cosine": 0.5}).to_dict() == {"max_abs_diff": 1.0, "min_cosine": 0.5}
    with pytest.raises(UserError, match="max_acc_drop"):
        INT8_GATE.override({"max_drop": 1})


def test_reports_render(ref):
    p, y = ref
    results = {"onnx": compare(p, p, y, FP32_GATE), "tflite-int8": compare(p, p[::-1], y, INT8_GATE)}
    table = format_table(results, {"onnx": 2048})
    assert "PASS" in table and "FAIL" in table and "2.0 KB" in table and "tflite-int8: accuracy_drop" in table
    assert "| artifact |" in format_markdown(results, n=len(y))

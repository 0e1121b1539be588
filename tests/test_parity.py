"""edgexfer.parity: the one comparator on synthetic arrays (metrics, gates, truthiness), and the parity record
as the shared layer: written once by export, read the same way by the runtime, bench and `edgexfer info
--verify`; what the wire format holds comes back typed and equal. TF-free: runs in the runtime-only install."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.export.formats import FP16_GATE, FP32_GATE, INT8_GATE
from edgexfer.manifest import Manifest, verify_bundle
from edgexfer.parity import (Check, Gate, ParityResult, Rung, compare, format_markdown, format_table, parity_metrics,
                             rejudge)
from tests.factory import edit_manifest

pytestmark = pytest.mark.runtime


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


def _flipped(p, n_wrong, start=0):
    """A copy of p whose top-1 moves to another class on rows start..start+n_wrong."""
    worse = p.copy()
    rows = slice(start, start + n_wrong)
    worse[rows] = np.roll(worse[rows], 1, axis=1)
    return worse


def test_int8_gate_on_accuracy_drop(ref):
    p, y = ref
    worse = _flipped(p, 4)  # 4 of 200 wrong = 2 points
    result = compare(p, worse, y, INT8_GATE)
    assert result.metrics["accuracy_drop"] == pytest.approx(2.0)
    assert result.metrics["lost"] == 4 and result.metrics["gained"] == 0
    lo, hi = result.metrics["accuracy_drop_ci"]
    assert lo < 1.0 < hi  # 4 images cannot show a drop above 1 point
    assert result and "within what n images can show" in result.reason
    assert result.metrics["agreement"] == pytest.approx(98.0) and result.metrics["cosine"] < 1


def test_real_two_point_drop_on_1000_images_fails():
    p = _probs(n=1000, seed=3)
    y = p.argmax(1)
    result = compare(p, _flipped(p, 20), y, INT8_GATE)  # 20 of 1000 lost: 2 points
    assert not result
    assert result.metrics["accuracy_drop_ci"][0] > 1.0
    assert "the data show a drop above the gate" in result.failures[0]


def test_one_flip_on_27_images_passes():
    p = _probs(n=27, seed=4)
    y = p.argmax(1)
    result = compare(p, _flipped(p, 1), y, INT8_GATE)  # 3.7 points observed
    assert result.metrics["accuracy_drop"] == pytest.approx(100 / 27)
    assert result and result.metrics["accuracy_drop_ci"][0] <= 1.0


def test_gains_offset_losses():
    """Discordant pairs in both directions: 10 lost and 8 gained on 500 is a 0.4-point drop."""
    p = _probs(n=500, seed=5)
    y = p.argmax(1).copy()
    y[10:18] = (y[10:18] + 1) % 10  # the reference is wrong on rows 10..17 ...
    out = p.copy()
    out[10:18] = np.eye(10)[y[10:18]]  # ... and the artifact right there
    out[:10] = np.roll(out[:10], 1, axis=1)  # the artifact wrong on rows 0..9
    result = compare(p, out, y, INT8_GATE)
    assert (result.metrics["lost"], result.metrics["gained"]) == (10, 8)
    assert result.metrics["accuracy_drop"] == pytest.approx(0.4) and result


def test_paired_interval_properties():
    """Contains the estimate, mirrors when b and c swap, narrows with concordance, ~Wald for large n."""
    from edgexfer.parity import paired_difference_interval, z_value

    z = z_value(0.95)
    lo, hi = paired_difference_interval(80, 10, 4, 6, z)
    assert lo < 0.06 < hi
    mlo, mhi = paired_difference_interval(80, 4, 10, 6, z)
    assert (mlo, mhi) == pytest.approx((-hi, -lo))
    tight, loose = paired_difference_interval(85, 0, 0, 15, z), paired_difference_interval(80, 5, 5, 10, z)
    assert tight[1] - tight[0] < (loose[1] - loose[0]) / 2  # concordant pairs carry no doubt
    a, b, c, d = 80_000, 3_000, 1_000, 16_000
    n = a + b + c + d
    est = (b - c) / n
    se = np.sqrt((b + c) / n - est**2) / np.sqrt(n)
    lo, hi = paired_difference_interval(a, b, c, d, z)
    assert lo == pytest.approx(est - z * se, abs=2e-4) and hi == pytest.approx(est + z * se, abs=2e-4)


def test_wilson_interval_edges():
    from edgexfer.parity import wilson_interval

    lo, hi = wilson_interval(0, 27, 1.96)
    assert lo == pytest.approx(0.0, abs=1e-12) and 0.1 < hi < 0.14
    lo, hi = wilson_interval(27, 27, 1.96)
    assert hi == 1.0 and lo > 0.85


def test_fp16_near_ties_are_not_disagreements():
    """A flip between two classes the reference itself nearly ties does not count against fp16."""
    p = _probs(n=359, seed=6)
    y = p.argmax(1)
    tied = p.copy()
    tied[:3, :2] = [[0.401, 0.399], [0.40, 0.395], [0.30, 0.295]]  # three near ties
    tied[:3, 2:] = (1 - tied[:3, :2].sum(1, keepdims=True)) / 8
    out = tied.copy()
    out[:3, [0, 1]] = out[:3, [1, 0]]  # the artifact rounds them the other way
    result = compare(tied, out, y, FP16_GATE.override({"min_cosine": 0.99}))
    assert result.metrics["flips"] == 3 and result.metrics["near_ties"] == 3
    assert result, result.failures
    # the same three flips on confident images are disagreements (and 3 of 359 misses 99.5 by the interval)
    strict = compare(tied, out, y, FP16_GATE.override({"min_cosine": 0.99, "tie_margin": 0.0}))
    assert strict.metrics["near_ties"] == 0


def test_many_real_disagreements_fail_agreement():
    p = _probs(n=1000, seed=7)
    result = compare(p, _flipped(p, 15), p.argmax(1), FP16_GATE)  # 98.5% against 99.5%
    assert not result and any("agreement" in f for f in result.failures)
    assert result.metrics["agreement_ci"][1] < 99.5


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
    gate = Gate(max_abs_diff=1.0).override({"min_cosine": 0.5})
    assert (gate.max_abs_diff, gate.min_cosine, gate.max_acc_drop) == (1.0, 0.5, None)
    assert Gate.from_dict(gate.to_dict()) == gate
    with pytest.raises(UserError, match="max_acc_drop"):
        INT8_GATE.override({"max_drop": 1})


def test_reports_render(ref):
    p, y = ref
    results = {"onnx": compare(p, p, y, FP32_GATE), "tflite-int8": compare(p, p[::-1], y, INT8_GATE)}
    table = format_table(results, {"onnx": 2048})
    assert "PASS" in table and "FAIL" in table and "2.0 KB" in table and "tflite-int8: accuracy drop" in table
    markdown = format_markdown(results, n=len(y))
    assert "| artifact |" in markdown and "95% CI" in markdown and "n=200" in markdown


# -- the record -------------------------------------------------------------------------------------------
def _record(flip: bool = False) -> ParityResult:
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    out = ref.copy()
    if flip:
        out[2] = [0.3, 0.7]
    return compare(ref, out, np.array([0, 1, 0]), Gate(max_abs_diff=1e-4, min_agreement=99.0))


def test_the_record_round_trips_through_json_typed():
    record = _record(flip=True)
    record.tried = [Rung("default", "failed", "x", dict(record.metrics), list(record.failures), list(record.checks)),
                    Rung("16x8", "error", "did not convert")]
    back = ParityResult.from_dict(json.loads(json.dumps(record.to_dict())))
    assert back == record and isinstance(back.gate, Gate) and all(isinstance(c, Check) for c in back.checks)
    assert back.tried[1].status == "error" and back.reason == record.reason and "max_abs_diff" in back.reason


def test_an_empty_record_reads_as_not_passed():
    assert not ParityResult.from_dict({}) and ParityResult.from_dict(None).reason == ""


def test_rejudge_agrees_with_an_honest_record_and_catches_an_edited_one():
    assert rejudge(_record()) == [] and rejudge(_record(flip=True)) == []
    edited = _record(flip=True)
    edited.passed, edited.failures = True, []
    assert "own metrics and gate give failed" in rejudge(edited)[0]
    assert rejudge(ParityResult({}, Gate(), True)) == ["passed with no measurements"]


def test_verify_bundle_reports_a_status_or_verdict_that_its_numbers_contradict(bundle_copy):
    assert verify_bundle(bundle_copy) == []

    def tamper(raw):
        raw["artifacts"]["onnx"]["parity"]["metrics"]["max_abs_diff"] = 0.5  # recorded "passed" all the same
        raw["artifacts"]["tflite"]["status"] = "failed"

    edit_manifest(bundle_copy, tamper)
    problems = verify_bundle(bundle_copy)
    assert any("'onnx'" in p and "max_abs_diff 0.5" in p for p in problems)
    assert any("'tflite'" in p and "status 'failed'" in p for p in problems)


def test_the_runtime_refusal_names_the_recorded_reason(bundle_copy):
    from edgexfer.errors import UserError
    from edgexfer.runtime import load

    def fail(raw):
        art = raw["artifacts"]["onnx"]
        art["status"], art["parity"]["passed"] = "failed", False
        art["parity"]["failures"] = ["agreement 90.00% below the gate"]

    edit_manifest(bundle_copy, fail)
    with pytest.raises(UserError, match="agreement 90.00% below the gate.*--allow-failed"):
        load(bundle_copy, format="onnx")
    assert Manifest.load(bundle_copy).artifacts["onnx"].parity.reason == "agreement 90.00% below the gate"

"""The parity record (edgexfer.parity) as the shared layer: written once by export, read the same way by the
runtime, bench, `edgexfer info --verify`; what the wire format holds comes back typed and equal."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgexfer.manifest import Manifest, verify_bundle
from edgexfer.parity import Check, Gate, ParityResult, Rung, compare, rejudge
from tests.factory import edit_manifest

pytestmark = pytest.mark.runtime  # TF-free: runs in the runtime-only environment too


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

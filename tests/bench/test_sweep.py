"""The benchmark matrix on a real tiny bundle: plan, run (one process per cell), outputs, tuning, auto."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgexfer.machine import machine_record
from edgexfer.bench.sweep import SweepConfig, plan
from edgexfer.cli import main
from edgexfer.errors import UserError
from edgexfer.manifest import Manifest
from edgexfer.runtime import backends, load

FAST = ["--runs", "5", "--seconds", "0.2", "--warmup", "1"]


def test_plan_covers_every_passed_artifact_and_backend(shared_bundle):
    manifest = Manifest.load(shared_bundle)
    cells = plan(shared_bundle, manifest, SweepConfig(devices=["cpu"], batch_sizes=[1, 4]), set())
    pairs = {(c.artifact, c.backend) for c in cells}
    expected = {(a.name, b) for a in manifest.passed_artifacts()
                for b in backends.backends_for(a.format, available_only=True)}
    assert pairs == expected
    ov_modes = {c.mode for c in cells if c.backend == "openvino"}
    assert ov_modes == {"latency", "throughput"} or not ov_modes
    assert {c.batch_size for c in cells} == {1, 4}


def test_variant_needs_cpu_support_and_unknown_variant_is_an_error(shared_bundle):
    manifest = Manifest.load(shared_bundle)
    base = plan(shared_bundle, manifest, SweepConfig(devices=["cpu"], batch_sizes=[1]), set())
    with_bf16 = plan(shared_bundle, manifest, SweepConfig(devices=["cpu"], batch_sizes=[1], variants=["bf16"]),
                     {"avx512_bf16"})
    assert {c.variant for c in with_bf16} - {""} <= {"bf16"}
    assert len(plan(shared_bundle, manifest, SweepConfig(devices=["cpu"], batch_sizes=[1], variants=["bf16"]),
                    set())) == len(base)
    with pytest.raises(UserError, match="bf16"):
        plan(shared_bundle, manifest, SweepConfig(variants=["fp8"]), set())


def test_bench_cli_writes_results_and_tuning_used_by_auto(bundle_copy, tmp_path):
    out = tmp_path / "results"
    result = CliRunner().invoke(main, ["bench", str(bundle_copy), "--formats", "onnx,tflite", "--batch-sizes",
                                       "1,4", "--out", str(out), "--tune", *FAST])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == 1 and doc["machine"]["fingerprint"] == machine_record()["fingerprint"]
    ok = [c for c in doc["cells"] if c["status"] == "ok"]
    assert len(ok) == len(doc["cells"]) >= 4
    for cell in ok:
        lat = cell["latency"]
        assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p99_ms"] <= lat["max_ms"]
        assert cell["throughput_ips"] == pytest.approx(cell["batch_size"] / (lat["mean_ms"] / 1e3))
        assert cell["peak_rss_mb"] > 0 and cell["load_s"] > 0 and cell["size_bytes"] > 0
    for name in ("results.csv", "results.md", "latency.png", "throughput.png"):
        assert (out / name).stat().st_size > 0
    tuning = Manifest.load(bundle_copy).tuning[doc["machine"]["fingerprint"]]
    best = max((c for c in ok if c["batch_size"] == 1), key=lambda c: c["throughput_ips"])
    assert (tuning["1"]["artifact"], tuning["1"]["backend"]) == (best["artifact"], best["backend"])
    with load(bundle_copy, device="cpu") as model:  # the tuning record decides on this machine
        assert (model.format, model.backend) == (best["artifact"], best["backend"])


def test_tuning_for_another_machine_is_ignored(bundle_copy):
    manifest = Manifest.load(bundle_copy)
    with load(bundle_copy, device="cpu") as model:
        default = (model.format, model.backend)
    other = "tflite-int8" if default[0] != "tflite-int8" else "tflite"
    manifest.tuning["not-this-machine"] = {"1": {"artifact": other, "backend": "litert", "options": {}}}
    manifest.save(bundle_copy)
    with load(bundle_copy, device="cpu") as model:
        assert (model.format, model.backend) == default


def test_compare_cli_merges_two_runs(tmp_path):
    from tests.bench.test_report_tune import _results
    from edgexfer.bench import report

    report.write_all(_results("CPU A", "a"), tmp_path / "a")
    report.write_all(_results("CPU B", "b"), tmp_path / "b")
    result = CliRunner().invoke(main, ["bench", "compare", str(tmp_path / "a"), str(tmp_path / "b"),
                                       "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "CPU A" in result.output and "CPU B" in result.output and (tmp_path / "m" / "results.md").exists()


def test_bench_on_a_missing_bundle_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["bench", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "Traceback" not in result.output

"""Result files, comparison across machines and the tuning record, on synthetic results."""
from __future__ import annotations

import csv
import json

import pytest

from edgexfer.bench import report, tune
from edgexfer.errors import UserError
from edgexfer.manifest import InputSpec, Manifest


def _machine(cpu: str, fingerprint: str) -> dict:
    return {"cpu": cpu, "cores": 2, "gpus": [], "os": "Linux", "python": "3.11", "arch": "x86_64",
            "cpu_features": ["avx2"], "fingerprint": fingerprint}


def _cell(artifact, backend, batch, ips, mode="default", variant="", status="ok"):
    cell = {"artifact": artifact, "backend": backend, "device": "cpu", "device_used": "cpu", "mode": mode,
            "variant": variant, "batch_size": batch, "threads": 2, "options": {"performance_hint": mode},
            "status": status, "size_bytes": 1000}
    if status == "ok":
        cell.update(latency={"p50_ms": batch * 1e3 / ips, "p90_ms": 2.0, "p99_ms": 3.0, "noisy": False},
                    throughput_ips=ips, load_s=0.1, first_inference_s=0.01, peak_rss_mb=60.0, accuracy=0.9)
    else:
        cell["error"] = "boom"
    return cell


def _results(cpu="CPU A", fingerprint="aaa"):
    return {"schema_version": 1, "kind": "bench", "model": "m", "created": "now", "machine": _machine(cpu, fingerprint),
            "cells": [_cell("onnx", "onnxruntime", 1, 100), _cell("tflite", "litert", 1, 300),
                      _cell("openvino", "openvino", 1, 900, variant="bf16"), _cell("onnx", "onnxruntime", 8, 800),
                      _cell("tflite", "litert", 8, 500), _cell("openvino", "openvino", 8, 0, status="error")]}


def test_write_all_produces_consistent_files(tmp_path):
    results = _results()
    paths = report.write_all(results, tmp_path)
    assert json.loads(paths["json"].read_text()) == results
    rows = list(csv.DictReader(paths["csv"].open()))
    assert len(rows) == len(results["cells"]) and {"throughput_ips", "latency_p50_ms", "machine"} <= set(rows[0])
    md = paths["md"].read_text()
    assert "CPU A" in md and md.count("\n| ") == len(results["cells"]) + 1 and "ERROR: boom" in md
    assert (tmp_path / "latency.png").stat().st_size > 0 and (tmp_path / "throughput.png").stat().st_size > 0


def test_compare_merges_machines_with_hardware_column(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    report.write_all(_results("CPU A", "aaa"), tmp_path / "a")
    report.write_all(_results("CPU B", "bbb"), tmp_path / "b")
    merged = report.compare([tmp_path / "a" / "results.json", tmp_path / "b"])
    assert len(merged["cells"]) == 12 and {c["_hardware"].split(" (")[0] for c in merged["cells"]} == {"CPU A", "CPU B"}
    header, body = report.rows(merged, hardware=True)
    assert header[0] == "hardware" and len(body) == 12
    report.write_all(merged, tmp_path / "merged", hardware=True)
    assert (tmp_path / "merged" / "throughput.png").exists()


def test_compare_rejects_a_file_that_is_not_bench_results(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"kind": "other"}))
    with pytest.raises(UserError, match="bench results"):
        report.compare([tmp_path / "x.json"])


def test_best_per_batch_skips_errors_and_precision_variants():
    best = tune.best_per_batch(_results())
    assert best["1"]["artifact"] == "tflite" and best["1"]["backend"] == "litert"  # bf16 variant (900) excluded
    assert best["8"]["artifact"] == "onnx"


def test_write_tuning_stores_entries_under_the_machine_fingerprint(tmp_path):
    Manifest(name="m", labels=["a"], input=InputSpec(8, 8), preprocessing={}).save(tmp_path)
    tune.write_tuning(tmp_path, _results(fingerprint="fp1"))
    tune.write_tuning(tmp_path, _results(fingerprint="fp2"))
    tuning = Manifest.load(tmp_path).tuning
    assert set(tuning) == {"fp1", "fp2"} and tuning["fp1"]["8"]["backend"] == "onnxruntime"


def test_bench_data_is_the_runs_own_held_out_split(tmp_path):
    """`bench --data SAME_DATASET` evaluates on the split the run held out, not on a fresh seed-0 split."""
    import numpy as np

    from edgexfer.bench.api import _write_data
    from edgexfer.data import open_dataset
    from edgexfer.export.bundle import held_out_record

    from PIL import Image

    folder = tmp_path / "digits"  # one folder per class, no split layout: the split depends on the seed
    x_all, y_all = open_dataset("builtin:uci_digits").arrays("train", (8, 8))
    for i, (image, label) in enumerate(zip(x_all[:200], y_all[:200], strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i}.png")
    run_data = open_dataset(str(folder), seed=7)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    Manifest(name="m", labels=run_data.class_names, input=InputSpec(height=8, width=8, channels=3),
             preprocessing={}, provenance={"test_split": held_out_record(run_data.to_record())}).save(bundle)
    with np.load(_write_data(str(folder), bundle, tmp_path)) as saved:
        x, y = saved["x"], saved["y"]
    expected_x, expected_y = run_data.arrays("test", (8, 8))
    assert np.array_equal(y, expected_y) and np.array_equal(x, expected_x)
    fresh_x, _ = open_dataset(str(folder), seed=0).arrays("test", (8, 8))
    assert not np.array_equal(fresh_x, expected_x)  # the seed matters: the old behaviour would differ

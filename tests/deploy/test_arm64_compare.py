"""The ARM64 check's comparer and script, on x86 only (the emulated run itself is `make arm64-check`)."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from tests.deploy.conftest import REPO

pytestmark = pytest.mark.runtime

COMPARE = REPO / "deploy" / "arm64" / "compare.py"
CHECK = REPO / "deploy" / "arm64" / "check.sh"


@pytest.fixture(scope="module")
def compare():
    spec = importlib.util.spec_from_file_location("arm64_compare", COMPARE)
    module = sys.modules["arm64_compare"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _probs(rows):
    return np.array(rows, np.float32)


def test_fp32_gate_is_1e4_and_top1_must_be_identical(compare):
    ref, labels = _probs([[0.7, 0.3], [0.2, 0.8]]), np.array([0, 1])
    assert compare.agreement(ref, ref + 5e-5, labels, None)["passed"]
    assert not compare.agreement(ref, ref + 2e-4, labels, None)["passed"]
    flipped = compare.agreement(ref, _probs([[0.7, 0.3], [0.8, 0.2]]), labels, None)
    assert not flipped["passed"] and flipped["top1_differences"] == 1 and flipped["accuracy_arm64_pct"] == 50.0


def test_int8_gate_is_one_output_quantization_step(compare):
    step = 1 / 256
    ref, labels = _probs([[0.75, 0.25]]), np.array([0])
    one = compare.agreement(ref, ref + _probs([[step, -step]]), labels, step)
    assert one["passed"] and one["max_diff_in_steps"] == pytest.approx(1.0)
    assert not compare.agreement(ref, ref + _probs([[2 * step, -2 * step]]), labels, step)["passed"]


def test_reference_then_check_on_the_same_machine_passes(shared_bundle, tmp_path):
    images = tmp_path / "images"
    from PIL import Image

    labels = json.loads((shared_bundle / "manifest.json").read_text())["labels"]
    rng = np.random.default_rng(1)
    for i in range(4):
        (images / labels[i % len(labels)]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / labels[i % len(labels)]
                                                                               / f"{i}.png")
    ref, out = tmp_path / "x86.npz", tmp_path / "result.json"
    run = [sys.executable, str(COMPARE)]
    subprocess.run([*run, "reference", "--bundle", str(shared_bundle), "--images", str(images), "--out", str(ref)],
                   check=True, capture_output=True, timeout=60)
    proc = subprocess.run([*run, "check", "--reference", str(ref), "--emulated", str(ref), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["passed"] and set(report["results"]) == {"tflite", "tflite-int8", "onnx"}
    assert report["results"]["tflite-int8"]["tolerance"] > 1e-4  # the int8 gate is the quantization step
    assert report["host"]["arch"] and not report["emulated"]["tensorflow_imported"]


def test_fake_cpuinfo_looks_like_a_cortex_a72(compare, capsys):
    compare.main(["cpuinfo"])
    text = capsys.readouterr().out
    assert text.count("processor") == 4 and "CPU part\t: 0xd08" in text and "CPU implementer\t: 0x41" in text


def test_check_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(CHECK)], capture_output=True).returncode == 0


def test_check_names_no_mirror_host_and_reads_apt(tmp_path):
    """The Debian mirror comes from apt's configuration (or $MIRROR), never from a host in the repository."""
    import re

    text = CHECK.read_text()
    assert not re.search(r"https?://[a-z0-9.-]+\.(org|com|net)", text)
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    (sources / "debian.sources").write_text("Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm\n\n"
                                            "Types: deb\nURIs: http://mirror.invalid/debian-security\n")
    func = re.search(r"^apt_mirror\(\) \{.*?^\}", text, re.S | re.M).group(0)
    func = func.replace("/etc/apt/sources.list.d", str(sources)).replace("/etc/apt/sources.list", "/nonexistent")
    out = subprocess.run(["bash", "-c", f"{func}\napt_mirror | head -1"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "http://mirror.invalid/debian"

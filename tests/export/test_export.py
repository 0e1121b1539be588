"""End to end on the tiny model (tests/factory.py): the round-trip tests read ONE bundle of every installed
format, the session bundle (each format exported, loads through the runtime, passes its gate); the other tests
export only the formats they need from the run directory behind it."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgexfer.errors import ConversionError, UserError
from edgexfer.export import export, list_formats
from edgexfer.export.formats import FORMATS
from edgexfer.manifest import Manifest
from tests import factory

INSTALLED = list_formats(installed_only=True)


@pytest.fixture(scope="module")
def exported(shared_bundle, shared_run, tmp_path_factory):
    """Every installed format: the session bundle; under ONEDNN_MAX_CPU_ISA (the AVX2 pass of `make test`:
    int8/fp16 numerics differ between CPU instruction sets, and the gates must hold on each) a new export."""
    if not os.environ.get("ONEDNN_MAX_CPU_ISA"):
        return shared_bundle
    return export(shared_run, tmp_path_factory.mktemp("bundles") / "isa").bundle


@pytest.fixture(scope="module")
def test_images(shared_run):
    from edgexfer.data import load_split
    from edgexfer.record import RunRecord

    return load_split(RunRecord.load(shared_run).data, "test", (factory.SIZE, factory.SIZE))


@pytest.mark.parametrize("name", INSTALLED)
def test_round_trip(exported, test_images, name):
    from edgexfer.runtime import load

    artifact = Manifest.load(exported).artifacts[name]
    assert artifact.status == "passed" and artifact.parity.passed, artifact.parity
    assert artifact.format == FORMATS[name].family and artifact.precision == FORMATS[name].precision
    assert all((exported / f).is_file() for f in artifact.files)
    assert artifact.files[0].endswith(FORMATS[name].suffixes[0]) and artifact.size_bytes > 0
    gate = artifact.parity.gate
    assert gate == FORMATS[name].gate and artifact.parity.metrics["n"] == len(test_images[1])
    x, y = test_images
    with load(exported, format=name, device="cpu") as model:  # verify=True: sha256 checked
        probs = model.predict(x[:16])
    assert probs.shape == (min(16, len(y)), len(factory.LABELS)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=0.02)


def test_bundle_contents(exported):
    manifest = Manifest.load(exported)
    assert list(manifest.artifacts) == INSTALLED and manifest.labels == factory.LABELS
    assert manifest.input.shape == (factory.SIZE, factory.SIZE, 3) and manifest.input.layout == "NHWC"
    prov = manifest.provenance
    assert prov["backbone"] == "tiny-conv" and prov["data"]["fingerprint"]
    assert {"edgexfer", "tensorflow-cpu", "tf2onnx", "openvino"} <= set(prov["versions"])
    assert prov["parity_reference"]["n"] > 0 and prov["created"] and prov["export"]["parallel"] >= 1
    parity = json.loads((exported / "parity.json").read_text())
    assert set(parity["artifacts"]) == set(INSTALLED)
    assert "| tflite-int8 | PASS |" in (exported / "parity.md").read_text()


def test_onnx_graph(exported):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(exported / "onnx" / "model.onnx"))
    assert model.opset_import[0].version == 17
    inp = model.graph.input[0]
    assert inp.name == "images" and inp.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [factory.SIZE, factory.SIZE, 3]  # NHWC
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["edgexfer.labels"]) == factory.LABELS and "edgexfer.preprocessing" in meta


def _io_dtypes(path):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    return interp.get_input_details()[0]["dtype"], interp.get_output_details()[0]["dtype"]


def test_int8_io(exported):
    artifact = Manifest.load(exported).artifacts["tflite-int8"]
    assert _io_dtypes(exported / artifact.main_file) == (np.int8, np.int8)
    assert artifact.input_quant.dtype == "int8" and artifact.output_quant.dtype == "int8"
    assert artifact.details["float_ops"] == []
    # the input range is pinned to the 0..255 contract: scale 1, so no bright pixel is ever clipped
    assert (artifact.input_quant.scale, artifact.input_quant.zero_point) == (1.0, -128)


@pytest.mark.slow
def test_uint8_io_and_fallback_ladder(shared_run, tmp_path):
    """An impossible gate makes tflite-int8 walk the whole ladder; the report says what was tried."""
    result = export(shared_run, tmp_path / "b", formats=["tflite-int8"], int8_io="uint8",
                    gates={"tflite-int8": {"max_acc_drop": -100}}, calibration_samples=50, parity_samples=100)
    artifact = result.manifest.artifacts["tflite-int8"]
    assert artifact.status == "failed" and not result.ok
    tried = artifact.parity.tried
    assert [t.rung for t in tried] == ["default", "more-calibration", "per-tensor", "denylist", "16x8"]
    assert tried[0].details["input_dtype"] == "uint8" and tried[0].details["output_dtype"] == "uint8"
    assert tried[0].details.get("rung", "default") == "default"  # not rewritten when a variant is adopted
    assert all(t.checks for t in tried if t.status != "error")
    assert tried[3].details["denylisted_nodes"] and tried[4].details["io_dtype"] == "int16"
    kept = artifact.details["rung"]
    expected = {"int16"} if kept == "16x8" else {"uint8"}
    assert {np.dtype(d).name for d in _io_dtypes(result.bundle / artifact.main_file)} == expected
    assert artifact.input_quant.dtype in expected
    assert "int8 fallback ladder" in (result.bundle / "parity.md").read_text()
    from edgexfer.manifest import verify_bundle

    assert verify_bundle(result.bundle) == []  # the kept variant's record agrees with its own numbers
    from edgexfer.runtime import load

    with pytest.raises(UserError):  # the runtime refuses a failed artifact unless forced
        load(result.bundle, format="tflite-int8")
    with load(result.bundle, format="tflite-int8", allow_failed=True) as model:
        assert model.predict(np.zeros((2, 32, 32, 3), np.uint8)).shape == (2, len(factory.LABELS))


@pytest.mark.slow
def test_augmentation_layer_fails_onnx(shared_run, tmp_path):
    pytest.importorskip("keras")
    run = factory.tiny_run(tmp_path / "run", fit=False, augment=True,
                           data=json.loads((shared_run / "run.json").read_text())["data"]["source"])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConversionError, match="RandomFlip"):
        export(run, out / "b", formats=["onnx"])
    assert list(out.iterdir()) == []  # no staging left


@pytest.mark.slow
def test_one_failure_keeps_the_others(shared_run, tmp_path):
    """A failed artifact is written and marked; the passed one is what the runtime picks; --archive zips it."""
    from edgexfer.cli import main
    from edgexfer.runtime import load

    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(shared_run), "--out", str(out), "--formats", "onnx,tflite",
                                    "--gate", "onnx:max_abs_diff=-1", "--parity-samples", "64", "--archive"])
    assert res.exit_code == 0, res.output
    assert "onnx: FAILED" in res.output and "max_abs_diff" in res.output
    manifest = Manifest.load(out)
    assert manifest.artifacts["onnx"].status == "failed" and manifest.artifacts["tflite"].status == "passed"
    assert "max_abs_diff" in manifest.artifacts["onnx"].parity.reason
    with load(out) as model:
        assert model.format == "tflite"
    with pytest.raises(UserError, match="--allow-failed.*allow_failed=True"):
        load(out, format="onnx")
    with load(out, format="onnx", allow_failed=True) as model:
        assert model.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, len(factory.LABELS))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "b.zip"]  # the archive, and no staging left


@pytest.mark.slow
def test_cli_strict_exits_1_and_keeps_the_bundle(shared_run, tmp_path):
    from edgexfer.cli import main

    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(shared_run), "--out", str(out), "--formats", "onnx",
                                    "--gate", "onnx:max_abs_diff=-1", "--strict", "--parity-samples", "64"])
    assert res.exit_code == 1, res.output
    assert "failed parity" in res.output and "max_abs_diff" in res.output and "strict" in res.output
    assert Manifest.load(out).artifacts["onnx"].status == "failed"


def test_info_and_verify_catch_tampering(bundle_copy):
    from edgexfer.cli import main

    bundle = bundle_copy
    runner = CliRunner()
    ok = runner.invoke(main, ["info", str(bundle), "--verify"])
    assert ok.exit_code == 0 and "Verified" in ok.output and "tflite-int8" in ok.output
    as_json = runner.invoke(main, ["info", str(bundle), "--json", "--verify"])
    assert json.loads(as_json.output)["verify"]["ok"] is True
    with open(bundle / "tflite" / "model.tflite", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    bad = runner.invoke(main, ["info", str(bundle), "--verify"])
    assert bad.exit_code != 0 and "tflite/model.tflite" in bad.output


def test_existing_bundle_without_force(bundle_copy, shared_run):
    before = (bundle_copy / "manifest.json").read_bytes()
    with pytest.raises(UserError, match="already exists"):
        export(shared_run, bundle_copy, formats=["onnx"])
    assert (bundle_copy / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_export_keeps_existing_bundle(bundle_copy, shared_run, monkeypatch, exc):
    """Interrupted mid-way (after staging and data, at conversion): nothing left, old bundle intact."""
    import edgexfer.export.pipeline as pipeline

    def interrupt(*args, **kwargs):
        raise exc("interrupted")

    monkeypatch.setattr(pipeline, "run_chains", interrupt)
    before = {p.name: p.stat().st_mtime_ns for p in bundle_copy.rglob("*")}
    siblings = sorted(p.name for p in bundle_copy.parent.iterdir())
    with pytest.raises(exc):
        export(shared_run, bundle_copy, formats=["onnx"], force=True, archive=True)
    assert {p.name: p.stat().st_mtime_ns for p in bundle_copy.rglob("*")} == before
    assert sorted(p.name for p in bundle_copy.parent.iterdir()) == siblings


@pytest.mark.slow
def test_truncated_model_is_one_line_user_error(shared_run, tmp_path):
    from edgexfer.cli import main

    broken = tmp_path / "run"
    shutil.copytree(shared_run, broken)
    data = (broken / "model.keras").read_bytes()
    (broken / "model.keras").write_bytes(data[: len(data) // 3])
    res = CliRunner().invoke(main, ["export", str(broken), "--out", str(tmp_path / "b"), "--formats", "onnx"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in res.output and len(errors) == 1  # progress lines aside, one error line
    assert "cannot load" in errors[0] and "Train the run again" in errors[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folders left


def test_sigterm_cleans_up_staging_and_children(shared_run, tmp_path):
    """`kill` on a running export: exit 143, no hidden staging folder, no conversion process left."""
    import os
    import signal
    import subprocess
    import sys
    import time

    psutil = pytest.importorskip("psutil")
    proc = subprocess.Popen([sys.executable, "-m", "edgexfer", "export", str(shared_run), "--out", str(tmp_path / "b")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    children = []
    while time.monotonic() < deadline and not children:
        children = [c for c in psutil.Process(proc.pid).children(recursive=True)
                    if "edgexfer.export.worker" in " ".join(c.cmdline())]
        time.sleep(0.2)
    assert children, "no conversion child started"
    os.kill(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 143, out
    assert "Traceback" not in out and "Terminated." in out
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive
    assert list(tmp_path.iterdir()) == []


def test_staging_of_a_killed_export_is_removed_by_the_next(tmp_path):
    import subprocess
    import sys

    from edgexfer.export.bundle import remove_abandoned

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    out = tmp_path / "bundle"
    for name in (f".bundle.partial-{dead}-x1", f".bundle.work-{dead}-x2", f".bundle.partial-{os.getpid()}-x3"):
        (tmp_path / name).mkdir()
    (tmp_path / f".bundle.old-{dead}-x4" / "bundle").mkdir(parents=True)  # killed mid-swap
    (tmp_path / f".bundle.old-{dead}-x4" / "bundle" / "manifest.json").write_text("{}")
    removed = remove_abandoned(out)
    assert len(removed) == 3
    assert (tmp_path / f".bundle.partial-{os.getpid()}-x3").is_dir()  # a live export's folder stays
    assert (out / "manifest.json").is_file()  # the previous bundle is restored, not deleted


@pytest.mark.slow
def test_run_without_validation_split_exports_openvino_int8(shared_run, tmp_path):
    """A k-shot run has no validation split: openvino-int8 quantizes without accuracy control."""
    pytest.importorskip("keras")
    from edgexfer.record import RunRecord

    run = factory.tiny_run(tmp_path / "run", fit=False, data=RunRecord.load(shared_run).data["source"])
    record = RunRecord.load(run)
    record.data["splits"]["val"] = {key: [] for key in record.data["splits"]["val"]}  # the splits decide
    record.save(run)
    result = export(run, tmp_path / "b", formats=["openvino-int8"], calibration_samples=20, parity_samples=50)
    artifact = result.manifest.artifacts["openvino-int8"]
    assert "accuracy_control" not in artifact.details, artifact.details
    assert "accuracy-control" not in [r.name for r in artifact.parity.tried or []]

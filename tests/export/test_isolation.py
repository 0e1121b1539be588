"""Subprocess isolation, the tf2onnx error capture and the atomic bundle staging (no conversion)."""
from __future__ import annotations

import logging

import pytest

from edgexfer.errors import ConversionError, UserError
from edgexfer.export.bundle import Staging
from edgexfer.export.onnx import ErrorCollector
from edgexfer.export.worker import Batch, raise_for, run_batches
from edgexfer.manifest import InputSpec, Manifest


def test_failed_job_becomes_conversion_error_with_log_tail(tmp_path):
    from edgexfer.export.jobs import Job

    jobs = [Job("bad", "json:loads", str(tmp_path / "bad")),  # raises TypeError
            Job("dies", "builtins:exit", str(tmp_path / "dies"))]
    outcomes = run_batches([Batch("t", jobs, tmp_path)])
    assert not outcomes["bad"]["ok"] and not outcomes["dies"]["ok"]
    with pytest.raises(ConversionError, match="'bad' failed") as info:
        raise_for("bad", outcomes["bad"])
    assert "Last lines of the conversion log" in str(info.value)
    with pytest.raises(ConversionError, match="exited with code 1"):  # a child that died before reporting
        raise_for("dies", outcomes["dies"])


def test_tf2onnx_errors_are_failures():
    with ErrorCollector() as errors:
        logging.getLogger("tf2onnx.tfonnx").error("Unsupported ops: Counter({'StatelessRandomUniformV2': 1})")
        logging.getLogger("tf2onnx.tfonnx").warning("just a warning")
    assert len(errors.messages) == 1
    with pytest.raises(ConversionError, match="StatelessRandomUniformV2"):
        errors.raise_if_any("tf2onnx")
    ErrorCollector().raise_if_any("tf2onnx")  # no errors: no exception


def _manifest():
    return Manifest(name="b", labels=["a", "b"], input=InputSpec(8, 8), preprocessing={})


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_staging_leaves_nothing(tmp_path, exc):
    with pytest.raises(type(exc)):
        with Staging(tmp_path / "bundle") as staging:
            (staging.root / "onnx").mkdir()
            (staging.root / "onnx" / "model.onnx").write_bytes(b"half")
            raise exc
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_needs_force(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "keep").write_text("old")
    with pytest.raises(UserError, match="--force"):
        Staging(out)
    with Staging(out, force=True, archive=True) as staging:
        (staging.root / "new").write_text("new")
        staging.commit(_manifest())
    assert (out / "new").is_file() and not (out / "keep").exists() and (out / "manifest.json").is_file()
    assert (tmp_path / "bundle.zip").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle.zip"]


def test_ladder_keeps_the_best_passing_variant():
    from edgexfer.export.formats import OPENVINO_INT8_LADDER
    from edgexfer.export.guardrail import _choose, _rung_changes
    from edgexfer.parity import Gate, ParityResult

    def res(acc, passed, worst_drop=5.0):
        return ParityResult({"accuracy": acc, "accuracy_drop_ci": [-1.0, worst_drop]}, Gate(), passed)

    default, low, high, failed_best = res(70, False), res(75, True), res(78, True), res(90, False)
    cands = [("default", default, None), ("a", low, "A"), ("b", high, "B"), ("c", failed_best, "C")]
    assert _choose(cands)[0] == "b"  # passing first, then (equal evidence) accuracy
    assert _choose([("default", default, None), ("c", failed_best, "C")])[0] == "c"  # none pass: best kept
    assert _choose([("default", res(70, True), None), ("a", res(70, True), "A")])[0] == "default"  # tie: earlier
    # among passing variants the gate's own evidence decides: the lowest upper bound of the drop
    assert _choose([("a", res(78, True, 2.5), "A"), ("b", res(75, True, 1.5), "B")])[0] == "b"
    control = next(step for step in OPENVINO_INT8_LADDER if step.accuracy_control)
    assert _rung_changes(control, Gate(max_acc_drop=0.5)) == {"max_drop": 0.25}  # aims inside the gate
    assert _rung_changes(OPENVINO_INT8_LADDER[0], Gate(max_acc_drop=0.5)) == {}


def _context(tmp_path, validation):
    from types import SimpleNamespace

    from edgexfer.export.context import DataFiles, ExportContext, ExportSettings

    record = SimpleNamespace(input_shape=[32, 32, 3], labels=["a", "b"], preprocessing={})
    files = DataFiles(test="t.npy", reference="r.npy", calibration="c.npy", validation=validation)
    return ExportContext(record=record, run_dir=tmp_path, root=tmp_path / "b", work=tmp_path / "w",
                         settings=ExportSettings(calibration_samples=20, max_drop=None), gates={}, files=files)


def test_every_ladder_rung_makes_its_job(tmp_path):
    """Each rung's job is built the way the walk builds it (the accuracy-control rung once raised a
    TypeError: the export's max_drop setting and the rung's own change were both passed as keywords)."""
    from edgexfer.export.formats import FORMATS
    from edgexfer.export.guardrail import _rung_job
    from edgexfer.parity import Gate

    ctx = _context(tmp_path, validation="v.npz")
    for spec in (s for s in FORMATS.values() if s.ladder):
        for rung in spec.ladder:
            job = _rung_job(ctx, spec, rung, Gate(max_acc_drop=1.0))
            assert job.name == f"{spec.name}@{rung.name}" and job.options.calibration_samples == 20
            assert job.options.max_drop == (0.5 if rung.accuracy_control else None), (spec.name, rung.name)


def test_without_a_validation_split_the_ladder_skips_accuracy_control(tmp_path):
    """Without validation images the accuracy-control rung would quantize exactly as the default did."""
    from edgexfer.export.formats import FORMATS
    from edgexfer.export.guardrail import runnable_rungs

    spec = FORMATS["openvino-int8"]
    with_val = runnable_rungs(spec, _context(tmp_path, "v.npz").files)
    without = runnable_rungs(spec, _context(tmp_path, None).files)
    assert [r.name for r in with_val] == [r.name for r in spec.ladder] and any(r.accuracy_control for r in with_val)
    assert without and not any(r.accuracy_control for r in without)
    assert runnable_rungs(FORMATS["tflite-int8"], None) == FORMATS["tflite-int8"].ladder

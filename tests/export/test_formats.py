"""The format registry and argument validation (no TensorFlow, no conversion)."""
from __future__ import annotations

import importlib

import pytest

from edgexfer.errors import UserError
from edgexfer.export import FORMATS, list_formats
from edgexfer.export.formats import gates_for, resolve_formats

EXPECTED = ["onnx", "tflite", "tflite-fp16", "tflite-int8", "openvino", "openvino-fp16", "openvino-int8"]


def test_registry_has_every_format():
    assert list(FORMATS) == EXPECTED


@pytest.mark.parametrize("name", list(FORMATS))
def test_spec_is_complete(name):
    spec = FORMATS[name]
    assert spec.family in ("onnx", "tflite", "openvino") and spec.precision in ("fp32", "fp16", "int8")
    assert spec.gate.to_dict() and spec.suffixes and spec.description and spec.requires
    module, _, func = spec.converter.partition(":")
    assert module == f"edgexfer.export.{spec.family}"
    assert callable(getattr(importlib.import_module(module), func))  # importable without TensorFlow


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(UserError) as info:
        resolve_formats("onnx,tflite-int4")
    for name in EXPECTED:
        assert name in str(info.value)
    assert "tflite-int4" in str(info.value)


def test_default_formats_are_the_installed_ones():
    assert [s.name for s in resolve_formats(None)] == list_formats(installed_only=True)
    assert [s.name for s in resolve_formats(" onnx , tflite ")] == ["onnx", "tflite"]


def test_gates_defaults_max_drop_and_overrides():
    specs = resolve_formats(["onnx", "tflite-fp16", "tflite-int8", "openvino-int8"])
    gates = gates_for(specs, {"tflite-int8": {"max_acc_drop": 2.0}}, max_drop=0.5)
    assert gates["onnx"].to_dict() == {"max_abs_diff": 1e-4, "min_agreement": 99.9, "tie_margin": 2e-4,
                                       "confidence": 0.95}
    assert gates["tflite-fp16"].to_dict() == {"min_cosine": 0.999, "min_agreement": 99.5, "tie_margin": 0.02,
                                              "confidence": 0.95}
    assert gates["tflite-int8"].max_acc_drop == 2.0 and gates["openvino-int8"].max_acc_drop == 0.5
    with pytest.raises(UserError, match="gate overrides"):
        gates_for(specs, {"onnx-fp64": {}})


def test_export_validates_before_heavy_work(tmp_path):
    from edgexfer.export import export

    with pytest.raises(UserError, match="int8_io"):
        export(tmp_path, tmp_path / "b", int8_io="int4")
    with pytest.raises(UserError, match="Known|Expected a format"):
        export(tmp_path, tmp_path / "b", formats=["bogus"])
    with pytest.raises(UserError, match="run.json"):
        export(tmp_path, tmp_path / "b", formats=["onnx"])


def test_export_refuses_an_unfinished_run(tmp_path):
    from edgexfer.export import export
    from edgexfer.record import MODEL_FILE, RunRecord

    RunRecord(labels=["a", "b"], input_shape=[32, 32, 3], preprocessing={}, backbone={}, data={}, seed=0,
              training={"status": "interrupted"}).save(tmp_path)
    (tmp_path / MODEL_FILE).write_bytes(b"an older model")
    with pytest.raises(UserError, match="training finished.*'interrupted'.*--resume"):
        export(tmp_path, tmp_path / "b", formats=["onnx"])
    assert not (tmp_path / "b").exists()


def test_unlabelled_parity_gates_int8_on_agreement():
    """pretrained:NAME has no labels: int8 is gated on tie-aware agreement; fp32/fp16 keep their gates."""
    from edgexfer.export.formats import FP32_GATE, UNLABELLED_INT8_GATE

    specs = resolve_formats(["onnx", "tflite-int8", "openvino-int8"])
    gates = gates_for(specs, {"openvino-int8": {"min_agreement": 90}}, max_drop=0.5, labelled=False)
    assert gates["onnx"] == FP32_GATE and gates["tflite-int8"] == UNLABELLED_INT8_GATE
    assert gates["tflite-int8"].max_acc_drop is None and gates["openvino-int8"].min_agreement == 90

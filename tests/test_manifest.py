"""The bundle manifest: round trip, schema guard, checksum verification."""
from __future__ import annotations

import json

import pytest

from edgexfer.errors import IntegrityError, UserError
from edgexfer.manifest import (
    SCHEMA_VERSION, Artifact, InputSpec, Manifest, QuantParams, describe_files, verify_artifact, verify_bundle,
)


def _bundle(tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"fake onnx bytes")
    sums, size = describe_files(tmp_path, ["onnx/model.onnx"])
    art = Artifact(name="onnx", format="onnx", files=["onnx/model.onnx"], precision="fp32", sha256=sums,
                   size_bytes=size, status="passed",
                   input_quant=QuantParams(dtype="int8", scale=1.0, zero_point=-128))
    manifest = Manifest(name="m", labels=["a", "b"], input=InputSpec(32, 32), preprocessing={"in_graph": "x"},
                        artifacts={"onnx": art})
    manifest.save(tmp_path)
    return manifest


def test_round_trip_preserves_every_field(tmp_path):
    manifest = _bundle(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == manifest
    assert loaded.artifacts["onnx"].input_quant == QuantParams("int8", 1.0, -128)
    assert loaded.input.shape == (32, 32, 3)
    assert [a.name for a in loaded.passed_artifacts()] == ["onnx"]


def test_verify_catches_a_tampered_file_and_names_it(tmp_path):
    manifest = _bundle(tmp_path)
    assert verify_bundle(tmp_path) == []
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="onnx/model.onnx"):
        verify_artifact(tmp_path, manifest.artifacts["onnx"])
    assert len(verify_bundle(tmp_path)) == 1


def test_missing_file_is_reported(tmp_path):
    _bundle(tmp_path)
    (tmp_path / "onnx" / "model.onnx").unlink()
    assert "missing" in verify_bundle(tmp_path)[0]


def test_newer_schema_is_refused_with_a_fix(tmp_path):
    _bundle(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match="Upgrade edgexfer"):
        Manifest.load(tmp_path)


def test_not_a_bundle_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="edgexfer export"):
        Manifest.load(tmp_path)


def test_unknown_artifact_lists_the_known_ones(tmp_path):
    manifest = _bundle(tmp_path)
    with pytest.raises(UserError, match=r"\['onnx'\]"):
        manifest.artifact("tflite")

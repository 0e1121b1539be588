"""load(): checksums, statuses, zip bundles, single files, corrupt files, the auto rule and tuning records."""
from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgexfer.errors import IntegrityError, MissingDependencyError, UserError
from edgexfer.runtime import backends, load, select
from tests.factory import edit_manifest, zip_bundle

pytestmark = pytest.mark.runtime
X = np.zeros((2, 32, 32, 3), np.uint8)


# -- integrity ------------------------------------------------------------------------------------------
def test_checksum_tamper_names_the_file(bundle_copy, artifact_name, manifest):
    target = manifest.artifacts[artifact_name].files[-1]
    with open(bundle_copy / target, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match=target.replace(".", r"\.")):
        load(bundle_copy, format=artifact_name)


def test_verify_false_skips_checksums(bundle_copy, manifest):
    edit_manifest(bundle_copy, lambda raw: raw["artifacts"]["onnx"]["sha256"].update(
        {"onnx/model.onnx": "0" * 64}))
    with pytest.raises(IntegrityError, match="onnx/model.onnx"):
        load(bundle_copy, format="onnx")
    with load(bundle_copy, format="onnx", verify=False) as m:
        assert m.predict(X).shape == (2, len(manifest.labels))


@pytest.mark.parametrize("status", ["failed", "pending"])
def test_unpassed_artifact_refused_unless_allowed(bundle_copy, status):
    edit_manifest(bundle_copy, lambda raw: raw["artifacts"]["onnx"].update(status=status))
    with pytest.raises(UserError, match=f"status '{status}'.*allow_failed"):
        load(bundle_copy, format="onnx")
    with pytest.raises(UserError, match="allow_failed"):
        load(bundle_copy / "onnx" / "model.onnx")
    with load(bundle_copy, format="onnx", allow_failed=True) as m:
        assert m.format == "onnx"
    with pytest.raises(UserError, match="onnxruntime backend runs"):  # never picked implicitly
        load(bundle_copy, backend="onnxruntime")


def test_no_passed_artifact(bundle_copy):
    edit_manifest(bundle_copy, lambda raw: [a.update(status="failed") for a in raw["artifacts"].values()])
    with pytest.raises(UserError, match="passed parity"):
        load(bundle_copy)


def test_unknown_format_and_backend(bundle_dir):
    with pytest.raises(UserError, match="tflite-int8"):  # the message lists what exists
        load(bundle_dir, format="tensorrt-plan")
    with pytest.raises(UserError, match="onnxruntime"):
        load(bundle_dir, backend="tvm")
    with pytest.raises(UserError, match="runs onnx artifacts"):
        load(bundle_dir, format="onnx", backend="litert")


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load(tmp_path / "nope")
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="suffix"):
        load(tmp_path / "model.pt")


def test_manifest_disagreeing_with_model(bundle_copy):
    edit_manifest(bundle_copy, lambda raw: raw.update(labels=raw["labels"] + ["extra"]))
    with pytest.raises(IntegrityError, match="labels"):
        load(bundle_copy, format="onnx")


# -- corrupt model files ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_model_file_clear_error(bundle_copy, artifact_backend, manifest, how):
    name, backend = artifact_backend
    main = bundle_copy / manifest.artifacts[name].main_file
    data = main.read_bytes()
    main.write_bytes(data[: len(data) // 3] if how == "truncated" else b"\x00garbage" * 10)
    with pytest.raises(IntegrityError) as info:
        load(bundle_copy, format=name, backend=backend, verify=False)
    assert str(main.name) in str(info.value) and "corrupt" in str(info.value)


# -- zip bundles ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "bundle/"])
def test_zip_bundle_loads(bundle_dir, tmp_path, images, reference, prefix):
    archive = zip_bundle(bundle_dir, tmp_path / "b.zip", prefix)
    for _ in range(2):  # the second load reuses the extraction
        with load(archive, format="onnx") as m:
            np.testing.assert_allclose(m.predict(images), reference, atol=1e-6)


@pytest.mark.parametrize("entry", ["../evil.txt", "bundle/../../evil.txt", "/tmp/evil.txt", "..\\evil.txt",
                                   "C:/evil.txt"])
def test_zip_slip_rejected(bundle_dir, tmp_path, entry):
    archive = zip_bundle(bundle_dir, tmp_path / "evil.zip", extra={entry: b"owned"})
    with pytest.raises(IntegrityError, match="Unsafe entry"):
        load(archive)
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_rejected(bundle_dir, tmp_path):
    archive = zip_bundle(bundle_dir, tmp_path / "link.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        info = zipfile.ZipInfo("bundle/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(IntegrityError, match="link"):
        load(archive)


def test_not_a_zip(tmp_path):
    (tmp_path / "b.zip").write_bytes(b"nope")
    with pytest.raises(IntegrityError, match="not a valid zip"):
        load(tmp_path / "b.zip")


# -- single model files -----------------------------------------------------------------------------------
def test_single_file_with_manifest(bundle_dir, artifact_name, manifest):
    art = manifest.artifacts[artifact_name]
    with load(bundle_dir / art.main_file) as m:
        assert m.format == artifact_name and m.labels == manifest.labels
        assert m.predict(X).shape == (2, len(manifest.labels))
    with pytest.raises(UserError, match="match the file"):
        load(bundle_dir / art.main_file, format="something-else")


def test_single_file_without_manifest(bundle_dir, tmp_path, artifact_name, manifest, images, reference):
    art = manifest.artifacts[artifact_name]
    for f in art.files:
        shutil.copy(bundle_dir / f, tmp_path / Path(f).name)
    with load(tmp_path / Path(art.main_file).name) as m:
        assert m.labels == [str(i) for i in range(len(manifest.labels))]
        assert m.input_spec.shape == manifest.input.shape and m.format == art.format
        probs = m.predict(images)  # int8: quantization from the engine's own tensor details
    assert (probs.argmax(1) == reference.argmax(1)).mean() >= 0.9


# -- missing engines -----------------------------------------------------------------------------------------
def test_missing_engine_names_extra(bundle_dir, monkeypatch):
    monkeypatch.setattr(backends.registry, "available", lambda module: False)
    assert backends.list_backends(available_only=True) == []
    with pytest.raises(MissingDependencyError, match=r"edgexfer\[cpu\]"):
        load(bundle_dir, format="onnx")
    with pytest.raises(MissingDependencyError, match=r"edgexfer\[cpu\]"):
        load(bundle_dir)


@pytest.mark.parametrize("backend", backends.list_backends())
def test_engine_import_failure_names_extra(bundle_dir, manifest, monkeypatch, backend):
    for module in backends.get(backend).engine_modules:
        monkeypatch.setitem(__import__("sys").modules, module, None)
        monkeypatch.setitem(__import__("sys").modules, module + ".interpreter", None)
    family = backends.families(backend)[0]
    art = next(a for a in manifest.artifacts.values() if a.format == family)
    with pytest.raises(MissingDependencyError, match=r"edgexfer\[cpu\]"):
        backends.get(backend)(bundle_dir / art.main_file).activate()


# -- the auto rule -------------------------------------------------------------------------------------------
@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(select, "cuda_listed", lambda: False)


def _tuning(bundle: Path, fingerprint: str, artifact: str, backend: str, batch: str = "1",
            threads: int | None = None) -> None:
    entry = {"artifact": artifact, "backend": backend, "options": {}, "latency_ms": 0.1, "threads": threads}
    edit_manifest(bundle, lambda raw: raw.update(tuning={fingerprint: {batch: entry}}))


def test_auto_x86_defaults_to_onnx_runtime(bundle_dir, no_cuda, monkeypatch):
    monkeypatch.setattr(select.platform, "machine", lambda: "x86_64")
    with load(bundle_dir) as m:
        assert (m.format, m.backend, m.device) == ("onnx", "onnxruntime", "cpu")


def test_auto_arm_prefers_tflite(bundle_dir, no_cuda, monkeypatch):
    monkeypatch.setattr(select.platform, "machine", lambda: "aarch64")
    with load(bundle_dir) as m:
        assert (m.format, m.backend) == ("tflite", "litert")


def test_auto_uses_matching_tuning_record_with_its_threads(bundle_copy, no_cuda, monkeypatch):
    from edgexfer.machine import hardware_fingerprint

    monkeypatch.setattr(select.platform, "machine", lambda: "aarch64")  # tuning beats the arch default too
    _tuning(bundle_copy, hardware_fingerprint(), "openvino", "openvino", threads=1)
    with load(bundle_copy) as m:
        assert (m.format, m.backend, m.details["rule"]) == ("openvino", "openvino", "tuning")
        assert m.details["threads"] == 1
    with load(bundle_copy, threads=2) as m:  # an explicit thread count wins over the record
        assert m.details["threads"] == 2


def test_auto_uses_a_tuned_int8_artifact_that_passed(bundle_copy, no_cuda, monkeypatch):
    from edgexfer.machine import hardware_fingerprint

    _tuning(bundle_copy, hardware_fingerprint(), "tflite-int8", "litert")
    with load(bundle_copy) as m:
        assert (m.format, m.backend, m.details["rule"]) == ("tflite-int8", "litert", "tuning")


def test_auto_ignores_other_machines_and_failed_artifacts(bundle_copy, no_cuda, monkeypatch):
    from edgexfer.machine import hardware_fingerprint

    monkeypatch.setattr(select.platform, "machine", lambda: "x86_64")
    _tuning(bundle_copy, "0123456789abcdef", "openvino", "openvino")
    with load(bundle_copy) as m:
        assert m.format == "onnx"
    _tuning(bundle_copy, hardware_fingerprint(), "tflite-int8", "litert")
    edit_manifest(bundle_copy, lambda raw: raw["artifacts"]["tflite-int8"].update(status="failed"))
    with load(bundle_copy) as m:
        assert m.format == "onnx"


def test_tuning_batch_lookup():
    per_batch = {"1": "a", "32": "b"}
    assert select._entry_for_batch(per_batch, 1) == "a"
    assert select._entry_for_batch(per_batch, 16) == "a"
    assert select._entry_for_batch(per_batch, 64) == "b"


def test_auto_skips_failed_artifacts(bundle_copy, no_cuda, monkeypatch):
    monkeypatch.setattr(select.platform, "machine", lambda: "aarch64")
    edit_manifest(bundle_copy, lambda raw: raw["artifacts"]["tflite"].update(status="failed"))
    with load(bundle_copy) as m:
        assert m.format == "onnx"


def test_backend_without_format_picks_fp32(bundle_dir):
    with load(bundle_dir, backend="litert") as m:
        assert (m.format, m.precision) == ("tflite", "fp32")
    with load(bundle_dir, backend="openvino") as m:
        assert m.format in ("onnx", "openvino") and m.precision == "fp32"

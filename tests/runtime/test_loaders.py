"""The loader layer: every registered backend opens an artifact from its file and from its bytes, the same."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.manifest import Manifest
from edgexfer.runtime import backends, open_artifact
from edgexfer.runtime.backends import Loader, ModelSource

pytestmark = pytest.mark.runtime


def _cases(bundle) -> list[tuple[str, str]]:
    manifest = Manifest.load(bundle)
    return [(b, a.name) for b in backends.list_backends(available_only=True)
            for a in manifest.artifacts.values() if a.format in backends.families(b)]


def _source(bundle, artifact) -> ModelSource:
    main = bundle / artifact.main_file
    weights = main.with_suffix(".bin")
    return ModelSource(content=main.read_bytes(), weights=weights.read_bytes() if weights.is_file() else None,
                       name=main.name)


def test_every_installed_backend_has_a_case(shared_bundle):
    assert {b for b, _ in _cases(shared_bundle)} == set(backends.list_backends(available_only=True))


def test_from_bytes_equals_from_the_file(shared_bundle):
    x = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    manifest = Manifest.load(shared_bundle)
    for backend, name in _cases(shared_bundle):
        artifact = manifest.artifacts[name]
        from_file = open_artifact(shared_bundle, artifact, labels=manifest.labels, input_spec=manifest.input,
                                  backend=backend)
        runner = backends.open_runner(backend, _source(shared_bundle, artifact), device="cpu")
        try:
            engine_input = from_file._engine_input(x.astype(np.float32))
            np.testing.assert_array_equal(runner.infer(engine_input), from_file._runner.infer(engine_input),
                                          err_msg=f"{name} on {backend}")
            assert runner.path.name == artifact.main_file.rsplit("/", 1)[-1] and runner.device == "cpu"
        finally:
            runner.close()
            from_file.close()


def test_open_artifact_confines_files_to_the_root_and_needs_no_manifest_file(shared_bundle, tmp_path):
    import shutil

    from edgexfer.errors import UnsafeBundleError

    manifest = Manifest.load(shared_bundle)
    artifact = manifest.artifacts["onnx"]
    shutil.copytree(shared_bundle / "onnx", tmp_path / "onnx")  # no manifest.json next to it
    with open_artifact(tmp_path, artifact, labels=manifest.labels, input_spec=manifest.input) as model:
        assert model.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape == (1, len(manifest.labels))
    artifact.files = ["../outside.onnx"]
    with pytest.raises(UnsafeBundleError):
        open_artifact(tmp_path, artifact, labels=manifest.labels, input_spec=manifest.input)


def test_a_runner_takes_its_settings_from_the_loader_or_itself_not_both(shared_bundle):
    cls = backends.get("onnxruntime")
    loader = cls.loader(shared_bundle / "onnx" / "model.onnx", device="cpu", threads=1)
    with pytest.raises(UserError, match="not both"):
        cls(loader, threads=2)
    with cls(loader) as runner:
        assert runner.threads == 1 and runner.details["intra_op_threads"] == 1


def test_a_source_needs_a_file_or_bytes(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ModelSource.of(tmp_path / "missing.onnx").check()
    with pytest.raises(UserError, match="Expected a model path"):
        ModelSource.of(3)
    with pytest.raises(NotImplementedError):
        Loader(b"x")()

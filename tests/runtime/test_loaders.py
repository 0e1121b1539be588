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


# -- a backend that brings a new artifact family ------------------------------------------------------------
class _LinearLoader(Loader):
    """A made-up family: a .linear file holding one float32 matrix (np.save), the weights of x -> x @ W."""

    def _load(self):
        from edgexfer.runtime.backends import Engine

        self.check_device_name()
        try:
            import io

            data = self.source.content if self.source.content is not None else self.source.path.read_bytes()
            weights = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:  # not an .npy payload
            raise self.corrupt(exc) from exc
        return Engine(weights, "cpu", {"engine": "numpy matmul"})


class _LinearRunner(backends.Runner):
    name = "linear-test"
    families = ("linear",)
    suffixes = {".linear": "linear"}
    engine_modules = ("numpy",)
    loader = _LinearLoader

    def _activate_impl(self) -> None:
        from edgexfer.runtime.backends import TensorInfo

        self._w = self._load().handle
        self.input = TensorInfo("x", (None, 2, 2, 3), np.dtype(np.float32))
        self.output = TensorInfo("y", (None, self._w.shape[1]), np.dtype(np.float32))

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1) @ self._w


@pytest.fixture
def linear_backend():
    from edgexfer.runtime.backends import registry

    backends.register(_LinearRunner)
    yield _LinearRunner
    registry._REGISTRY.pop(_LinearRunner.name, None)


def test_a_new_family_brings_its_file_suffix(linear_backend, tmp_path):
    """load(path) of a lone model file accepts a suffix only a plugin backend declares: nothing in
    edgexfer names it (the backend's one module and its @register are all it takes)."""
    from edgexfer.runtime import load

    assert backends.family_by_suffix()[".linear"] == "linear"
    weights = np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32)
    with open(tmp_path / "model.linear", "wb") as f:
        np.save(f, weights)
    with load(tmp_path / "model.linear") as model:
        assert model.backend == "linear-test" and model.format == "linear" and model.labels == ["0", "1", "2", "3"]
        x = np.random.default_rng(1).integers(0, 256, (5, 2, 2, 3)).astype(np.float32)
        np.testing.assert_allclose(model.predict(x), x.reshape(5, -1) @ weights, rtol=1e-5)


def test_without_the_backend_the_suffix_is_refused(tmp_path):
    from edgexfer.runtime import load

    (tmp_path / "model.linear").write_bytes(b"\x93NUMPY")
    with pytest.raises(UserError, match=r"\.onnx.*\.tflite|\.tflite.*\.onnx"):
        load(tmp_path / "model.linear")


@pytest.mark.parametrize("suffixes", [{".linear": "other"}, {"linear": "linear"}, {".LIN": "linear"}])
def test_register_refuses_suffixes_for_families_it_does_not_run(suffixes):
    bad = type("Bad", (_LinearRunner,), {"name": "bad-test", "suffixes": suffixes})
    with pytest.raises(TypeError, match="suffixes"):
        backends.register(bad)
    assert "bad-test" not in backends.list_backends()


def test_built_in_suffixes():
    assert {s: f for s, f in backends.family_by_suffix().items() if s in (".onnx", ".tflite", ".xml")} == {
        ".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}


def test_predict_cli_on_a_lone_file_of_the_new_family(linear_backend, tmp_path):
    """As a stranger tried it: `edgexfer predict model.linear photos/` with a plugin backend, a folder of
    photos with a 0-byte and a non-image .jpg: each bad file gets its one error line, the good ones a label."""
    from click.testing import CliRunner
    from PIL import Image

    from edgexfer.cli import main

    with open(tmp_path / "model.linear", "wb") as f:
        np.save(f, np.random.default_rng(0).standard_normal((12, 4)).astype(np.float32))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((9, 7, 3), 40 * i, np.uint8)).save(photos / f"p{i}.png")
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "text.jpg").write_text("not an image")
    result = CliRunner().invoke(main, ["predict", str(tmp_path / "model.linear"), str(photos)])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    good = [line for line in result.stdout.splitlines() if line.startswith(str(photos))]
    assert len(good) == 3 and all(line.split("\t")[1] in {"0", "1", "2", "3"} for line in good), result.output
    assert "empty.jpg" in result.output and "text.jpg" in result.output and "2 of 5 images" in result.output


def test_a_runner_subclassing_a_built_in_one_leaves_it_alone():
    """register binds the backend's name and devices to its loader class: a plugin that subclasses the
    onnxruntime runner (inheriting its loader) must not rename onnxruntime or take CUDA away from it."""
    from edgexfer.runtime.backends import registry

    ort = backends.get("onnxruntime")
    mine = type("MyOrt", (ort,), {"name": "my-ort-test", "devices": ("cpu",)})
    try:
        backends.register(mine)
        assert ort.loader.backend == "onnxruntime" and "cuda" in ort.loader.devices
        assert mine.loader.backend == "my-ort-test" and mine.loader.devices == ("cpu",)
        assert issubclass(mine.loader, ort.loader)
    finally:
        registry._REGISTRY.pop("my-ort-test", None)


@pytest.mark.parametrize("backend", backends.list_backends(available_only=True))
def test_close_releases_the_engine(backend, shared_bundle):
    """After close() the runner holds nothing of what its loader made (the engine is freed, not kept alive
    by a copy of the handle)."""
    manifest = Manifest.load(shared_bundle)
    name = next(a.name for a in manifest.artifacts.values() if a.format in backends.families(backend))
    runner = backends.open_runner(backend, shared_bundle / manifest.artifacts[name].main_file, device="cpu")
    made = runner._loader()  # the same kind of engine activation made: what must not be held after close
    held_before = {type(v).__name__ for v in vars(runner).values() if type(v) is type(made.handle)}
    runner.close()
    held_after = [k for k, v in vars(runner).items() if type(v) in (type(made.handle), type(made))]
    assert held_before and not held_after, (held_before, held_after)

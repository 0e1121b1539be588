"""A backend added from outside the package runs through load, parity and bench with no change to edgexfer:
one new module (tests/runtime/fake_backend.py) and its one `@register` line; a format for it is one registry
line (FORMATS["onnx-reference"], the onnx converter with the new backend for parity)."""
from __future__ import annotations

import importlib
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edgexfer.runtime import backends, load
from edgexfer.runtime.backends import ModelSource, registry

pytest.importorskip("onnx")  # the fake engine: onnx's reference evaluator (edgexfer[train])
MODULE = "tests.runtime.fake_backend"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(monkeypatch):
    """The fake backend registered for one test only (tests parametrized over the registry elsewhere must
    not see it)."""
    sys.modules.pop(MODULE, None)
    module = importlib.import_module(MODULE)
    yield module
    registry._REGISTRY.pop(module.NAME, None)
    sys.modules.pop(MODULE, None)


def _images(n: int = 12) -> np.ndarray:
    return np.random.default_rng(4).integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)


def test_it_registers_and_is_listed_after_the_built_in_ones(fake):
    assert backends.list_backends()[-1] == fake.NAME and backends.is_available(fake.NAME)
    assert backends.backends_for("onnx") == ["onnxruntime", "openvino", fake.NAME]  # auto never picks it first


def test_load_runs_it_and_it_agrees_with_onnxruntime(fake, shared_bundle):
    x = _images()
    with load(shared_bundle, format="onnx", backend=fake.NAME) as model:
        assert model.backend == fake.NAME and model.details["engine"] == "onnx.reference"
        got = model.predict(x, batch_size=5)  # Model splits the batch; the runner never sees more than 5
        assert model.classify(x[0])[0][0] in model.labels
    with load(shared_bundle, format="onnx", backend="onnxruntime") as model:
        np.testing.assert_allclose(got, model.predict(x), atol=1e-5)


def test_the_loader_layer_opens_it_from_bytes_and_refuses_a_corrupt_file(fake, shared_bundle, tmp_path):
    from edgexfer.errors import IntegrityError

    data = (shared_bundle / "onnx" / "model.onnx").read_bytes()
    runner = backends.open_runner(fake.NAME, ModelSource(content=data, name="model.onnx"))
    assert runner.input.shape[1:] == (32, 32, 3) and runner.infer(_images(2).astype(np.float32)).shape == (2, 3)
    runner.close()
    (tmp_path / "bad.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(IntegrityError, match=f"The {fake.NAME} backend could not read"):
        backends.open_runner(fake.NAME, tmp_path / "bad.onnx")


@pytest.mark.slow
def test_export_checks_parity_through_it(fake, shared_run, tmp_path, monkeypatch):
    """A new format whose parity runs on the fake backend: export converts it and judges it with the one
    comparator, through the loader layer; the runtime then loads it like any other artifact."""
    from edgexfer.export import formats
    from edgexfer.export.pipeline import export

    spec = replace(formats.FORMATS["onnx"], name="onnx-reference", backend=fake.NAME)
    monkeypatch.setitem(formats.FORMATS, spec.name, spec)  # the one registry line
    result = export(shared_run, tmp_path / "bundle", formats=[spec.name], parallel=1)
    record = result.manifest.artifacts[spec.name].parity
    assert result.ok and record.passed and record.metrics["max_abs_diff"] <= spec.gate.max_abs_diff, result.table()
    assert record.gate == formats.FP32_GATE and "max_abs_diff" in record.reason
    with load(result.bundle, format=spec.name, backend=fake.NAME) as model:
        assert model.predict(_images(3)).shape == (3, 3)


@pytest.mark.slow
def test_bench_measures_it_in_its_own_cell_process(fake, shared_bundle, tmp_path, monkeypatch):
    """Bench cells run in fresh interpreters: EDGEXFER_BACKENDS registers the module there too."""
    from edgexfer.bench.api import bench
    from edgexfer.bench.sweep import SweepConfig

    monkeypatch.setenv(registry.PLUGINS_ENV, MODULE)
    monkeypatch.setenv("PYTHONPATH", f"{REPO}:{__import__('os').environ.get('PYTHONPATH', '')}")
    config = SweepConfig(backends=[fake.NAME], formats=["onnx"], batch_sizes=[2], threads=[1], runs=5,
                         seconds=0.2, warmup=1)
    result = bench(shared_bundle, config, out=tmp_path / "bench")
    cells = result.results["cells"]
    assert [c["backend"] for c in cells] == [fake.NAME] and cells[0]["status"] == "ok", cells
    assert cells[0]["latency"]["p50_ms"] > 0 and fake.NAME in result.table


def test_a_plugin_that_fails_to_import_is_skipped_with_a_warning(monkeypatch):
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_module_for_edgexfer, ")
    with pytest.warns(RuntimeWarning, match="no_such_module_for_edgexfer"):
        assert registry.load_plugins() == []

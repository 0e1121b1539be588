"""Fixtures for the runtime tests: one bundle for the session, parametrization over its artifacts.

The bundle is the session bundle of tests/factory.py (EDGEXFER_TEST_BUNDLE when set: `make test` builds one in
the full environment, then runs these tests again in a runtime-only virtualenv without TensorFlow; otherwise
it is built once, in a subprocess, so this process never imports TensorFlow).

Parametrization comes from the bundle's manifest and the backend registry, so a new format or a new
backend is tested without writing a test:
- `artifact_name`: every artifact in the bundle;
- `artifact_backend`: every (artifact, installed backend that runs its family) pair.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests import factory

HERE = Path(__file__).resolve().parent


def _manifest_raw() -> dict:
    return json.loads((factory.shared_bundle() / "manifest.json").read_text())


def artifact_names() -> list[str]:
    return sorted(_manifest_raw()["artifacts"])


def artifact_backend_pairs() -> list[tuple[str, str]]:
    from edgexfer.runtime import backends

    pairs = []
    for name, art in sorted(_manifest_raw()["artifacts"].items()):
        pairs += [(name, b) for b in backends.backends_for(art["format"], available_only=True)]
    return pairs


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "artifact_name" in metafunc.fixturenames:
        metafunc.parametrize("artifact_name", artifact_names())
    if "artifact_backend" in metafunc.fixturenames:
        pairs = artifact_backend_pairs()
        metafunc.parametrize("artifact_backend", pairs, ids=[f"{a}-{b}" for a, b in pairs])


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def bundle_dir(shared_bundle) -> Path:
    return shared_bundle


@pytest.fixture(scope="session")
def manifest(bundle_dir):
    from edgexfer.manifest import Manifest

    return Manifest.load(bundle_dir)


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """uint8 [40, 32, 32, 3] images of the kind the test model was fitted on."""
    return factory.sample_images(40, seed=7)[0]


@pytest.fixture(scope="session")
def reference(bundle_dir, images, manifest) -> np.ndarray:
    """Probabilities from the first fp32 artifact (onnx when present): what other artifacts must match."""
    from edgexfer.runtime import load

    name = next((n for n in ("onnx", "tflite", "openvino") if n in manifest.artifacts),
                next(a.name for a in manifest.artifacts.values() if a.precision == "fp32"))
    with load(bundle_dir, format=name) as model:
        return model.predict(images)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Zip bundles extract into a per-session cache, never the user's."""
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _fresh_warnings():
    """warn_once state is per process: reset it so each test sees its own warnings."""
    from edgexfer.runtime.backends import base

    base._WARNED.clear()
    yield
    base._WARNED.clear()

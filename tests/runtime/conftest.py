"""Fixtures for the runtime tests: one bundle for the session, parametrization over its artifacts.

The bundle is EDGEXFER_TEST_BUNDLE when set (CI builds one in the full environment, then runs these tests
again in a runtime-only virtualenv without TensorFlow); otherwise tests/runtime/make_bundle.py builds one in
a temporary folder, in a subprocess, so this process never imports TensorFlow.

Parametrization comes from the bundle's manifest and the backend registry, so a new format or a new
backend is tested without writing a test:
- `artifact_name`: every artifact in the bundle;
- `artifact_backend`: every (artifact, installed backend that runs its family) pair.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
_STATE: dict[str, Path] = {}


def bundle_path() -> Path:
    """The test bundle (built once per process when EDGEXFER_TEST_BUNDLE is not set)."""
    if "bundle" in _STATE:
        return _STATE["bundle"]
    env = os.environ.get("EDGEXFER_TEST_BUNDLE")
    if env:
        path = Path(env)
        if not (path / "manifest.json").is_file():
            raise pytest.UsageError(f"EDGEXFER_TEST_BUNDLE={env} holds no manifest.json")
    else:
        path = _build()
    _STATE["bundle"] = path
    return path


def _build() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="edgexfer-runtime-tests-"))
    atexit.register(shutil.rmtree, tmp, True)
    out = tmp / "bundle"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(HERE / "make_bundle.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise pytest.UsageError(
            "Could not build the runtime test bundle (needs the full environment with TensorFlow; or set "
            f"EDGEXFER_TEST_BUNDLE to a built bundle):\n{proc.stderr[-3000:]}")
    return out


def _manifest_raw() -> dict:
    return json.loads((bundle_path() / "manifest.json").read_text())


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
def bundle_dir() -> Path:
    return bundle_path()


@pytest.fixture(scope="session")
def manifest(bundle_dir):
    from edgexfer.manifest import Manifest

    return Manifest.load(bundle_dir)


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    """uint8 [40, 32, 32, 3] images of the kind the test model was fitted on."""
    from make_bundle import sample_images

    return sample_images(40, seed=7)[0]


@pytest.fixture(scope="session")
def reference(bundle_dir, images, manifest) -> np.ndarray:
    """Probabilities from the first fp32 artifact (onnx when present): what other artifacts must match."""
    from edgexfer.runtime import load

    name = next((n for n in ("onnx", "tflite", "openvino") if n in manifest.artifacts),
                next(a.name for a in manifest.artifacts.values() if a.precision == "fp32"))
    with load(bundle_dir, format=name) as model:
        return model.predict(images)


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path) -> Path:
    """A private copy of the bundle that a test may tamper with."""
    dest = tmp_path / "bundle"
    shutil.copytree(bundle_dir, dest)
    return dest


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

"""Shared fixtures: one small test bundle per session, built in a subprocess (this process stays TF-free).

EDGEXFER_TEST_BUNDLE points at a bundle built beforehand (CI builds one in the full environment and runs
the runtime tests again in a runtime-only virtualenv); otherwise tests/runtime/make_bundle.py builds it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def shared_bundle(tmp_path_factory) -> Path:
    """A read-only bundle with every format the environment can export (copy it before changing it)."""
    env_path = os.environ.get("EDGEXFER_TEST_BUNDLE")
    if env_path:
        if not (Path(env_path) / "manifest.json").is_file():
            raise pytest.UsageError(f"EDGEXFER_TEST_BUNDLE={env_path} holds no manifest.json")
        return Path(env_path)
    out = tmp_path_factory.mktemp("shared") / "bundle"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(TESTS / "runtime" / "make_bundle.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise pytest.UsageError(f"Could not build the test bundle (needs TensorFlow, or set EDGEXFER_TEST_BUNDLE):\n"
                                f"{proc.stderr[-3000:]}")
    return out


@pytest.fixture
def bundle_copy(shared_bundle, tmp_path) -> Path:
    """A private, writable copy of the shared bundle."""
    return Path(shutil.copytree(shared_bundle, tmp_path / "bundle"))

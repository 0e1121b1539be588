"""The one small test bundle of a test session, shared by every test folder that needs a bundle.

EDGEXFER_TEST_BUNDLE points at a bundle built beforehand (`make test` builds one in the full environment,
then runs the runtime tests again in a runtime-only virtualenv without TensorFlow); otherwise
tests/runtime/make_bundle.py builds it once per process, in a subprocess, so pytest never imports
TensorFlow for it. A plain function (not only a fixture) because parametrization reads the manifest at
collection time.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
_STATE: dict[str, Path] = {}


def bundle_path() -> Path:
    """The session's bundle (read-only: copy it before changing it)."""
    if "bundle" not in _STATE:
        env = os.environ.get("EDGEXFER_TEST_BUNDLE")
        if env and not (Path(env) / "manifest.json").is_file():
            raise pytest.UsageError(f"EDGEXFER_TEST_BUNDLE={env} holds no manifest.json")
        _STATE["bundle"] = Path(env) if env else _build()
    return _STATE["bundle"]


def _build() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="edgexfer-test-bundle-"))
    atexit.register(shutil.rmtree, tmp, True)
    out = tmp / "bundle"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, str(TESTS / "runtime" / "make_bundle.py"), str(out)], env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise pytest.UsageError("Could not build the test bundle (needs the full environment with TensorFlow; "
                                f"or set EDGEXFER_TEST_BUNDLE to a built bundle):\n{proc.stderr[-3000:]}")
    return out

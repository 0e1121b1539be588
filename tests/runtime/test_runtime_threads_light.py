"""Thread safety for every backend, and no TensorFlow while loading and predicting with each backend
(what importing each module leaves behind: tests/test_light_imports.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgexfer.runtime import load

pytestmark = pytest.mark.runtime
HEAVY = ("tensorflow", "keras", "tf2onnx", "tf_keras", "tensorboard")


def test_concurrent_predict_equals_serial(bundle_dir, artifact_backend, images):
    name, backend = artifact_backend
    calls = [images[i % 5:i % 5 + n] for i, n in enumerate([1, 3, 7, 20, 33, 2, 1, 20] * 3)]
    with load(bundle_dir, format=name, backend=backend, threads=1) as model:
        serial = [model.predict(x) for x in calls]
        with ThreadPoolExecutor(max_workers=8) as pool:
            concurrent = list(pool.map(model.predict, calls))
    for want, got in zip(serial, concurrent):
        np.testing.assert_array_equal(got, want)


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_load_predict_never_imports_tensorflow(bundle_dir, artifact_backend):
    name, backend = artifact_backend
    found = _run(
        "import sys, json, numpy as np\n"
        "from edgexfer.runtime import load\n"
        f"m = load({str(bundle_dir)!r}, format={name!r}, backend={backend!r})\n"
        "m.predict(np.zeros((3, 32, 32, 3), np.uint8)); m.classify(np.zeros((32, 32, 3), np.float32))\n"
        "m.close()\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n")
    assert not set(found) & set(HEAVY), found
    assert backend != "onnxruntime" or "openvino" not in found  # only the engine in use is imported

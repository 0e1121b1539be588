"""`import edgexfer.data` (and the data CLI module) must not import TensorFlow or builtin sources."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"tensorflow", "keras", "sklearn", "mlxtend", "skimage", "onnxruntime", "openvino"}


@pytest.mark.parametrize("module", ["edgexfer.data", "edgexfer.cli.data_cmd"])
def test_import_is_light(module):
    code = f"import {module}, sys, json; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert not set(json.loads(out.strip().splitlines()[-1])) & HEAVY

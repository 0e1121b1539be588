"""`import edgexfer.train` and the train CLI module import no TensorFlow/Keras (the registry is light)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["edgexfer.train", "edgexfer.cli.train_cmd"])
def test_module_imports_no_tensorflow(module):
    code = (f"import {module}, sys, json\nimport edgexfer.train as t\nt.list_backbones()\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out.strip().splitlines()[-1]))
    assert not loaded & {"tensorflow", "keras", "matplotlib"}

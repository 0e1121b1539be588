"""Light by construction: the package, the CLI entry and the shared contracts import no heavy stack."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "openvino", "ai_edge_litert", "nncf",
         "matplotlib", "sklearn")

LIGHT_MODULES = ["edgexfer", "edgexfer.errors", "edgexfer.manifest", "edgexfer.record", "edgexfer.cli",
                 "edgexfer.bench.machine"]


def imported_after(code: str) -> set[str]:
    """Run `code` in a fresh interpreter and return the top-level modules it left in sys.modules."""
    probe = code + "\nimport sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_module_imports_no_heavy_package(module):
    assert not imported_after(f"import {module}") & set(HEAVY)


def test_cli_help_imports_no_heavy_package():
    loaded = imported_after("from click.testing import CliRunner\nfrom edgexfer.cli import main\n"
                            "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output")
    assert not loaded & set(HEAVY)

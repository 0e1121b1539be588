"""The top-level Python API: names keep meaning what they mean, whatever was imported before."""
from __future__ import annotations

import subprocess
import sys

import pytest

import edgexfer


@pytest.mark.slow
def test_every_top_level_function_twice(tmp_path):
    """train, evaluate, export and load, each called twice in one process (the README's API)."""
    runs = [edgexfer.train("builtin:uci_digits", tmp_path / f"run{i}", epochs=1, backbone="digits_mnv3s",
                           verbose=0) for i in range(2)]
    for run in runs:
        assert edgexfer.evaluate(run.run_dir, "builtin:uci_digits")["n"] > 0
    bundles = [edgexfer.export(runs[0].run_dir, tmp_path / f"b{i}", formats=["onnx"], parity_samples=32)
               for i in range(2)]
    for bundle in bundles:
        for _ in range(2):
            with edgexfer.load(bundle.bundle) as model:
                assert model.labels == runs[0].record.labels


def test_subpackage_imports_do_not_break_the_functions():
    code = ("import edgexfer, edgexfer.train, edgexfer.export, edgexfer.train.trainer as t, edgexfer.export.guardrail;"
            "assert callable(edgexfer.train) and callable(edgexfer.export);"
            "assert edgexfer.train.trainer is t and hasattr(edgexfer.export, 'guardrail');"
            "from edgexfer import train, export; assert callable(train) and callable(export)")
    subprocess.run([sys.executable, "-c", code], check=True)

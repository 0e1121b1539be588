"""Helpers for the deploy tests: run the device app as a subprocess on real image files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "deploy" / "app" / "edgexfer_app.py"


@pytest.fixture(scope="session")
def labels(shared_bundle) -> list[str]:
    return json.loads((shared_bundle / "manifest.json").read_text())["labels"]


@pytest.fixture
def image_files(tmp_path) -> list[Path]:
    """Six small real PNG/JPEG files (one of another size, so the app's resize path runs too)."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    files = []
    for i in range(6):
        size = 40 if i == 5 else 32
        path = folder / f"img{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def app_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EDGEXFER_APP_BATCH_DELAY"}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run_app(*args: str, stdin: str = "", timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    """Run the app to completion (stdin mode or --once)."""
    return subprocess.run([sys.executable, str(APP), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=app_env(**env))


def start_app(*args: str, stderr_file: Path, **env: str) -> subprocess.Popen:
    """Start the app in the background; its stderr goes to a file, so no pipe can fill up and block it."""
    with open(stderr_file, "w") as err:
        return subprocess.Popen([sys.executable, str(APP), *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env=app_env(**env))


def app_module():
    """The app imported in this process (it is a script, not a package module), once."""
    import importlib.util

    name = "edgexfer_app_under_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, APP)
        sys.modules[name] = module = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(module)
    return sys.modules[name]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]

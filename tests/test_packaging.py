"""What a wheel carries and what each extra installs, read from pyproject.toml (no build needed).

The wheel itself is built and installed into an empty venv by `make test` (scripts/wheel_check.sh).
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _packages_on_disk() -> set[str]:
    return {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "edgexfer").rglob("__init__.py")}


def test_every_subpackage_is_listed():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert _packages_on_disk() <= listed, "add the new subpackage to [tool.setuptools] packages"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["edgexfer._models"] == "models"


def test_shipped_weights_are_package_data():
    """Each models/ folder is its own data package: listed in packages (else setuptools warns that it is
    'absent from the packages configuration') and with every file it holds matched by its package-data."""
    folders = [p for p in (ROOT / "models").iterdir() if p.is_dir()]
    assert folders
    for folder in folders:
        package = f"edgexfer._models.{folder.name}"
        assert package in PYPROJECT["tool"]["setuptools"]["packages"], f"list {package} in [tool.setuptools]"
        patterns = PYPROJECT["tool"]["setuptools"]["package-data"][package]
        files = [p for p in folder.rglob("*") if p.is_file()]
        unmatched = [p.name for p in files if not any(p.relative_to(folder).match(pat) for pat in patterns)]
        assert files and not unmatched, f"{package}: files no package-data pattern ships: {unmatched}"


def _names(requirements: list[str]) -> list[str]:
    return [re.split(r"[\[=<>;! ]", r, maxsplit=1)[0].lower() for r in requirements]


def test_each_extra_has_one_tensorflow_and_one_onnxruntime():
    extras = PYPROJECT["project"]["optional-dependencies"]
    for extra in ("train", "train-gpu"):
        names = _names(extras[extra])
        assert "edgexfer" in names and "edgexfer[train]" not in extras[extra]
        tf = [r for r in extras[extra] if r.lower().startswith("tensorflow")]
        if extra == "train":  # one per platform, by marker
            assert len(tf) == 2 and all(";" in r for r in tf)
        else:
            assert len(tf) == 1
    assert not [n for n in _names(extras["train-base"]) if n.startswith(("tensorflow", "onnxruntime"))]
    assert _names(extras["cpu"]).count("onnxruntime") == 1 and "onnxruntime-gpu" not in _names(extras["cpu"])
    assert "onnxruntime-gpu" in _names(extras["gpu"]) and "onnxruntime" not in _names(extras["gpu"])

"""Shared fixtures: the session's test bundle (see tests/bundles.py) and writable copies of it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.bundles import bundle_path


@pytest.fixture(scope="session")
def shared_bundle() -> Path:
    """A read-only bundle with every format the environment can export (copy it before changing it)."""
    return bundle_path()


@pytest.fixture
def bundle_copy(shared_bundle, tmp_path) -> Path:
    """A private, writable copy of the shared bundle."""
    return Path(shutil.copytree(shared_bundle, tmp_path / "bundle"))

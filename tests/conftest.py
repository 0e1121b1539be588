"""Shared fixtures over tests/factory.py: the session's test bundle, writable copies of it, the run behind it."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import factory


@pytest.fixture(scope="session")
def shared_bundle() -> Path:
    """A read-only bundle with every format the environment can export (copy it before changing it)."""
    return factory.shared_bundle()


@pytest.fixture
def bundle_copy(shared_bundle, tmp_path) -> Path:
    """A private, writable copy of the shared bundle."""
    return Path(shutil.copytree(shared_bundle, tmp_path / "bundle"))


@pytest.fixture(scope="session")
def shared_run(shared_bundle, tmp_path_factory) -> Path:
    """A read-only tiny run directory: the one the shared bundle was exported from, else a new one (~2 s)."""
    run = factory.shared_run()
    if run is None:
        pytest.importorskip("keras")
        run = factory.tiny_run(tmp_path_factory.mktemp("shared") / "run")
    return run

"""Installed versions of the packages a record should name (run.json, manifest, benchmark results)."""
from __future__ import annotations

import importlib.metadata
from typing import Iterable


def installed_versions(names: Iterable[str]) -> dict[str, str]:
    """{distribution: version} for those of `names` that are installed (the others are left out)."""
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found

"""Helpers shared by the runtime tests (a uniquely named module: other test folders have a conftest too)."""
from __future__ import annotations

import json
from pathlib import Path


def edit_manifest(bundle: Path, edit) -> None:
    """Apply `edit(raw_dict)` to a bundle's manifest.json."""
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw, indent=2))

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


def zip_bundle(bundle: Path, archive: Path, prefix: str = "bundle/", extra: dict[str, bytes] | None = None,
               compression: int = 0) -> Path:
    """Zip a bundle folder (entries under `prefix`), plus `extra` entries {name: bytes}."""
    import zipfile

    with zipfile.ZipFile(archive, "w", compression) as zf:
        for f in sorted(bundle.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(bundle).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive

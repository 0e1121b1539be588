"""Find what `load(path)` points at: a bundle directory, a bundle .zip (extracted safely), or one model file.

A .zip is extracted into the cache (EDGEXFER_CACHE_DIR, else $XDG_CACHE_HOME/edgexfer, else
~/.cache/edgexfer; a temporary folder when that is not writable), keyed by the archive's sha256, so a second
load reuses it. Every entry is checked before anything is written: absolute paths, drive letters, `..`
components and symbolic links are refused (zip-slip) with an IntegrityError naming the entry.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from edgexfer.errors import IntegrityError, UserError
from edgexfer.manifest import MANIFEST_FILE, Artifact, Manifest, sha256_file

#: model file suffix -> artifact family
FAMILY_BY_SUFFIX = {".onnx": "onnx", ".tflite": "tflite", ".xml": "openvino"}
_COMPLETE = ".edgexfer-complete"


@dataclass
class Source:
    root: Path | None  # bundle root (None for a model file without a manifest)
    manifest: Manifest | None
    file: Path | None = None  # set when the user pointed at one model file
    artifact: Artifact | None = None  # the manifest's entry for `file`, when it has one


def open_source(path: str | os.PathLike) -> Source:
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"Expected a bundle directory, a bundle .zip or a model file "
                        f"({', '.join(FAMILY_BY_SUFFIX)}). Received: {path} (not found).")
    if p.is_dir():
        return Source(p, Manifest.load(p))
    suffix = p.suffix.lower()
    if suffix == ".zip":
        root = extract_bundle_zip(p)
        return Source(root, Manifest.load(root))
    if suffix in FAMILY_BY_SUFFIX:
        return _single_file(p)
    raise UserError(f"Expected a bundle directory, a .zip or a model file with suffix "
                    f"{['.zip', *FAMILY_BY_SUFFIX]}. Received: {path}.")


def _single_file(p: Path) -> Source:
    """A model file; labels, input spec and checksums come from a manifest in its folder or the parent."""
    for root in (p.parent, p.parent.parent):
        if (root / MANIFEST_FILE).is_file():
            manifest = Manifest.load(root)
            rel = p.resolve().relative_to(root.resolve()).as_posix()
            match = next((a for a in manifest.artifacts.values() if a.files and a.main_file == rel), None)
            return Source(root, manifest, file=p, artifact=match)
    return Source(None, None, file=p)


# -- zip bundles -----------------------------------------------------------------------------------
def cache_dir() -> Path:
    if os.environ.get("EDGEXFER_CACHE_DIR"):
        return Path(os.environ["EDGEXFER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgexfer"


def extract_bundle_zip(archive: Path) -> Path:
    """Extract (once) and return the bundle root inside the archive."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                check_member(info)
            target = _target_dir(archive)
            if not (target / _COMPLETE).is_file():
                _extract(zf, members, target)
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{archive} is not a valid zip archive: {exc}") from exc
    return _bundle_root(target, archive)


def check_member(info: zipfile.ZipInfo) -> None:
    """Refuse an entry that is absolute, escapes the target folder, or is a symbolic link."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    mode = info.external_attr >> 16
    unsafe = (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts
              or stat.S_ISLNK(mode))
    if unsafe:
        raise IntegrityError(f"Unsafe entry {name!r} in the bundle archive: absolute paths, '..' and links "
                             "are refused (it would be written outside the extraction folder).")


def _target_dir(archive: Path) -> Path:
    key = sha256_file(archive)[:20]
    base = cache_dir() / "bundles"
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(dir=base)
        os.rmdir(probe)
        return base / key
    except OSError:
        return Path(tempfile.mkdtemp(prefix="edgexfer-bundle-")) / key


def _extract(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], target: Path) -> None:
    """Write into a fresh sibling folder, then rename it into place (safe against concurrent loads)."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    root = tmp.resolve()
    try:
        for info in members:
            dest = (tmp / info.filename.replace("\\", "/")).resolve()
            if dest != root and root not in dest.parents:  # belt and braces after check_member
                raise IntegrityError(f"Unsafe entry {info.filename!r} in the bundle archive.")
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        (tmp / _COMPLETE).write_text("ok\n")
        if target.exists():  # an interrupted earlier extraction
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _COMPLETE).is_file():  # not a concurrent load that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _bundle_root(target: Path, archive: Path) -> Path:
    if (target / MANIFEST_FILE).is_file():
        return target
    subdirs = [d for d in target.iterdir() if d.is_dir() and (d / MANIFEST_FILE).is_file()]
    if len(subdirs) == 1:
        return subdirs[0]
    raise IntegrityError(f"Expected {MANIFEST_FILE} at the top of {archive} (or in its single top folder). "
                         "Received an archive without one.")

"""Find what `load(path)` points at: a bundle directory, a bundle .zip (extracted safely), or one model file.

A .zip is extracted into the cache (EDGEXFER_CACHE_DIR, else $XDG_CACHE_HOME/edgexfer, else
~/.cache/edgexfer; a temporary folder when that is not writable), keyed by the archive's sha256, so a second
load reuses it. Every entry is checked before anything is written: absolute paths, drive letters, `..`
components, symbolic links and encrypted entries are refused (zip-slip) with an error naming the entry, and
the archive must stay within `ArchiveLimits` (total size, entry count, compression ratio: no zip bombs),
checked from its directory first and again on the bytes really written. Extraction goes to a unique folder
that is renamed into place, so processes loading the same archive at once never disturb each other.
A damaged archive is an IntegrityError, never a raw zlib error.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from edgexfer._env import env_number
from edgexfer.cache import cache_dir
from edgexfer.errors import IntegrityError, UnsafeBundleError, UserError
from edgexfer.manifest import MANIFEST_FILE, Artifact, Manifest, sha256_file
from edgexfer.runtime.backends import family_by_suffix

_COMPLETE = ".edgexfer-complete"


@dataclass
class Source:
    root: Path | None  # bundle root (None for a model file without a manifest)
    manifest: Manifest | None
    file: Path | None = None  # set when the user pointed at one model file
    artifact: Artifact | None = None  # the manifest's entry for `file`, when it has one
    family: str = ""  # the artifact family of `file`, from its suffix (the backends' `suffixes`)


def open_source(path: str | os.PathLike) -> Source:
    p = Path(path).expanduser()
    model_suffixes = family_by_suffix()  # from the backend registry: a plugin's new family is included
    if not p.exists():
        raise UserError(f"Expected a bundle directory, a bundle .zip or a model file "
                        f"({', '.join(model_suffixes)}). Received: {path} (not found).")
    if p.is_dir():
        return Source(p, Manifest.load(p))
    suffix = p.suffix.lower()
    if suffix == ".zip":
        root = extract_bundle_zip(p)
        return Source(root, Manifest.load(root))
    if suffix in model_suffixes:
        return _single_file(p, model_suffixes[suffix])
    raise UserError(f"Expected a bundle directory, a .zip or a model file with suffix "
                    f"{['.zip', *model_suffixes]}. Received: {path}.")


def _single_file(p: Path, family: str) -> Source:
    """A model file; labels, input spec and checksums come from a manifest in its folder or the parent."""
    for root in (p.parent, p.parent.parent):
        if (root / MANIFEST_FILE).is_file():
            manifest = Manifest.load(root)
            rel = p.relative_to(root).as_posix()  # lexical: a link is checked when the file is opened
            match = next((a for a in manifest.artifacts.values() if a.files and a.main_file == rel), None)
            return Source(root, manifest, file=p, artifact=match, family=family)
    return Source(None, None, file=p, family=family)


# -- zip bundles -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveLimits:
    """What one bundle archive may expand to. Why: a small archive can hold gigabytes of zeros (a zip bomb)
    and would fill the device's disk; real bundles are far below every limit (model files compress little).

    Each default can be changed with an environment variable: EDGEXFER_ZIP_MAX_BYTES (total uncompressed
    bytes), EDGEXFER_ZIP_MAX_ENTRIES and EDGEXFER_ZIP_MAX_RATIO (uncompressed / compressed size of one entry
    over 1 MiB, or of the whole archive).
    """

    max_bytes: int = 8 << 30
    max_entries: int = 10_000
    max_ratio: float = 100.0

    @classmethod
    def from_env(cls) -> "ArchiveLimits":
        return cls(max_bytes=env_number("EDGEXFER_ZIP_MAX_BYTES", cls.max_bytes, int),
                   max_entries=env_number("EDGEXFER_ZIP_MAX_ENTRIES", cls.max_entries, int),
                   max_ratio=env_number("EDGEXFER_ZIP_MAX_RATIO", cls.max_ratio, float))


_RATIO_FLOOR = 1 << 20  # entries smaller than this are never a bomb, whatever their ratio


def extract_bundle_zip(archive: Path) -> Path:
    """Extract (once, within ArchiveLimits) and return the bundle root inside the archive."""
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            check_members(members, archive, ArchiveLimits.from_env())
            target = _target_dir(archive)
            if not (target / _COMPLETE).is_file():
                _extract(zf, members, target, archive)
    except (zipfile.BadZipFile, NotImplementedError) as exc:  # NotImplementedError: a zip feature or version
        raise IntegrityError(f"{archive} is not a valid zip archive: {exc}") from exc
    return _bundle_root(target, archive)


def check_members(members: list[zipfile.ZipInfo], archive: Path, limits: ArchiveLimits) -> None:
    """Every entry safe (check_member), names unique, and the archive within `limits`, from the sizes its
    directory declares (extraction then counts the bytes really written against the same limits)."""
    if len(members) > limits.max_entries:
        raise UnsafeBundleError(f"Expected a bundle archive of at most {limits.max_entries:,} entries. Received: "
                                f"{archive} with {len(members):,}. Raise EDGEXFER_ZIP_MAX_ENTRIES if it is real.")
    seen: set[str] = set()
    for info in members:
        check_member(info)
        if info.filename in seen:
            raise UnsafeBundleError(f"Expected unique entry names in the bundle archive {archive}. Received: "
                                    f"{info.filename!r} twice.")
        seen.add(info.filename)
        _check_ratio(info.filename, info.file_size, info.compress_size, limits, archive)
    total = sum(i.file_size for i in members)
    _check_total(total, limits, archive)
    _check_ratio("the archive", total, sum(i.compress_size for i in members), limits, archive)


def _check_total(total: int, limits: ArchiveLimits, archive: Path) -> None:
    if total > limits.max_bytes:
        raise UnsafeBundleError(f"Expected a bundle archive that expands to at most {limits.max_bytes:,} bytes. "
                                f"Received: {archive}, which expands to {total:,} or more. Raise "
                                "EDGEXFER_ZIP_MAX_BYTES if the bundle is really that large.")


def _check_ratio(name: str, size: int, compressed: int, limits: ArchiveLimits, archive: Path) -> None:
    if size > _RATIO_FLOOR and size > limits.max_ratio * max(compressed, 1):
        raise UnsafeBundleError(
            f"Expected a compression ratio of at most {limits.max_ratio:g}:1 in a bundle archive. Received: "
            f"{name!r} in {archive}, {compressed:,} bytes that expand to {size:,} "
            f"({size / max(compressed, 1):.0f}:1, a zip bomb?). Raise EDGEXFER_ZIP_MAX_RATIO if it is real.")


def check_member(info: zipfile.ZipInfo) -> None:
    """Refuse an entry that is absolute, escapes the target folder, is a symbolic link, or is encrypted."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    mode = info.external_attr >> 16
    unsafe = (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts
              or stat.S_ISLNK(mode) or "\x00" in name)
    if unsafe:
        raise UnsafeBundleError(f"Unsafe entry {name!r} in the bundle archive: absolute paths, '..' and links "
                                "are refused (it would be written outside the extraction folder).")
    if info.flag_bits & 0x1:
        raise IntegrityError(f"Expected unencrypted entries in the bundle archive. Received: {name!r}, which is "
                             "encrypted. Zip the bundle again without a password.")


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


def _extract(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], target: Path, archive: Path) -> None:
    """Write into a fresh folder of our own, then rename it into place.

    Why: several processes may load the same archive at once. Each extracts into its own unique folder;
    the first rename wins, and a process that loses uses the winner's folder and deletes only its own.
    A folder at `target` is therefore always complete, and none is ever deleted while another loads it.
    """
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-extract-"))
    try:
        _write_members(zf, members, tmp, archive)
        (tmp / _COMPLETE).write_text("ok\n")
        _publish(tmp, target)
    except OSError as exc:
        raise UserError(f"Could not extract {archive} into {target.parent}: {exc}. Free some space, or set "
                        "EDGEXFER_CACHE_DIR to a writable folder with room.") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)  # our own unfinished or unused copy, nobody else's


def _write_members(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], tmp: Path, archive: Path) -> None:
    root, limits, written = tmp.resolve(), ArchiveLimits.from_env(), 0
    for info in members:
        dest = (tmp / info.filename.replace("\\", "/")).resolve()
        if dest != root and root not in dest.parents:  # belt and braces after check_member
            raise UnsafeBundleError(f"Unsafe entry {info.filename!r} in the bundle archive.")
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        written += _copy_member(zf, info, dest, written, limits, archive)


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, before: int, limits: ArchiveLimits,
                 archive: Path) -> int:
    """Decompress one entry, counting the bytes really written (an archive's directory can lie about sizes).

    Errors reading the archive (OSError included: a damaged offset) say the archive is damaged; errors
    writing `dest` are the disk's, reported by the caller."""
    written = 0
    src = _read_archive(zf.open, info, archive)
    with src, open(dest, "wb") as out:
        while block := _read_archive(src.read, 1 << 20, archive, info.filename):
            written += len(block)
            _check_total(before + written, limits, archive)
            out.write(block)
    return written


def _read_archive(read: Any, arg: Any, archive: Path, name: str | None = None) -> Any:
    try:
        return read(arg)
    except (zlib.error, EOFError, NotImplementedError, zipfile.BadZipFile, RuntimeError, OSError) as exc:
        entry = name if name is not None else arg.filename
        raise IntegrityError(f"Expected a readable bundle archive. Received: {archive}, whose entry {entry!r} "
                             f"cannot be decompressed ({type(exc).__name__}: {exc}). The archive is damaged; "
                             "copy or export it again.") from exc


def _publish(tmp: Path, target: Path) -> None:
    """Rename our finished folder to `target`; if another process got there first, keep its folder."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if (target / _COMPLETE).is_file():
            return  # lost the race to a complete extraction: use it (our copy is deleted by the caller)
    # `target` exists without the completion marker: left by an older edgexfer. Move it aside atomically
    # (nobody loads an unmarked folder), then try again.
    aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-stale-"))
    try:
        os.replace(target, aside / "old")
    except FileNotFoundError:
        pass  # another process moved it aside already
    try:
        os.rename(tmp, target)
    except OSError:
        if not (target / _COMPLETE).is_file():
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _bundle_root(target: Path, archive: Path) -> Path:
    if (target / MANIFEST_FILE).is_file():
        return target
    subdirs = [d for d in target.iterdir() if d.is_dir() and (d / MANIFEST_FILE).is_file()]
    if len(subdirs) == 1:
        return subdirs[0]
    raise IntegrityError(f"Expected {MANIFEST_FILE} at the top of {archive} (or in its single top folder). "
                         "Received an archive without one.")

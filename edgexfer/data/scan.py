"""Scan an image folder before training: detect the layout, decode every file, list the bad ones.

Why: Keras' directory loaders crash mid-epoch on a corrupt file with an image extension. Here every
candidate is fully decoded up front by edgexfer.imaging.decode (the decode training and serving use;
a file over the pixel limit the runtime refuses is skipped here too); failures are skipped and reported
with a reason, or raised with `strict=True`; structural problems (too few classes, empty classes,
classes with < 2 usable images) are DataErrors before any training starts.

Layouts:
- "classes": ROOT/<class>/**/image  (split later by `splits.stratified_split`)
- "splits":  ROOT/train/<class>/..., optional ROOT/val (or validation/valid) and ROOT/test
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgexfer import imaging
from edgexfer.imaging import IMAGE_EXTENSIONS, ImageDecodeError
from edgexfer.errors import DataError, UserError

log = logging.getLogger("edgexfer.data")

SPLIT_DIRS = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
MIN_IMAGES_PER_CLASS = 2
_MAX_LISTED = 20
_MAX_PROBLEMS = 5


@dataclass
class FolderScan:
    """Result of scanning a folder: usable files per split with labels, and what was left out."""

    root: Path
    layout: str  # "classes" or "splits"
    class_names: list[str]
    files: dict[str, list[tuple[str, int]]]  # split ("all" for the classes layout) -> (relpath, label)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    ignored: int = 0  # non-image files (.txt, .DS_Store, dotfiles) left out silently
    fingerprint: str = ""


def scan_folder(root: str | Path, *, strict: bool = False) -> FolderScan:
    """Validate and scan `root`; raise UserError/DataError with a fix when it cannot be used.

    Structure is checked on the file listing first (cheap: a wrong root fails fast), then every
    candidate is decoded in a thread pool, then the usable counts are checked again.
    """
    root = _check_root(root)
    layout, split_dirs = detect_layout(root)
    class_names = _class_names(root, layout, split_dirs)
    scan = FolderScan(root=root, layout=layout, class_names=class_names, files={})
    listed, empty = _list_all(split_dirs, class_names, scan)
    _raise_problems(root, list(empty.values()) + _count_problems(listed, class_names, set(empty), "image file(s)"))
    hashes = _decode_all(root, listed, scan)
    if scan.skipped:
        _report_skipped(root, scan.skipped, strict)
    _raise_problems(root, _count_problems(scan.files, class_names, set(), "usable image(s)"))
    scan.fingerprint = folder_fingerprint(hashes)
    return scan


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists():
        raise UserError(
            f"Expected an image folder or 'builtin:NAME'. Received: {str(root)!r}, which does not exist. "
            "Check the path, or run `edgexfer data list` for the builtin datasets."
        )
    if not path.is_dir():
        raise UserError(
            f"Expected a folder with one sub-folder per class. Received the file {str(root)!r}. "
            "Pass the folder that contains the class sub-folders."
        )
    return path.resolve()


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def detect_layout(root: Path) -> tuple[str, dict[str, Path]]:
    """Return ("splits", {split: dir}) when ROOT/train exists, else ("classes", {"all": root})."""
    subdirs = _subdirs(root)
    named = {p.name.lower(): p for p in subdirs}
    if "train" not in named:
        return "classes", {"all": root}
    others = [p.name for p in subdirs if p.name.lower() not in SPLIT_DIRS]
    if others:
        raise DataError(
            f"{root} has a train/ folder and other folders {others}. Expected either one sub-folder per "
            "class, or train/ val/ test/ each with class sub-folders. Move the extra folders."
        )
    splits: dict[str, Path] = {}
    for name, path in named.items():
        splits.setdefault(SPLIT_DIRS[name], path)
    return "splits", {s: splits[s] for s in ("train", "val", "test") if s in splits}


def _class_names(root: Path, layout: str, split_dirs: dict[str, Path]) -> list[str]:
    """Class names are the sorted class folder names (of train/ in the splits layout)."""
    base = split_dirs["all" if layout == "classes" else "train"]
    names = [p.name for p in _subdirs(base)]
    if len(names) < 2:
        loose = sum(1 for p in base.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        raise DataError(
            f"Expected at least 2 class sub-folders in {base}. Received {len(names)} {names} "
            f"(and {loose} image files directly in the folder). Put each class's images in its own "
            f"sub-folder, e.g. {base}/cat/1.jpg and {base}/dog/1.jpg."
        )
    for split, path in split_dirs.items():
        unknown = sorted({p.name for p in _subdirs(path)} - set(names))
        if unknown:
            raise DataError(
                f"{path} has class folders {unknown} that train/ does not have (train classes: {names}). "
                "Every class must have training images: add them to train/ or remove those folders."
            )
    return names


def _list_candidates(class_dir: Path) -> tuple[list[Path], int]:
    """Image-extension files under `class_dir` (recursive, sorted) and the count of ignored files."""
    found, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(class_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if imaging.is_image_name(name):
                found.append(Path(dirpath) / name)
            else:
                ignored += 1  # .txt, .DS_Store, AppleDouble "._x.jpg" files ...
    return found, ignored


def check_file(path: Path) -> tuple[str | None, str]:
    """Fully decode one file (`imaging.decode`, native size); return (reason it failed or None, sha256 of its bytes)."""
    try:
        data = imaging.read_file(path)
        digest = hashlib.sha256(data).hexdigest()
        imaging.decode(data)
        return None, digest
    except ImageDecodeError as exc:
        return exc.reason, ""


def _list_all(split_dirs: dict[str, Path], class_names: list[str], scan: FolderScan):
    """Candidate image files per split as (path, label), and {class: problem} for empty train classes."""
    listed: dict[str, list[tuple[Path, int]]] = {}
    empty: dict[str, str] = {}
    for split, base in split_dirs.items():
        listed[split] = []
        for label, name in enumerate(class_names):
            if not (base / name).is_dir():
                continue
            found, ignored = _list_candidates(base / name)
            scan.ignored += ignored
            listed[split] += [(path, label) for path in found]
            if not found:
                message = (f"class folder {base / name} is empty (no image files, {ignored} other files): "
                           "add images or remove the folder")
                if split in ("all", "train"):
                    empty[name] = message
                else:
                    log.warning("%s", message)
    return listed, empty


def _decode_all(root: Path, listed: dict[str, list[tuple[Path, int]]], scan: FolderScan) -> dict[str, str]:
    """Decode every candidate; fill scan.files / scan.skipped; return relpath -> content sha256."""
    hashes: dict[str, str] = {}
    for split, items in listed.items():
        results = imaging.parallel_map(check_file, [path for path, _ in items])  # PIL releases the GIL
        scan.files[split] = []
        for (path, label), (reason, digest) in zip(items, results):
            rel = path.relative_to(root).as_posix()
            if reason is None:
                scan.files[split].append((rel, label))
                hashes[rel] = digest
            else:
                scan.skipped.append({"path": rel, "reason": reason})
    return hashes


def _count_problems(files: dict[str, list], class_names: list[str], empty: set[str], what: str) -> list[str]:
    """Classes with fewer than MIN_IMAGES_PER_CLASS images, or none in train (empty ones excluded)."""
    problems = []
    train = files.get("train", files.get("all", []))
    for label, name in enumerate(class_names):
        if name in empty:
            continue
        total = sum(1 for items in files.values() for _, lab in items if lab == label)
        in_train = sum(1 for _, lab in train if lab == label)
        if total < MIN_IMAGES_PER_CLASS or in_train == 0:
            problems.append(
                f"class '{name}' has {total} {what} ({in_train} in train; undecodable files are skipped); "
                f"each class needs at least {MIN_IMAGES_PER_CLASS}, with at least 1 in train. "
                "Add images or remove the class."
            )
    return problems


def _report_skipped(root: Path, skipped: list[dict[str, str]], strict: bool) -> None:
    listed = "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:_MAX_LISTED])
    more = f" (and {len(skipped) - _MAX_LISTED} more)" if len(skipped) > _MAX_LISTED else ""
    if strict:
        raise DataError(
            f"{len(skipped)} file(s) in {root} cannot be decoded (strict mode): {listed}{more}. "
            "Fix or remove them, or run without --strict to skip them."
        )
    log.warning("Skipping %d undecodable file(s) in %s: %s%s", len(skipped), root, listed, more)


def _raise_problems(root: Path, problems: list[str]) -> None:
    if problems:
        shown = problems[:_MAX_PROBLEMS]
        more = f" | ... and {len(problems) - _MAX_PROBLEMS} more problems" if len(problems) > _MAX_PROBLEMS else ""
        raise DataError(f"{root} cannot be used for training: " + " | ".join(shown) + more
                        + f". Image extensions read: {' '.join(sorted(IMAGE_EXTENSIONS))}.")


def folder_fingerprint(hashes: dict[str, str]) -> str:
    """sha256 over the sorted relative paths and content hashes of the usable images."""
    h = hashlib.sha256()
    for rel in sorted(hashes):
        h.update(f"{rel}\0{hashes[rel]}\n".encode())
    return "sha256:" + h.hexdigest()

"""`open_dataset` -> `Dataset`: one object over an image folder or a builtin, with fixed splits.

A Dataset knows its split membership (relative file paths for folders, indices for builtins) and
writes it into `to_record()`, so `load_split(record, "test", size)` rebuilds exactly the same
held-out images later (export checks parity on them) without rescanning or re-splitting.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgexfer import imaging
from edgexfer.data import builtin as _builtin
from edgexfer.imaging import ImageDecodeError, normalize_size, resize_rgb
from edgexfer.data.scan import FolderScan, scan_folder
from edgexfer.data.splits import (
    SPLITS,
    check_fractions,
    check_split,
    count_splits,
    stratified_split,
)
from edgexfer.errors import DataError, UserError

log = logging.getLogger("edgexfer.data")

RECORD_SCHEMA = 1


class _FolderLoader:
    """Loads members (relative posix paths) of an image folder with `imaging.decode`: the decode (and the
    JPEG draft scale, which depends on the target size) that the runtime applies to the same file."""

    kind = "folder"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, member: str, size: tuple[int, int] | None) -> np.ndarray:
        try:
            return imaging.decode(self.root / member, size)
        except ImageDecodeError as exc:
            raise self._changed(member, exc) from None

    def load_many(self, members: Sequence[str], size: tuple[int, int] | None) -> list[np.ndarray]:
        """Decoded across the shared decoding threads (`imaging.decode_many`)."""
        images = imaging.decode_many([self.root / m for m in members], size)
        for member, image in zip(members, images):
            if isinstance(image, ImageDecodeError):
                raise self._changed(member, image)
        return images

    def _changed(self, member: str, exc: ImageDecodeError) -> DataError:
        return DataError(f"{self.root / member} can no longer be decoded ({exc.reason}); the folder changed since "
                         "it was scanned. Restore the file, or re-run on the current folder.")


class _BuiltinLoader:
    """Loads members (integer indices) of a builtin dataset from its in-memory arrays."""

    kind = "builtin"

    def __init__(self, name: str) -> None:
        self.name = name
        self.images = _builtin.load_builtin(name)[0]

    def load(self, member: int, size: tuple[int, int] | None) -> np.ndarray:
        return resize_rgb(np.asarray(self.images[int(member)]), size)

    def load_many(self, members: Sequence[int], size: tuple[int, int] | None) -> list[np.ndarray]:
        return [self.load(m, size) for m in members]


class Dataset:
    """An image classification dataset with fixed train/val/test membership (see module docstring)."""

    def __init__(self, *, source: str, layout: str, class_names: list[str], members: dict[str, list],
                 labels: dict[str, np.ndarray], loader: _FolderLoader | _BuiltinLoader, fingerprint: str,
                 skipped: list[dict[str, str]] | None = None, ignored: int = 0,
                 info: dict[str, Any] | None = None, unlabeled: list | None = None) -> None:
        self.source = source
        self.layout = layout
        self.class_names = list(class_names)
        self.skipped = list(skipped or [])
        self.ignored = ignored
        self.fingerprint = fingerprint
        self.info = dict(info or {})  # seed, fractions, builtin version ...
        self._members = {s: list(members.get(s, [])) for s in SPLITS}
        self._labels = {s: np.asarray(labels.get(s, []), dtype=np.int64) for s in SPLITS}
        self._loader = loader
        self._unlabeled = list(unlabeled or [])  # training members whose labels limit_labels() set aside

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def seed(self) -> int:
        return int(self.info.get("seed", 0))

    def __repr__(self) -> str:
        c = self.counts()
        return (f"Dataset({self.source!r}, classes={self.num_classes}, train={c['train']}, "
                f"val={c['val']}, test={c['test']}, skipped={len(self.skipped)})")

    def counts(self) -> dict[str, Any]:
        """{"train": n, "val": n, "test": n, "per_class": {class: {"train": n, "val": n, "test": n}}}."""
        return count_splits(self._labels, self.class_names)

    def members(self, split: str) -> list:
        """Relative paths (folders) or indices (builtins) of a split, in a fixed order."""
        return list(self._members[check_split(split)])

    def labels(self, split: str) -> np.ndarray:
        return self._labels[check_split(split)].copy()

    def arrays(self, split: str, image_size: int | tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(x uint8 [N, H, W, 3], y int64 [N]) of a split, decoded and resized by edgexfer.imaging (as served)."""
        size = normalize_size(image_size)
        images = self._loader.load_many(self._members[check_split(split)], size)
        return _stack(images, size, split), self._labels[split].copy()

    def tf_dataset(self, split: str, image_size: int | tuple[int, int], batch_size: int, *, shuffle: bool = False,
                   augment: Any = False, seed: int = 0, repeat: bool = False, cache: bool | str = True):
        """tf.data of (float32 images 0..255 [B, H, W, 3], int32 labels); see edgexfer.data.pipeline.

        augment: False, True (AugmentConfig defaults; no flip for builtin digit sets), a dict or AugmentConfig.
        """
        from edgexfer.data.pipeline import AugmentConfig, make_tf_dataset

        if augment is True:  # digits must not be mirrored: builtins record flip=None
            augment = AugmentConfig(flip=self.info.get("augment_flip", "horizontal"))
        size = normalize_size(image_size)
        members = self._members[check_split(split)]
        return make_tf_dataset(lambda i: self._loader.load(members[i], size), self._labels[split], size,
                               batch_size, shuffle=shuffle, augment=augment, seed=seed, repeat=repeat, cache=cache)

    def limit_labels(self, per_class: int, seed: int | None = None) -> "Dataset":
        """A copy that keeps at most `per_class` labelled training images per class (a seeded draw).

        Why: few-shot training and label-efficiency experiments. The training images left out keep
        no label but stay available as unlabelled target images (`unlabeled_arrays`, used by AdaBN).
        Validation and test are unchanged.
        """
        if int(per_class) < 1:
            raise UserError(f"Expected labels per class >= 1. Received: {per_class}.")
        rng = np.random.default_rng(self.seed if seed is None else seed)
        labels = self._labels["train"]
        keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                       for c in range(self.num_classes)]))
        dropped = np.setdiff1d(np.arange(len(labels)), keep)
        members = dict(self._members)
        members["train"] = [self._members["train"][i] for i in keep]
        new_labels = {**self._labels, "train": labels[keep]}
        return Dataset(source=self.source, layout=self.layout, class_names=self.class_names, members=members,
                       labels=new_labels, loader=self._loader, fingerprint=self.fingerprint, skipped=self.skipped,
                       ignored=self.ignored, info={**self.info, "labels_per_class": int(per_class)},
                       unlabeled=self._unlabeled + [self._members["train"][i] for i in dropped])

    def unlabeled_arrays(self, image_size: int | tuple[int, int]) -> np.ndarray:
        """uint8 [N, H, W, 3] of the training images whose labels `limit_labels` set aside (often none)."""
        size = normalize_size(image_size)
        return _stack(self._loader.load_many(self._unlabeled, size), size, "unlabeled")

    def to_record(self) -> dict[str, Any]:
        """JSON-able description for RunRecord.data, including the split membership."""
        key = "indices" if self._loader.kind == "builtin" else "paths"
        splits = {s: {key: [_plain(m) for m in self._members[s]], "labels": self._labels[s].tolist()} for s in SPLITS}
        if self._unlabeled:
            splits["unlabeled"] = {key: [_plain(m) for m in self._unlabeled]}
        return {
            "schema": RECORD_SCHEMA, "source": self.source, "kind": self._loader.kind, "layout": self.layout,
            "class_names": self.class_names, "counts": self.counts(), "skipped": self.skipped,
            "ignored": self.ignored, "fingerprint": self.fingerprint, **self.info, "splits": splits,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], *, root: str | Path | None = None) -> "Dataset":
        """Rebuild a Dataset from `to_record()` output (no rescan, no re-split)."""
        _check_record(record)
        loader = _record_loader(record, root)
        key = "indices" if loader.kind == "builtin" else "paths"
        splits = record["splits"]
        keys = ("seed", "val_fraction", "test_fraction", "test_fixed", "builtin_version", "augment_flip",
                "labels_per_class")
        info = {k: record[k] for k in keys if k in record}
        return cls(source=record["source"], layout=record["layout"], class_names=record["class_names"],
                   members={s: splits.get(s, {}).get(key, []) for s in SPLITS},
                   labels={s: splits.get(s, {}).get("labels", []) for s in SPLITS}, loader=loader,
                   fingerprint=record.get("fingerprint", ""), skipped=record.get("skipped", []),
                   ignored=record.get("ignored", 0), info=info, unlabeled=splits.get("unlabeled", {}).get(key, []))


def _plain(member: Any) -> Any:
    return int(member) if isinstance(member, (int, np.integer)) else str(member)


def _stack(images: list[np.ndarray], size: tuple[int, int] | None, split: str) -> np.ndarray:
    if not images:
        h, w = size or (0, 0)
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise UserError(
            f"The {split} images have different sizes ({len(shapes)} distinct); pass image_size=(H, W) to resize them."
        )
    return np.stack(images).astype(np.uint8, copy=False)


def _check_record(record: dict[str, Any]) -> None:
    missing = [k for k in ("source", "kind", "layout", "class_names", "splits") if k not in record]
    if missing:
        raise UserError(
            f"Expected a data record from Dataset.to_record() (RunRecord.data). Received one missing {missing}."
        )


def _record_loader(record: dict[str, Any], root: str | Path | None) -> _FolderLoader | _BuiltinLoader:
    """The loader a record needs; warns when a builtin's recipe changed since the record was made."""
    if record["kind"] == "builtin":
        spec = _builtin.builtin_spec(record["source"])
        if record.get("builtin_version", spec.version) != spec.version:
            log.warning("builtin:%s is now version %s; this record was made with version %s, so its images "
                        "differ from the ones used then.", spec.name, spec.version, record.get("builtin_version"))
        return _BuiltinLoader(spec.name)
    folder = Path(root) if root is not None else Path(record["source"])
    if not folder.is_dir():
        raise DataError(
            f"The image folder of this record, {folder}, does not exist here. "
            "Pass root=<where the folder is now> (or copy it back) to rebuild the split."
        )
    return _FolderLoader(folder)


def open_dataset(spec: "str | Path | Dataset", *, seed: int = 0, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, strict: bool = False) -> Dataset:
    """Open an image folder or 'builtin:NAME' with seeded, stratified train/val/test splits.

    Folders: scanned and validated first (see edgexfer.data.scan). Builtins: the test split is fixed
    (independent of seed and test_fraction); val is val_fraction of each class, seeded.
    """
    if isinstance(spec, Dataset):
        return spec
    check_fractions(val_fraction, test_fraction)
    text = str(spec)
    if text.startswith(_builtin.BUILTIN_PREFIX):
        return _open_builtin(text, seed, val_fraction)
    if not Path(text).expanduser().exists() and text in _builtin.list_builtin():
        raise UserError(f"No folder named {text!r}. Did you mean the builtin dataset 'builtin:{text}'?")
    return _open_folder(text, seed, val_fraction, test_fraction, strict)


def _open_builtin(text: str, seed: int, val_fraction: float) -> Dataset:
    spec = _builtin.builtin_spec(text)
    _, y = _builtin.load_builtin(spec.name)
    idx = _builtin.builtin_splits(spec.name, seed=seed, val_fraction=val_fraction)
    info = {"seed": seed, "val_fraction": val_fraction, "test_fraction": _builtin.BUILTIN_TEST_FRACTION,
            "test_fixed": True, "builtin_version": spec.version, "augment_flip": spec.flip}
    return Dataset(source=_builtin.BUILTIN_PREFIX + spec.name, layout="builtin", class_names=list(spec.class_names),
                   members={s: idx[s].tolist() for s in SPLITS}, labels={s: y[idx[s]] for s in SPLITS},
                   loader=_BuiltinLoader(spec.name), fingerprint=_builtin_fingerprint(spec), info=info)


def _builtin_fingerprint(spec: _builtin.BuiltinSpec) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(f"builtin:{spec.name}:v{spec.version}".encode()).hexdigest()


def _open_folder(text: str, seed: int, val_fraction: float, test_fraction: float, strict: bool) -> Dataset:
    scan = scan_folder(text, strict=strict)
    members, labels = _folder_splits(scan, seed, val_fraction, test_fraction)
    info = {"seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction, "test_fixed": False}
    return Dataset(source=str(scan.root), layout=scan.layout, class_names=scan.class_names, members=members,
                   labels=labels, loader=_FolderLoader(scan.root), fingerprint=scan.fingerprint,
                   skipped=scan.skipped, ignored=scan.ignored, info=info)


def _folder_splits(scan: FolderScan, seed: int, val_fraction: float, test_fraction: float):
    """Split the classes layout; in the splits layout carve a missing val/test from train (seeded)."""
    pool = scan.files.get("all", scan.files.get("train", []))
    fixed = {s: scan.files[s] for s in ("val", "test") if s in scan.files}
    wanted = {s: f for s, f in (("test", test_fraction), ("val", val_fraction)) if s not in fixed}
    labels = np.array([lab for _, lab in pool], dtype=np.int64)
    parts = stratified_split(labels, wanted, seed)
    members = {s: [pool[i][0] for i in idx] for s, idx in parts.items()}
    labs = {s: labels[idx] for s, idx in parts.items()}
    for s, files in fixed.items():
        members[s] = [rel for rel, _ in files]
        labs[s] = np.array([lab for _, lab in files], dtype=np.int64)
    return members, labs


def load_split(data_record: dict[str, Any], split: str, image_size: int | tuple[int, int] | None, *,
               root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild a split recorded by `Dataset.to_record()`: (x uint8 [N, H, W, 3], y int64 [N])."""
    return Dataset.from_record(data_record, root=root).arrays(split, image_size)

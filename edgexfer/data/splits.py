"""Seeded, stratified train/val/test splits and the per-split / per-class counts.

Why per-class generators (`default_rng([seed, class])`): adding or removing one class does not
reshuffle the others, and the split depends only on (seed, sorted membership), never on the
order the OS listed the files in.
"""
from __future__ import annotations

import numpy as np

from edgexfer.errors import UserError

SPLITS = ("train", "val", "test")


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Fractions must each lie in [0, 1) and leave room for training data."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise UserError(f"Expected {name} in [0, 1). Received: {value!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise UserError(
            f"Expected val_fraction + test_fraction < 1 so training data remains. "
            f"Received: {val_fraction} + {test_fraction}."
        )


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise UserError(f"Expected split to be one of {list(SPLITS)}. Received: {split!r}.")
    return split


def _round(x: float) -> int:
    return int(np.floor(x + 0.5 + 1e-9))  # half up; epsilon: 0.15 / 0.8 * 120 is 22.4999...


def stratified_split(
    labels: np.ndarray, fractions: dict[str, float], seed: int
) -> dict[str, np.ndarray]:
    """Split positions 0..N-1 per class into `fractions` (e.g. {"test": .15, "val": .15}) + "train".

    Every class keeps at least one training image. A held-out split with a non-zero fraction gets
    at least one image overall when some class can spare one. Returned positions are sorted.
    """
    labels = np.asarray(labels)
    out: dict[str, list[np.ndarray]] = {name: [] for name in (*fractions, "train")}
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        perm = np.random.default_rng([int(seed), int(cls)]).permutation(idx)
        start = 0
        for name, n in _class_quota(len(idx), fractions).items():
            out[name].append(perm[start:start + n])
            start += n
        out["train"].append(perm[start:])
    result = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64) for k, v in out.items()}
    _ensure_nonempty(result, labels, fractions)
    return {k: v.astype(np.int64) for k, v in result.items()}


def _class_quota(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Held-out counts for one class of n items, shrunk (last split first) so train keeps >= 1."""
    quota = {name: _round(n * f) for name, f in fractions.items()}
    for name in reversed(list(quota)):
        excess = sum(quota.values()) - (n - 1)
        if excess > 0:
            quota[name] = max(0, quota[name] - excess)
    return quota


def _ensure_nonempty(result: dict[str, np.ndarray], labels: np.ndarray, fractions: dict[str, float]) -> None:
    """Move one training item of the largest class into any requested split that came out empty."""
    for name, frac in fractions.items():
        if frac <= 0 or len(result[name]):
            continue
        train = result["train"]
        classes, counts = np.unique(labels[train], return_counts=True)
        if not len(counts) or counts.max() < 2:
            continue
        donor_class = classes[np.argmax(counts)]
        donor = train[labels[train] == donor_class][-1]
        result[name] = np.array([donor])
        result["train"] = train[train != donor]


def count_splits(labels_by_split: dict[str, np.ndarray], class_names: list[str]) -> dict:
    """{"train": n, "val": n, "test": n, "per_class": {class: {"train": n, "val": n, "test": n}}}."""
    counts: dict = {s: int(len(labels_by_split.get(s, ()))) for s in SPLITS}
    per_class = {name: {s: 0 for s in SPLITS} for name in class_names}
    for split in SPLITS:
        labs = np.asarray(labels_by_split.get(split, np.zeros(0, np.int64)), dtype=np.int64)
        for label, n in zip(*np.unique(labs, return_counts=True)):
            per_class[class_names[int(label)]][split] = int(n)
    counts["per_class"] = per_class
    return counts

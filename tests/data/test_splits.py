"""Seeded stratified splits: deterministic, per-class, train never empty for a class."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.data.splits import check_fractions, count_splits, stratified_split
from edgexfer.errors import UserError

LABELS = np.repeat(np.arange(3), [20, 10, 3])


def test_deterministic_and_seed_dependent():
    a = stratified_split(LABELS, {"test": 0.2, "val": 0.2}, seed=0)
    b = stratified_split(LABELS, {"test": 0.2, "val": 0.2}, seed=0)
    c = stratified_split(LABELS, {"test": 0.2, "val": 0.2}, seed=1)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_partition_is_complete_disjoint_and_stratified():
    parts = stratified_split(LABELS, {"test": 0.2, "val": 0.2}, seed=3)
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx.tolist()) == list(range(len(LABELS)))
    assert np.bincount(LABELS[parts["test"]]).tolist() == [4, 2, 1]
    assert np.bincount(LABELS[parts["train"]], minlength=3).min() >= 1


def test_tiny_classes_keep_a_training_image_and_val_is_not_empty():
    labels = np.array([0, 0, 1, 1])
    parts = stratified_split(labels, {"test": 0.15, "val": 0.15}, seed=0)
    assert set(labels[parts["train"]]) == {0, 1}
    assert len(parts["val"]) == 1 and len(parts["test"]) == 1


def test_counts_per_split_and_class():
    counts = count_splits({"train": np.array([0, 0, 1]), "test": np.array([1])}, ["x", "y"])
    assert counts["train"] == 3 and counts["val"] == 0 and counts["test"] == 1
    assert counts["per_class"] == {"x": {"train": 2, "val": 0, "test": 0}, "y": {"train": 1, "val": 0, "test": 1}}


@pytest.mark.parametrize("val,test", [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0)])
def test_bad_fractions(val, test):
    with pytest.raises(UserError):
        check_fractions(val, test)

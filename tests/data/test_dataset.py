"""open_dataset on both folder layouts; the record rebuilds exactly the same held-out images."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgexfer.data import Dataset, load_split, open_dataset
from edgexfer.errors import DataError, UserError

from .conftest import make_class_folder

RECORD_KEYS = {"schema", "source", "kind", "layout", "class_names", "counts", "skipped", "ignored", "fingerprint",
               "seed", "val_fraction", "test_fraction", "test_fixed", "splits"}


def test_class_layout_split_is_stratified_and_seeded(class_folder):
    ds = open_dataset(class_folder, seed=0, val_fraction=0.2, test_fraction=0.2)
    assert ds.class_names == ["cat", "dog", "eel"] and ds.layout == "classes"
    per_class = ds.counts()["per_class"]
    assert per_class["cat"] == {"train": 6, "val": 2, "test": 2}
    assert all(c["train"] >= 1 for c in per_class.values())
    again = open_dataset(class_folder, seed=0, val_fraction=0.2, test_fraction=0.2)
    other = open_dataset(class_folder, seed=1, val_fraction=0.2, test_fraction=0.2)
    assert again.members("test") == ds.members("test") != other.members("test")


def test_split_layout_carves_missing_val_from_train(tmp_path):
    root = tmp_path / "s"
    make_class_folder(root / "train", {"a": 8, "b": 8})
    make_class_folder(root / "test", {"a": 2, "b": 2})
    ds = open_dataset(root, val_fraction=0.25)
    counts = ds.counts()
    assert (counts["train"], counts["val"], counts["test"]) == (12, 4, 4)
    assert all(p.startswith("test/") for p in ds.members("test"))
    assert all(p.startswith("train/") for p in ds.members("val"))


def test_record_round_trip_equals_arrays(messy_folder):
    ds = open_dataset(messy_folder, seed=2, val_fraction=0.2, test_fraction=0.3)
    record = json.loads(json.dumps(ds.to_record()))
    assert RECORD_KEYS <= set(record) and record["kind"] == "folder"
    assert len(record["skipped"]) == 3 and record["ignored"] == 2
    for split in ("train", "val", "test"):
        x, y = ds.arrays(split, (9, 7))
        x2, y2 = load_split(record, split, (9, 7))
        assert x.shape == (len(y), 9, 7, 3) and x.dtype == np.uint8 and y.dtype == np.int64
        assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_builtin_record_uses_indices():
    ds = open_dataset("builtin:uci_digits", seed=1)
    record = ds.to_record()
    assert "indices" in record["splits"]["test"] and record["builtin_version"] == 1
    x, y = load_split(record, "test", 8)
    assert np.array_equal(x, ds.arrays("test", 8)[0]) and np.array_equal(y, ds.labels("test"))


def test_moved_folder_needs_root(class_folder, tmp_path):
    record = open_dataset(class_folder).to_record()
    moved = tmp_path / "moved"
    shutil.move(str(class_folder), moved)
    with pytest.raises(DataError, match="root="):
        load_split(record, "test", 8)
    assert len(load_split(record, "test", 8, root=moved)[1]) == record["counts"]["test"]
    assert isinstance(Dataset.from_record(record, root=moved), Dataset)


def test_fingerprint_tracks_content(class_folder):
    before = open_dataset(class_folder).fingerprint
    (class_folder / "cat" / "000.png").write_bytes((class_folder / "cat" / "001.png").read_bytes())
    assert open_dataset(class_folder).fingerprint != before


def test_bare_builtin_name_hints_prefix():
    with pytest.raises(UserError, match="builtin:mnist"):
        open_dataset("mnist")

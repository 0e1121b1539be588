"""Dataset.limit_labels (few-shot) and unlabelled image folders (AdaBN input)."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.data import Dataset, open_dataset
from edgexfer.data.unlabeled import unlabeled_images
from edgexfer.errors import UserError

from .conftest import rgb, save


def test_limit_labels_keeps_k_per_class_and_sets_the_rest_aside():
    full = open_dataset("builtin:uci_digits", seed=0, val_fraction=0.0)
    few = full.limit_labels(3, seed=1)
    counts = few.counts()
    assert all(c["train"] == 3 for c in counts["per_class"].values())
    assert few.members("test") == full.members("test") and few.members("val") == []
    assert set(few.members("train")) <= set(full.members("train"))
    unlabeled = few.unlabeled_arrays(8)
    assert len(unlabeled) == full.counts()["train"] - 30
    assert few.limit_labels(3, seed=1).members("train") != full.limit_labels(3, seed=2).members("train")


def test_limited_dataset_round_trips_through_its_record():
    few = open_dataset("builtin:uci_digits", seed=0).limit_labels(2, seed=0)
    again = Dataset.from_record(few.to_record())
    assert again.members("train") == few.members("train")
    assert again.info["labels_per_class"] == 2
    assert np.array_equal(again.unlabeled_arrays(8), few.unlabeled_arrays(8))


def test_limit_labels_refuses_zero():
    with pytest.raises(UserError, match="labels per class >= 1"):
        open_dataset("builtin:uci_digits").limit_labels(0)


def test_unlabeled_folder_reads_any_layout_and_counts_unreadable(tmp_path):
    save(tmp_path / "a.png", rgb(0, 10))
    save(tmp_path / "deep" / "er" / "b.jpg", rgb(1, 20), "JPEG")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    images, skipped = unlabeled_images(tmp_path, 16)
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8 and skipped == 1


def test_unlabeled_folder_errors_name_what_was_received(tmp_path):
    with pytest.raises(UserError, match="not a directory"):
        unlabeled_images(tmp_path / "missing", 16)
    (tmp_path / "x.txt").write_text("no images")
    with pytest.raises(UserError, match="Received: 0 candidate files"):
        unlabeled_images(tmp_path, 16)

"""write_image_folder writes real PNG files that open_dataset reads back with the same counts."""
from __future__ import annotations

import pytest

from edgexfer.data import open_dataset, write_image_folder
from edgexfer.errors import UserError


def test_written_builtin_reopens_with_same_counts(tmp_path):
    source = open_dataset("builtin:uci_digits", seed=3)
    out = write_image_folder(source, tmp_path / "uci")
    assert (out / "test" / "0" / "00000.png").is_file()
    reopened = open_dataset(out)
    assert reopened.layout == "splits" and reopened.class_names == source.class_names
    assert reopened.counts() == source.counts()
    x, _ = reopened.arrays("test", None)
    assert x.shape[1:] == (8, 8, 3)


def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        write_image_folder("builtin:uci_digits", tmp_path)
    write_image_folder("builtin:uci_digits", tmp_path, overwrite=True)
    assert (tmp_path / "keep.txt").exists() and (tmp_path / "train").is_dir()

"""Folder scanning before training: bad files listed and skipped, structural errors up front."""
from __future__ import annotations

import pytest

from edgexfer.data.scan import scan_folder
from edgexfer.errors import DataError, UserError

from .conftest import make_class_folder, odd_mode_images


def test_scan_lists_bad_files_and_keeps_odd_modes(messy_folder):
    scan = scan_folder(messy_folder)
    reasons = {s["path"]: s["reason"] for s in scan.skipped}
    assert set(reasons) == {"a/empty.png", "a/truncated.jpg", "a/text.png"}
    assert "0 bytes" in reasons["a/empty.png"] and "not an image" in reasons["a/text.png"]
    assert "truncated" in reasons["a/truncated.jpg"]
    good = {rel for rel, _ in scan.files["all"]}
    assert {f"a/{n}" for n in odd_mode_images()} <= good
    assert scan.ignored == 2  # notes.txt and .DS_Store
    assert scan.layout == "classes" and scan.class_names == ["a", "b"]
    assert scan.fingerprint.startswith("sha256:")


def test_strict_raises_listing_bad_files(messy_folder):
    with pytest.raises(DataError, match="empty.png.*truncated.jpg|truncated.jpg.*empty.png"):
        scan_folder(messy_folder, strict=True)


def test_fewer_than_two_classes(tmp_path):
    root = make_class_folder(tmp_path / "one", {"only": 3})
    with pytest.raises(DataError, match=r"at least 2 class sub-folders.*Received 1 \['only'\]"):
        scan_folder(root)


def test_loose_images_without_class_folders(tmp_path):
    root = make_class_folder(tmp_path / "x", {"c": 2}) / "c"
    with pytest.raises(DataError, match="2 image files directly"):
        scan_folder(root)


def test_empty_class(tmp_path):
    root = make_class_folder(tmp_path / "e", {"a": 3, "b": 3})
    (root / "empty").mkdir()
    (root / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="empty.*is empty"):
        scan_folder(root)


def test_class_with_one_usable_image(tmp_path):
    root = make_class_folder(tmp_path / "s", {"a": 3, "b": 1})
    (root / "b" / "bad.png").write_bytes(b"")
    with pytest.raises(DataError, match="class 'b' has 1 usable image"):
        scan_folder(root)


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: _file(p)])
def test_bad_root_is_user_error(tmp_path, make):
    with pytest.raises(UserError):
        scan_folder(make(tmp_path))


def _file(tmp_path):
    path = tmp_path / "f.png"
    path.write_bytes(b"x")
    return path


def test_split_layout_and_unknown_val_class(tmp_path):
    make_class_folder(tmp_path / "d" / "train", {"a": 3, "b": 3})
    make_class_folder(tmp_path / "d" / "validation", {"a": 1, "b": 1})
    scan = scan_folder(tmp_path / "d")
    assert scan.layout == "splits" and set(scan.files) == {"train", "val"}
    assert scan.files["val"][0][0] == "validation/a/000.png"
    make_class_folder(tmp_path / "d" / "test", {"zebra": 1})
    with pytest.raises(DataError, match="zebra"):
        scan_folder(tmp_path / "d")


def test_train_folder_next_to_class_folders_is_ambiguous(tmp_path):
    make_class_folder(tmp_path / "m", {"train": 2, "cats": 2})
    with pytest.raises(DataError, match="cats"):
        scan_folder(tmp_path / "m")

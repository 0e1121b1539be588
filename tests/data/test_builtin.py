"""Every builtin (parametrized over the registry): shapes, dtypes, its classes, a fixed test split;
builtin:textures: real photo crops whose test split comes from a held-out region of each photo."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgexfer.cli import main
from edgexfer.data import colorize, list_builtin, open_dataset
from edgexfer.data.builtin import (
    TEXTURE_CLASSES,
    builtin_spec,
    load_builtin,
    mnist_subset,
    render_crop,
    texture_boundary,
    texture_photos,
    texture_plan,
)
from edgexfer.errors import UserError


@pytest.mark.parametrize("name", list(list_builtin()))
def test_builtin_arrays_match_their_spec(name):
    spec = builtin_spec(name)
    x, y = load_builtin(name)
    assert x.dtype == np.uint8 and x.shape == (spec.size, *spec.shape)
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(len(spec.class_names)))
    assert x.std() > 10  # not blank


@pytest.mark.parametrize("name", list(list_builtin()))
def test_builtin_test_split_is_fixed_and_val_is_seeded(name):
    a, b = open_dataset(f"builtin:{name}", seed=0), open_dataset(f"builtin:{name}", seed=7, test_fraction=0.4)
    assert a.members("test") == b.members("test")
    assert a.members("val") != b.members("val")
    assert a.class_names == list(builtin_spec(name).class_names)
    counts = a.counts()
    assert counts["test"] == pytest.approx(0.2 * builtin_spec(name).size, abs=10)
    assert min(c["train"] for c in counts["per_class"].values()) > 0
    x, y = a.arrays("val", (16, 16))
    assert x.shape == (counts["val"], 16, 16, 3) and x.dtype == np.uint8 and y.dtype == np.int64


def test_mnist_color_copies_of_a_digit_share_a_split():
    ds = open_dataset("builtin:mnist_color")
    base = builtin_spec("mnist_color").base_size
    test = set(ds.members("test"))
    assert {i % base for i in test} == {i for i in test if i < base}


def test_source_and_target_digits_are_disjoint():
    src, _ = mnist_subset("source")
    tgt, _ = mnist_subset("target")
    assert len(src) == 3500 and len(tgt) == 1500
    assert not {s.tobytes() for s in src} & {t.tobytes() for t in tgt}


def test_colorize_is_deterministic_given_a_seed():
    digits = mnist_subset("source")[0][:20]
    one = colorize(digits, np.random.default_rng(5))
    assert np.array_equal(one, colorize(digits, np.random.default_rng(5)))
    assert one.shape == (20, 28, 28, 3) and one.dtype == np.uint8


def test_unknown_builtin_lists_known_names():
    with pytest.raises(UserError, match="Known: .*mnist"):
        open_dataset("builtin:nope")


def test_textures_are_balanced_real_photo_crops():
    ds = open_dataset("builtin:textures")
    x, y = load_builtin("textures")
    assert ds.class_names == ["brick", "grass", "gravel"] and x.shape == (240, 224, 224, 3)
    assert np.bincount(y).tolist() == [80, 80, 80]
    assert {name: c["test"] for name, c in ds.counts()["per_class"].items()} == dict.fromkeys(TEXTURE_CLASSES, 16)
    assert (x[..., 0] == x[..., 2]).all()  # grey photos replicated to RGB
    assert ds.info["augment_flip"] == "horizontal_and_vertical"  # textures stay textures when mirrored
    assert min(x[y == c].std() for c in range(3)) > 15  # texture, not a flat tone


def test_textures_are_deterministic():
    photos = texture_photos()
    assert texture_plan() == texture_plan()
    first = builtin_spec("textures").build()
    np.testing.assert_array_equal(first[0], load_builtin("textures")[0])
    np.testing.assert_array_equal(render_crop(photos[0], texture_plan()[5]), first[0][5])


def test_textures_test_crops_come_from_pixels_no_train_crop_touches():
    photos = texture_photos()
    plan, x = texture_plan(*photos[0].shape[:2]), load_builtin("textures")[0]
    boundary = texture_boundary(photos[0].shape[0])
    for seed in (0, 3):
        ds = open_dataset("builtin:textures", seed=seed, val_fraction=0.3)
        held_out = set(ds.members("test"))
        assert all(plan[i].top >= boundary for i in held_out)
        assert all(plan[i].rows.stop <= boundary for i in ds.members("train") + ds.members("val"))
        assert len(held_out) == 48 and not held_out & set(ds.members("train") + ds.members("val"))
    for i in (0, 100, 200, 239):  # the plan is what the images were rendered from
        np.testing.assert_array_equal(render_crop(photos[plan[i].label], plan[i]), x[i])


def test_data_export_writes_textures_as_a_folder(tmp_path):
    out = tmp_path / "textures"
    result = CliRunner().invoke(main, ["data", "export", "builtin:textures", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "test").iterdir()) == ["brick", "grass", "gravel"]
    assert len(list((out / "train" / "grass").glob("*.png"))) == 52
    again = open_dataset(str(out))
    assert again.class_names == list(TEXTURE_CLASSES) and again.counts()["test"] == 48

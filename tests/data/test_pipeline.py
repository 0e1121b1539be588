"""tf.data pipeline: shapes/dtypes, same pixels as arrays(), seeded shuffle and augmentation."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.data import open_dataset
from edgexfer.errors import UserError

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def folder_ds(tmp_path_factory):
    from .conftest import make_class_folder

    root = make_class_folder(tmp_path_factory.mktemp("p") / "d", {"a": 6, "b": 5}, size=10)
    return open_dataset(root, seed=0)


def _collect(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_pipeline_matches_arrays(folder_ds):
    x, y = _collect(folder_ds.tf_dataset("train", (16, 12), 4))
    assert x.dtype == np.float32 and y.dtype == np.int32 and x.shape[1:] == (16, 12, 3)
    ax, ay = folder_ds.arrays("train", (16, 12))
    assert np.array_equal(x, ax.astype(np.float32)) and np.array_equal(y, ay)


def test_shuffle_is_seeded(folder_ds):
    first = _collect(folder_ds.tf_dataset("train", 8, 3, shuffle=True, seed=1))[1]
    again = _collect(folder_ds.tf_dataset("train", 8, 3, shuffle=True, seed=1))[1]
    assert np.array_equal(first, again)


@pytest.mark.parametrize("augment", [True, {"flip": None, "rotation": 0.1}])
def test_augment_shapes_range_and_determinism(augment):
    ds = open_dataset("builtin:mnist_m", seed=0)
    one = ds.tf_dataset("test", (20, 20), 32, augment=augment, seed=4).take(2)
    x, y = _collect(one)
    assert x.shape == (64, 20, 20, 3) and x.dtype == np.float32 and y.dtype == np.int32
    assert 0.0 <= x.min() and x.max() <= 255.0
    plain, _ = _collect(ds.tf_dataset("test", (20, 20), 32).take(2))
    assert not np.allclose(x, plain)
    again, _ = _collect(ds.tf_dataset("test", (20, 20), 32, augment=augment, seed=4).take(2))
    assert np.array_equal(x, again)


def test_repeat_and_empty_split_and_bad_args():
    ds = open_dataset("builtin:uci_digits", val_fraction=0.0)
    assert ds.counts()["val"] == 0
    assert len(list(ds.tf_dataset("val", 8, 4))) == 0
    batches = list(ds.tf_dataset("test", 8, 100, repeat=True).take(5))
    assert len(batches) == 5
    with pytest.raises(UserError):
        ds.tf_dataset("test", 8, 4, augment={"spin": 1})
    with pytest.raises(UserError):
        ds.tf_dataset("test", None, 4)


def test_augment_true_never_mirrors_builtin_digits():
    ds = open_dataset("builtin:uci_digits")
    assert ds.info["augment_flip"] is None
    flat = ds.tf_dataset("test", 8, 4, augment={"flip": None, "rotation": 0, "zoom": 0, "contrast": 0})
    x, _ = _collect(flat.take(1))
    assert np.array_equal(x, ds.arrays("test", 8)[0][:4].astype(np.float32))


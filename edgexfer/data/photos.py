"""Real photos that PyPI packages ship, and `builtin:photos`: crops of them for pretrained-model checks.

Why: a pretrained ImageNet classifier exported with no training step still needs real images to prove
its artifacts agree with Keras and to calibrate int8 (noise calibrates nonsense). scikit-image,
scikit-learn and matplotlib (all in the training extra) ship ten colour photos between them; each is
one class of `builtin:photos`, cut into crops like those an evaluation pipeline feeds a model (the
first crop of each photo is the classic 0.875 centre crop). Crops of one photo share content, so this
set measures agreement between artifacts, not generalisation.
"""
from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from edgexfer._deps import require
from edgexfer.data.builtin import register

#: (class name, where it comes from): skimage.data functions, sklearn sample images, matplotlib sample data
PHOTOS = (
    ("astronaut", "skimage"), ("chelsea", "skimage"), ("coffee", "skimage"), ("rocket", "skimage"),
    ("hubble_deep_field", "skimage"), ("immunohistochemistry", "skimage"), ("retina", "skimage"),
    ("china", "sklearn"), ("flower", "sklearn"), ("grace_hopper", "matplotlib"),
)
CROPS_PER_PHOTO = 64
CROP_SIZE = 224
CENTRE_FRACTION = 0.875
PHOTOS_SEED = 3_000


def _load(name: str, source: str) -> np.ndarray:
    if source == "skimage":
        return np.asarray(getattr(require("skimage.data", purpose="builtin:photos", extra="train"), name)())
    if source == "sklearn":
        datasets = require("sklearn.datasets", purpose="builtin:photos", extra="train")
        return np.asarray(datasets.load_sample_image(f"{name}.jpg"))
    cbook = require("matplotlib.cbook", purpose="builtin:photos", extra="train")
    with Image.open(cbook.get_sample_data(f"{name}.jpg", asfileobj=False)) as image:
        return np.asarray(image.convert("RGB"))


@functools.lru_cache(maxsize=1)
def shipped_photos() -> dict[str, np.ndarray]:
    """name -> uint8 RGB photo at its native size, for every entry of PHOTOS."""
    return {name: _load(name, source)[..., :3].astype(np.uint8) for name, source in PHOTOS}


def centre_crop(photo: np.ndarray, size: int = CROP_SIZE, fraction: float = CENTRE_FRACTION) -> np.ndarray:
    """The evaluation crop ImageNet models are scored with: the central `fraction` square, bicubic."""
    h, w = photo.shape[:2]
    side = int(round(min(h, w) * fraction))
    top, left = (h - side) // 2, (w - side) // 2
    return _resize(photo[top: top + side, left: left + side], size)


def random_crops(photo: np.ndarray, n: int, rng: np.random.Generator, size: int = CROP_SIZE) -> np.ndarray:
    """The centre crop, then n - 1 squares of 40..100% of the short side at random places, some mirrored."""
    crops = [centre_crop(photo, size)]
    h, w = photo.shape[:2]
    for _ in range(n - 1):
        side = int(min(h, w) * rng.uniform(0.4, 1.0))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = _resize(photo[top: top + side, left: left + side], size)
        crops.append(crop[:, ::-1] if rng.random() < 0.5 else crop)
    return np.stack(crops)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.Resampling.BICUBIC))


@register("photos", version=1, size=len(PHOTOS) * CROPS_PER_PHOTO, shape=(CROP_SIZE, CROP_SIZE, 3),
          flip="horizontal", class_names=tuple(name for name, _ in PHOTOS),
          description=f"{len(PHOTOS)} real colour photos shipped by scikit-image, scikit-learn and matplotlib, "
                      f"{CROPS_PER_PHOTO} crops each at {CROP_SIZE}x{CROP_SIZE} (one class per photo; checks "
                      "pretrained models)")
def _build_photos() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(PHOTOS_SEED)
    photos = shipped_photos()
    x = np.concatenate([random_crops(photos[name], CROPS_PER_PHOTO, rng) for name, _ in PHOTOS])
    return x, np.repeat(np.arange(len(PHOTOS), dtype=np.int64), CROPS_PER_PHOTO)


def photo_class_names() -> list[str]:
    return [name for name, _ in PHOTOS]

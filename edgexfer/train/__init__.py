"""Training: backbone registry, classifier, stage 1 (cached features) / stage 2, strategies, pretrain.

`import edgexfer.train` stays light: the registry and constants import no TensorFlow; `train`,
`evaluate`, `pretrain` and friends are loaded on first use (see __getattr__).
"""
from __future__ import annotations

import importlib
from typing import Any

from edgexfer.train.backbones import (
    DEFAULT_BACKBONE,
    BackboneSpec,
    build_backbone,
    get_backbone,
    list_backbones,
)
from edgexfer.train.shipped import DIGITS_BACKBONE, models_dir

_LAZY = {
    "train": "edgexfer.train.trainer",
    "TrainResult": "edgexfer.train.trainer",
    "open_data": "edgexfer.train.trainer",
    "evaluate": "edgexfer.train.evaluation",
    "pretrain": "edgexfer.train.pretraining",
}

__all__ = ["DEFAULT_BACKBONE", "DIGITS_BACKBONE", "BackboneSpec", "build_backbone", "get_backbone", "list_backbones", "models_dir",
           *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgexfer.train' has no attribute '{name}'")


from edgexfer._api import make_callable  # noqa: E402

make_callable(__name__, "train")  # `edgexfer.train(...)` works after `import edgexfer.train` too

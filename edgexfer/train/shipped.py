"""The shipped digits backbone: MobileNetV3Small (alpha 0.75) pretrained from scratch on randomised digits.

Why it exists: a small 32 px network for digit domains and the fast tests. `edgexfer pretrain`
trains it on the builtin source domain (`builtin:mnist`, domain randomised) and it ships in models/
(repository root; installed as edgexfer._models). The default backbone for photos is the ImageNet
EfficientNet-Lite0 (edgexfer.train.efficientnet_lite), offline too.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgexfer.train.registry import register

DIGITS_BACKBONE = "digits_mnv3s"
SHIPPED_DIR = "digits_mnv3s"
WEIGHTS_FILE = "backbone.weights.h5"
ALPHA = 0.75
IMAGE_SIZE = 32
#: Keras' default BatchNorm momentum (0.999) left validation accuracy at chance when training from
#: scratch for ~15 epochs in a probe: the moving statistics lag far behind the weights. 0.9 fixes it.
BN_MOMENTUM = 0.9
MODELS_ENV = "EDGEXFER_MODELS_DIR"


def models_dir() -> Path:
    """$EDGEXFER_MODELS_DIR; else edgexfer/_models inside an installed wheel (pyproject maps the repository's
    models/ to that package); else models/ next to the package (a source checkout or editable install)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env).expanduser()
    package = Path(__file__).resolve().parents[1]  # the edgexfer package folder
    installed = package / "_models"
    return installed if installed.is_dir() else package.parent / "models"


def mnv3s_architecture(shape: tuple[int, int, int] = (IMAGE_SIZE, IMAGE_SIZE, 3),
                       bn_momentum: float = BN_MOMENTUM) -> Any:
    """MobileNetV3Small(alpha 0.75), pooled, with its own Rescaling, random weights, BN momentum set."""
    from keras.applications import MobileNetV3Small
    from keras.layers import BatchNormalization

    model = MobileNetV3Small(input_shape=shape, alpha=ALPHA, include_top=False, pooling="avg", weights=None,
                             include_preprocessing=True, name=f"{DIGITS_BACKBONE}_backbone")
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            layer.momentum = bn_momentum
    return model


@register(DIGITS_BACKBONE, default_size=IMAGE_SIZE, min_size=32, own_rescaling=True,
          preprocessing="built-in Rescaling(1/127.5, offset=-1) of keras MobileNetV3",
          description="MobileNetV3Small alpha 0.75, pretrained offline on builtin:mnist_color (shipped)",
          shipped_weights=f"{SHIPPED_DIR}/{WEIGHTS_FILE}")
def _digits_mnv3s(shape: tuple[int, int, int], weights: str | None) -> Any:
    """Convolutional weights do not depend on the input size, so the file loads at any size >= 32."""
    model = mnv3s_architecture(shape)
    if weights is not None:
        model.load_weights(weights)
    return model

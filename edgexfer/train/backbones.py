"""Backbone registry: every feature extractor the SDK can transfer from, with its metadata.

Why a registry: the CLI choices, the run record and the tests (parametrized over
`list_backbones()`) all come from one table, so adding a backbone is one decorated function.

Every built backbone takes raw RGB float32 0..255 NHWC and returns pooled features. Its
preprocessing lives inside the graph, made of built-in Keras layers only (no Lambda, no custom
layer), so every converter (tf2onnx, TFLite, OpenVINO) handles it and every exported format shares
one input contract. This module imports Keras only inside the builders.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from edgexfer.errors import UserError
from edgexfer.manifest import sha256_file
from edgexfer.train.registry import (  # noqa: F401  (DEFAULT_BACKBONE, PREPROCESS_PREFIX: served from here too)
    _REGISTRY,
    DEFAULT_BACKBONE,
    PREPROCESS_PREFIX,
    BackboneSpec,
    BuiltBackbone,
    normalize_size,
    register,
)

#: ImageNet "caffe" mean in BGR order (keras.applications.imagenet_utils, mode="caffe").
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def list_backbones() -> list[str]:
    """Names of every registered backbone, default first."""
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_BACKBONE, n))


def get_backbone(name: str) -> BackboneSpec:
    """The spec registered under `name`, or a UserError that lists every available name."""
    if name not in _REGISTRY:
        raise UserError(f"Unknown backbone '{name}'. Available backbones: {', '.join(list_backbones())}.")
    return _REGISTRY[name]


def resolve_weights(spec: BackboneSpec, weights: str | None) -> tuple[str | None, str]:
    """Map the user's `weights` to (argument for the builder, description for run.json).

    "default" means the shipped offline file for shipped backbones and ImageNet otherwise. ImageNet is
    a download for keras.applications backbones and a local file for those with `imagenet_weights`.
    """
    choice = "default" if weights is None else str(weights)
    if choice == "default":
        choice = str(_shipped_path(spec)) if spec.shipped_weights else "imagenet"
    if choice == "none":
        return None, "none"
    if choice == "imagenet":
        if spec.shipped_weights:
            raise UserError(f"Backbone '{spec.name}' has no ImageNet weights. Use --weights default (the "
                            "shipped file), none, or a path to a local weights file.")
        if spec.imagenet_weights:
            return str(spec.imagenet_weights().path), "imagenet"
        return "imagenet", "imagenet"
    path = Path(choice).expanduser()
    if not path.is_file():
        raise UserError(f"Expected --weights imagenet, none, default or a local weights file. Received: "
                        f"'{weights}' (no such file).")
    return str(path.resolve()), str(path.resolve())


def _shipped_path(spec: BackboneSpec) -> Path:
    from edgexfer.train.shipped import models_dir

    path = models_dir() / str(spec.shipped_weights)
    if not path.is_file():
        raise UserError(f"The shipped weights of backbone '{spec.name}' are missing: {path}. Recreate them with "
                        "`edgexfer pretrain`, or set EDGEXFER_MODELS_DIR to the folder that holds them.")
    return path


def build_backbone(name: str, weights: str | None = "default", image_size: int | tuple[int, int] | None = None
                   ) -> BuiltBackbone:
    """Build backbone `name` for `image_size` (default: the backbone's own) with the requested weights."""
    spec = get_backbone(name)
    height, width = normalize_size(image_size if image_size is not None else spec.default_size)
    if min(height, width) < spec.min_size:
        raise UserError(f"Backbone '{name}' needs images of at least {spec.min_size}x{spec.min_size}. "
                        f"Received: {height}x{width}.")
    arg, source = resolve_weights(spec, weights)
    model = _call_builder(spec, (height, width, 3), arg)
    sha = sha256_file(arg) if arg not in (None, "imagenet") else None
    return BuiltBackbone(model, spec, source, sha, int(model.output_shape[-1]), _weights_info(spec, source, arg))


def _weights_info(spec: BackboneSpec, source: str, arg: str | None) -> dict[str, Any]:
    """Where local ImageNet weights came from (file, package, version), for run.json."""
    if source != "imagenet" or spec.imagenet_weights is None:
        return {}
    return {"weights_file": arg, **spec.imagenet_weights().info}


def _call_builder(spec: BackboneSpec, shape: tuple[int, int, int], weights: str | None) -> Any:
    """Run the builder; turn an offline ImageNet download or an unloadable weights file into a UserError."""
    try:
        return spec.builder(shape, weights)
    except Exception as exc:  # keras raises a bare Exception for a failed download
        if weights == "imagenet" and "URL fetch failure" in str(exc):
            raise UserError(
                f"Could not download the ImageNet weights of '{spec.name}' (no network?). Download the "
                "Keras 'no_top' weights file elsewhere and pass its path with --weights PATH, or use an "
                f"ImageNet backbone that works offline (--backbone {DEFAULT_BACKBONE}). Details: " + str(exc).splitlines()[0]
            ) from exc
        if weights not in (None, "imagenet") and isinstance(exc, (ValueError, OSError, KeyError)):
            raise UserError(f"Could not load weights file {weights} into backbone '{spec.name}': {exc}") from exc
        raise


# --- in-graph preprocessing from built-in layers ------------------------------------------------------


def _wrap(app: Any, preprocess: list[Any], name: str, after_build: Callable[[], None] | None = None) -> Any:
    """raw 0..255 input -> preprocessing layers -> Keras application, as one functional model."""
    import keras

    inputs = keras.Input(app.input_shape[1:], name="image", dtype="float32")
    x = inputs
    for layer in preprocess:
        x = layer(x)
    if after_build:
        after_build()
    return keras.Model(inputs, app(x), name=name)


def tf_rescaling() -> Any:
    """MobileNetV2's `preprocess_input` ("tf" mode: x / 127.5 - 1) as a Rescaling layer."""
    import keras

    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name=PREPROCESS_PREFIX + "rescale")


def caffe_conv() -> tuple[Any, Callable[[], None]]:
    """ResNet50's "caffe" preprocessing (RGB->BGR, minus the BGR mean) as a frozen 1x1 Conv2D.

    The kernel is a channel permutation and the bias is -mean: a plain convolution every converter
    supports. The weights are set after the layer is built (a numpy initializer would not serialize).
    """
    import keras
    import numpy as np

    conv = keras.layers.Conv2D(3, 1, use_bias=True, trainable=False, name=PREPROCESS_PREFIX + "caffe_bgr_mean")
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    for out in range(3):
        kernel[0, 0, 2 - out, out] = 1.0  # BGR output channel `out` reads RGB input channel 2 - out
    bias = -np.asarray(CAFFE_MEAN_BGR, np.float32)
    return conv, lambda: conv.set_weights([kernel, bias])


def _app_kwargs(shape: tuple[int, int, int], weights: str | None) -> dict[str, Any]:
    return {"input_shape": shape, "include_top": False, "pooling": "avg", "weights": weights}


@register("mobilenet_v2", default_size=224, min_size=32, own_rescaling=False,
          preprocessing="Rescaling(1/127.5, offset=-1): 0..255 -> -1..1",
          description="keras.applications.MobileNetV2 (ImageNet), 1280 features")
def _mobilenet_v2(shape: tuple[int, int, int], weights: str | None) -> Any:
    from keras.applications import MobileNetV2

    return _wrap(MobileNetV2(**_app_kwargs(shape, weights)), [tf_rescaling()], "mobilenet_v2_backbone")


@register("mobilenet_v3_small", default_size=224, min_size=32, own_rescaling=True,
          preprocessing="built-in Rescaling(1/127.5, offset=-1) of keras MobileNetV3",
          description="keras.applications.MobileNetV3Small (ImageNet), 576 features")
def _mobilenet_v3_small(shape: tuple[int, int, int], weights: str | None) -> Any:
    from keras.applications import MobileNetV3Small

    return MobileNetV3Small(**_app_kwargs(shape, weights), include_preprocessing=True)


@register("mobilenet_v3_large", default_size=224, min_size=32, own_rescaling=True,
          preprocessing="built-in Rescaling(1/127.5, offset=-1) of keras MobileNetV3",
          description="keras.applications.MobileNetV3Large (ImageNet), 960 features")
def _mobilenet_v3_large(shape: tuple[int, int, int], weights: str | None) -> Any:
    from keras.applications import MobileNetV3Large

    return MobileNetV3Large(**_app_kwargs(shape, weights), include_preprocessing=True)


@register("efficientnet_b0", default_size=224, min_size=32, own_rescaling=True,
          preprocessing="built-in Rescaling(1/255) + Normalization(ImageNet mean/std) of keras EfficientNet",
          description="keras.applications.EfficientNetB0 (ImageNet), 1280 features")
def _efficientnet_b0(shape: tuple[int, int, int], weights: str | None) -> Any:
    from keras.applications import EfficientNetB0

    return EfficientNetB0(**_app_kwargs(shape, weights))


@register("resnet50", default_size=224, min_size=32, own_rescaling=False,
          preprocessing="caffe: RGB->BGR and minus ImageNet BGR mean, as a frozen 1x1 Conv2D",
          description="keras.applications.ResNet50 (ImageNet), 2048 features")
def _resnet50(shape: tuple[int, int, int], weights: str | None) -> Any:
    from keras.applications import ResNet50

    conv, set_weights = caffe_conv()
    return _wrap(ResNet50(**_app_kwargs(shape, weights)), [conv], "resnet50_backbone", after_build=set_weights)


def flat_layers(model: Any) -> list[Any]:
    """Every leaf layer of a (possibly nested) functional model, bottom to top."""
    leaves = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            leaves.extend(flat_layers(layer))
        else:
            leaves.append(layer)
    return leaves


# Backbones kept in their own modules (the shipped one, EfficientNet-Lite) register themselves on import.
from edgexfer.train import shipped as _shipped  # noqa: E402,F401  pylint: disable=wrong-import-position
from edgexfer.train import efficientnet_lite as _efficientnet_lite  # noqa: E402,F401  pylint: disable=C0413

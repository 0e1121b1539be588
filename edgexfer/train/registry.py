"""The backbone registry's core: the spec types, the table and the `register` decorator.

Why apart from edgexfer.train.backbones: backbones kept in their own modules (the shipped digits one,
EfficientNet-Lite) register themselves here, and edgexfer.train.backbones imports them; with the table
in backbones.py itself, each plugin and the registry would import each other.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

#: Builder signature: (input_shape (H, W, 3), weights None | "imagenet" | local file path) -> keras.Model
Builder = Callable[[tuple[int, int, int], "str | None"], Any]

PREPROCESS_PREFIX = "preprocess_"
#: What `edgexfer train` transfers from unless told otherwise: ImageNet EfficientNet-Lite0 at 224 px, offline
#: (MediaPipe Model Maker's default). The digits backbone stays, by name, for digit domains and fast tests.
DEFAULT_BACKBONE = "efficientnet_lite0"


class LocalWeights(NamedTuple):
    """ImageNet weights that an installed package ships as a local file, and their provenance for run.json."""

    path: Path
    info: dict[str, Any]


@dataclass(frozen=True)
class BackboneSpec:
    """What the SDK needs to know about a backbone before and after building it."""

    name: str
    builder: Builder
    default_size: int
    min_size: int
    preprocessing: str  # human/manifest description of the in-graph preprocessing
    own_rescaling: bool  # True when the Keras application already contains its Rescaling layer
    description: str = ""
    shipped_weights: str | None = None  # file relative to the models dir: "default" weights are offline
    imagenet_weights: Callable[[], LocalWeights] | None = None  # "imagenet" resolves to a local file (offline)


@dataclass
class BuiltBackbone:
    """A built backbone and where its weights came from (for run.json)."""

    model: Any
    spec: BackboneSpec
    weights: str  # "imagenet" | "none" | a local file path
    weights_sha256: str | None
    feature_dim: int
    info: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"name": self.spec.name, "weights": self.weights, "weights_sha256": self.weights_sha256,
                "feature_dim": self.feature_dim, "preprocessing": self.spec.preprocessing, **self.info}


_REGISTRY: dict[str, BackboneSpec] = {}


def register(name: str, *, default_size: int, min_size: int, preprocessing: str, own_rescaling: bool,
             description: str = "", shipped_weights: str | None = None,
             imagenet_weights: Callable[[], LocalWeights] | None = None) -> Callable[[Builder], Builder]:
    """Decorator: add a builder to the registry under `name`."""

    def decorate(builder: Builder) -> Builder:
        _REGISTRY[name] = BackboneSpec(name, builder, default_size, min_size, preprocessing, own_rescaling,
                                       description, shipped_weights, imagenet_weights)
        return builder

    return decorate


def normalize_size(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = (int(v) for v in size)
    return height, width

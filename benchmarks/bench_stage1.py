"""Stage 1 on cached features: the converged head fit against the Adam epochs it replaced, and builtin:textures.

Every method sees the SAME cached backbone features (one feature pass per dataset, backbone and input size,
timed on its own), so the head fits differ only in how they fit:
- `adam_E`: what stage 1 did before: Adam (lr 1e-3, batch 64, several steps per graph call) for up to E epochs
  over the cached features, early stopping (patience 3) on val loss and the best val weights restored, through
  the SDK's own Checkpointer/EpochCallback (replicated here: the library no longer has this path);
- `converged`: `edgexfer.train.stages.fit_head`, what stage 1 does now (L-BFGS to convergence, L2 on val);
- `pixels_N`: the same converged fit on raw pixels resized to N x N (a baseline with no backbone at all).
Label budgets: every training label, and 5 / 10 labels per class drawn by `Dataset.limit_labels` with seeds
0, 1, 2 (validation and test splits unchanged). Accuracies are on the fixed builtin test split.

    .venv/bin/python benchmarks/bench_stage1.py            # writes benchmarks/results/stage1.json
    .venv/bin/python benchmarks/bench_stage1.py --quick    # one draw per few-shot budget
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import write_result

BUDGETS = (5, 10, None)  # labels per class; None: all
SETTINGS = [  # (data, backbone, image size, methods)
    ("builtin:uci_digits", "digits_mnv3s", 32, ("adam_5", "adam_10", "converged")),
    ("builtin:uci_digits", "pixels", 8, ("converged",)),
    ("builtin:textures", "digits_mnv3s", 32, ("adam_10", "converged")),
    ("builtin:textures", "digits_mnv3s", 224, ("adam_10", "converged")),
    ("builtin:textures", "efficientnet_lite0", 224, ("adam_10", "converged")),
    ("builtin:textures", "pixels", 32, ("converged",)),
    ("builtin:textures", "pixels", 112, ("converged",)),
]


def cached_features(data: Any, backbone: str, size: int) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], float]:
    """Features of train/val/test (raw pixels for backbone "pixels") and the seconds of the feature pass."""
    from edgexfer.train import stages
    from edgexfer.train.backbones import build_backbone

    started = time.perf_counter()
    if backbone == "pixels":
        splits = {s: data.arrays(s, (size, size)) for s in ("train", "val", "test")}
        out = {s: (x.reshape(len(x), -1).astype(np.float32), y) for s, (x, y) in splits.items()}
        return out, time.perf_counter() - started
    model = build_backbone(backbone, "default", size).model
    forward = stages.forward_fn(model)
    out = {s: stages.extract_features(model, data.tf_dataset(s, (size, size), 256), forward)
           for s in ("train", "val", "test")}
    return out, time.perf_counter() - started


def few_shot_rows(data: Any, per_class: int | None, seed: int) -> np.ndarray:
    """Positions in the full training split of the images `limit_labels(per_class, seed)` keeps labelled."""
    if per_class is None:
        return np.arange(data.counts()["train"])
    where = {member: i for i, member in enumerate(data.members("train"))}
    return np.array([where[m] for m in data.limit_labels(per_class, seed).members("train")])


def fit_adam(train: tuple, val: tuple, num_classes: int, epochs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The former stage 1 on cached features (edgexfer before the converged fit), as trainer.train ran it."""
    import keras
    import tensorflow as tf

    from edgexfer.train.checkpoints import Checkpointer, EpochCallback, State
    from edgexfer.train.model import build_head_model, compile_model, make_head

    keras.utils.set_random_seed(seed)
    head = make_head(num_classes, 0.2)
    model = build_head_model(train[0].shape[1], head)
    steps = max(1, -(-len(train[1]) // 64))
    compile_model(model, 1e-3, False, steps_per_execution=min(steps, 32))
    pipe = tf.data.Dataset.from_tensor_slices((train[0], train[1].astype(np.int32)))
    pipe = pipe.shuffle(len(train[1]), seed=seed, reshuffle_each_iteration=True).batch(64)
    held = tf.data.Dataset.from_tensor_slices((val[0], val[1].astype(np.int32))).batch(64)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Checkpointer(Path(tmp), model, State({}))
        model.fit(pipe, epochs=epochs, validation_data=held, verbose=0, callbacks=[EpochCallback(ckpt, 1, 3)])
        ckpt.restore_best()
    kernel, bias = head.dense.get_weights()
    return kernel, bias


def fit(method: str, train: tuple, val: tuple, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    from edgexfer.train.stages import fit_head

    if method.startswith("adam_"):
        kernel, bias = fit_adam(train, val, num_classes, int(method.split("_")[1]), seed)
        return kernel, bias, {}
    head = fit_head(train, val, num_classes)
    return head.kernel, head.bias, {"l2": head.l2, "iterations": head.iterations, "converged": head.converged}


def accuracy(split: tuple[np.ndarray, np.ndarray], kernel: np.ndarray, bias: np.ndarray) -> float:
    return float(((split[0] @ kernel + bias).argmax(axis=1) == split[1]).mean())


def measure(name: str, backbone: str, size: int, methods: tuple[str, ...], draws: int) -> list[dict[str, Any]]:
    """One row per (method, label budget): test accuracy (mean and per draw) and head-fit seconds."""
    from edgexfer.train.trainer import open_data

    data = open_data(name, seed=0)
    feats, feature_seconds = cached_features(data, backbone, size)
    rows = []
    for per_class in BUDGETS:
        seeds = list(range(draws)) if per_class is not None else [0]
        for method in methods:
            accs, secs, info = [], [], {}
            for seed in seeds:
                keep = few_shot_rows(data, per_class, seed)
                train = (feats["train"][0][keep], feats["train"][1][keep])
                started = time.perf_counter()
                kernel, bias, info = fit(method, train, feats["val"], len(data.class_names), seed)
                secs.append(time.perf_counter() - started)
                accs.append(accuracy(feats["test"], kernel, bias))
            rows.append({"data": name, "backbone": backbone, "image_size": size, "method": method,
                         "labels_per_class": per_class or "all", "draws": len(seeds),
                         "test_accuracy": statistics.mean(accs), "test_accuracy_per_draw": accs,
                         "fit_seconds": statistics.median(secs), "feature_seconds": round(feature_seconds, 3),
                         "feature_dim": int(feats["train"][0].shape[1]), "last_fit": info})
            print(f"{name:>19} {backbone:>18} {size:>3}px {method:>10} {str(per_class or 'all'):>4}/class: "
                  f"test {statistics.mean(accs):.4f} ({', '.join(f'{a:.3f}' for a in accs)}), "
                  f"fit {statistics.median(secs):.3f}s (+{feature_seconds:.1f}s features)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one draw per few-shot budget")
    args = parser.parse_args()
    from edgexfer.train.backbones import list_backbones

    rows = []
    for name, backbone, size, methods in SETTINGS:
        if backbone == "pixels" or backbone in list_backbones():
            rows += measure(name, backbone, size, methods, 1 if args.quick else 3)
    path = write_result("stage1", {"budgets": [b or "all" for b in BUDGETS], "rows": rows,
                                   "test_split": "the fixed builtin test split (textures: a held-out photo region)"})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

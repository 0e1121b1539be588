"""Stage 1 speed on the default backbone: the feature pass, and cached features vs fitting through the backbone.

On builtin:textures (its default splits, seed 0) with the default backbone (ImageNet EfficientNet-Lite0) at its
default 224 px, in one run:
- feature pass: the frozen backbone over every image of the train, val and test splits (batches of 256, as
  stage 1 caches them), `repeats` passes with one traced graph function; images/s of the first pass (graph
  tracing included, what one training run pays) and the median of the later ones (steady state);
- whole stage 1, both modes `repeats` times, alternating which goes first (medians):
  `cached` is what `edgexfer train` does without augmentation: one feature pass over train + val, then the
  head fitted to convergence on the cached features (L-BFGS, L2 chosen on val);
  `through` is the head fitted with Adam through the frozen backbone for `epochs` epochs (the default 10,
  early stopping off): what stage 1 does with --augment, and what every epoch cost before the cache.
Goal (foundation issue): cached >= 5x faster than through, and its test accuracy no more than 0.5 point below.
The load average and the CPU other processes used meanwhile are recorded (_common.MachineLoad).

    .venv/bin/python benchmarks/bench_train_cache.py     # writes benchmarks/results/train_cache.json
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from _common import MachineLoad, write_result

DATA = "builtin:textures"
GOAL = {"speedup_min": 5.0, "accuracy_loss_max_points": 0.5}
SPLITS = ("train", "val", "test")


def feature_pass(data: Any, backbone: str, size: int, repeats: int) -> dict[str, Any]:
    """Images/s of the frozen backbone over every split: the first pass (with tracing) and the steady ones."""
    from edgexfer.train import stages
    from edgexfer.train.backbones import build_backbone

    model = build_backbone(backbone, "default", size).model
    pipelines = [data.tf_dataset(s, (size, size), stages.INFERENCE_BATCH) for s in SPLITS]
    images = sum(int(data.counts()[s]) for s in SPLITS)
    forward, seconds = stages.forward_fn(model), []
    for _ in range(repeats):
        started = time.perf_counter()
        for pipe in pipelines:
            stages.extract_features(model, pipe, forward)
        seconds.append(time.perf_counter() - started)
    steady = statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]
    return {"images": images, "batch": stages.INFERENCE_BATCH, "seconds": [round(s, 3) for s in seconds],
            "first_pass_images_per_s": images / seconds[0], "steady_images_per_s": images / steady}


def stage1_modes(data: Any, epochs: int, seed: int, repeats: int) -> dict[str, Any]:
    """Both modes `repeats` times, alternating which goes first; seconds are medians over the rounds."""
    from stage1_modes import run_stage1

    rounds: dict[str, list] = {"cached": [], "through": []}
    for i in range(repeats):
        for mode in ("cached", "through") if i % 2 == 0 else ("through", "cached"):
            rounds[mode].append(run_stage1(data, mode, epochs=epochs, seed=seed))
            last = rounds[mode][-1]
            print(f"  {mode:>7}: {last.seconds:.1f} s, test accuracy {last.test_accuracy:.4f}", flush=True)
    out = {}
    for mode, runs in rounds.items():
        out[mode] = {"seconds": statistics.median(r.seconds for r in runs), "all_seconds": [r.seconds for r in runs],
                     "val_accuracy": runs[0].val_accuracy, "test_accuracy": runs[0].test_accuracy,
                     "test_accuracy_all": [r.test_accuracy for r in runs]}
    out["through"]["epoch_seconds"] = rounds["through"][0].epoch_seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the through-the-backbone fit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="feature passes, and rounds of both modes")
    args = parser.parse_args()
    from edgexfer.train import DEFAULT_BACKBONE, get_backbone
    from edgexfer.train.trainer import open_data

    size = get_backbone(DEFAULT_BACKBONE).default_size
    data = open_data(DATA, seed=args.seed)
    data.arrays("train", (size, size))  # decode the builtin once so no measurement pays for it
    with MachineLoad() as load:
        features = feature_pass(data, DEFAULT_BACKBONE, size, args.repeats)
        print(f"feature pass: {features['first_pass_images_per_s']:.1f} images/s first, "
              f"{features['steady_images_per_s']:.1f} steady ({features['images']} images)", flush=True)
        modes = stage1_modes(data, args.epochs, args.seed, args.repeats)
    cached, through = modes["cached"], modes["through"]
    speedup = through["seconds"] / cached["seconds"]
    loss = 100 * (through["test_accuracy"] - cached["test_accuracy"])
    row = {"data": DATA, "backbone": DEFAULT_BACKBONE, "image_size": size, "seed": args.seed, "epochs": args.epochs,
           "repeats": args.repeats, "images": {s: int(data.counts()[s]) for s in SPLITS},
           "feature_pass": features, "cached": cached, "through_backbone": through, "speedup": speedup,
           "accuracy_loss_points": loss,
           "goal_met": bool(speedup >= GOAL["speedup_min"] and loss <= GOAL["accuracy_loss_max_points"])}
    print(f"cached {cached['seconds']:.1f} s vs through {through['seconds']:.1f} s -> {speedup:.1f}x; test accuracy "
          f"{cached['test_accuracy']:.4f} vs {through['test_accuracy']:.4f}; goal met: {row['goal_met']}")
    print(f"-> {write_result('train_cache', {'goal': GOAL, 'rows': [row], **load.record})}")


if __name__ == "__main__":
    main()

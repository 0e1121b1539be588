"""Stage 1 speed: cached backbone features vs fitting through the frozen backbone.

Same data, same seed, same epochs (10), early stopping off, both modes in one run, 3 rounds alternating
which mode goes first (medians). The cached time
includes the feature pass. Two settings:
- demo: builtin:uci_digits at 32 px on the shipped backbone (what `make demo` trains). The backbone is
  so cheap here that fixed costs (model build, graph tracing) dominate both modes;
- larger input: builtin:mnist_m at 96 px on the same backbone, where the backbone forward pass costs
  what it does in real transfer learning (it is the step the cache removes).
Goal (foundation issue): >= 5x faster with accuracies within 0.5 point.

    .venv/bin/python benchmarks/bench_train_cache.py     # writes benchmarks/results/train_cache.json
"""
from __future__ import annotations

import argparse
import statistics

from _common import write_result

SETTINGS = [
    {"name": "demo", "data": "builtin:uci_digits", "image_size": 32},
    {"name": "larger input", "data": "builtin:mnist_m", "image_size": 96},
]
GOAL = {"speedup_min": 5.0, "accuracy_diff_max_points": 0.5}


def _warm_up(data, size: int, batch_size: int) -> None:
    """Decode the builtin arrays once so neither mode pays for building the dataset."""
    data.arrays("train", (size, size))


def measure(setting: dict, epochs: int, batch_size: int, seed: int, repeats: int) -> dict:
    """Both modes `repeats` times, alternating which goes first; times are medians over the rounds."""
    from edgexfer.train import DEFAULT_BACKBONE
    from edgexfer.train.compare import run_stage1
    from edgexfer.train.trainer import open_data

    data = open_data(setting["data"], seed=seed)
    _warm_up(data, setting["image_size"], batch_size)
    rounds: dict[str, list] = {"cached": [], "through": []}
    for i in range(repeats):
        for mode in ("cached", "through") if i % 2 == 0 else ("through", "cached"):
            rounds[mode].append(run_stage1(data, mode, image_size=setting["image_size"], epochs=epochs,
                                           batch_size=batch_size, seed=seed))
    cached, through = rounds["cached"][0], rounds["through"][0]  # same seed: the same accuracies every round
    seconds = {m: statistics.median(r.seconds for r in runs) for m, runs in rounds.items()}
    steady = {m: statistics.median(s for r in runs for s in r.epoch_seconds[1:]) for m, runs in rounds.items()}
    row = {
        **setting, "backbone": DEFAULT_BACKBONE, "epochs": epochs, "batch_size": batch_size, "seed": seed,
        "repeats": repeats, "train_images": data.counts()["train"],
        "cached": {"seconds": seconds["cached"], "all_seconds": [r.seconds for r in rounds["cached"]],
                   "val_accuracy": cached.val_accuracy, "test_accuracy": cached.test_accuracy},
        "through_backbone": {"seconds": seconds["through"], "all_seconds": [r.seconds for r in rounds["through"]],
                             "val_accuracy": through.val_accuracy, "test_accuracy": through.test_accuracy},
        "speedup": seconds["through"] / seconds["cached"],
        "steady_epoch_seconds": steady, "steady_epoch_speedup": steady["through"] / steady["cached"],
        "test_accuracy_diff_points": 100 * abs(cached.test_accuracy - through.test_accuracy),
        "val_accuracy_diff_points": 100 * abs(cached.val_accuracy - through.val_accuracy),
    }
    row["goal_met"] = bool(row["speedup"] >= GOAL["speedup_min"]
                           and max(row["test_accuracy_diff_points"], row["val_accuracy_diff_points"])
                           <= GOAL["accuracy_diff_max_points"])
    print(f"{setting['name']:>13}: cached {seconds['cached']:.1f}s vs through {seconds['through']:.1f}s -> "
          f"{row['speedup']:.1f}x; test acc {cached.test_accuracy:.4f} vs {through.test_accuracy:.4f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of both modes (medians are reported)")
    args = parser.parse_args()
    rows = [measure(s, args.epochs, args.batch_size, args.seed, args.repeats) for s in SETTINGS]
    path = write_result("train_cache", {"goal": GOAL, "rows": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

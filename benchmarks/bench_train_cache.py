"""Stage 1 speed: cached backbone features vs fitting through the frozen backbone.

Same data (the demo setting: builtin:uci_digits on the shipped backbone), same seed, same epochs,
early stopping off. Reports both wall times (feature extraction included in the cached one),
the speed-up and both accuracies. Goal: >= 5x faster with accuracies within 0.5 point.

    .venv/bin/python benchmarks/bench_train_cache.py            # writes benchmarks/results/train_cache.json
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

RESULT = Path(__file__).parent / "results" / "train_cache.json"


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin:uci_digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULT)
    return parser.parse_args(argv)


def _warm_up(data, batch_size: int) -> None:
    """Decode/resize the images once so neither mode pays the dataset build inside its timing."""
    for split in ("train", "val", "test"):
        for _ in data.tf_dataset(split, (32, 32), batch_size):
            pass


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 4) if ordered else None


def main(argv: list[str] | None = None) -> dict:
    from edgexfer.bench.machine import machine_record
    from edgexfer.train import DEFAULT_BACKBONE
    from edgexfer.train.compare import run_stage1
    from edgexfer.train.trainer import open_data

    args = _args(argv)
    data = open_data(args.data, seed=args.seed)
    _warm_up(data, args.batch_size)
    runs = {mode: run_stage1(data, mode, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
            for mode in ("cached", "through")}
    cached, through = runs["cached"], runs["through"]
    result = {
        "benchmark": "train_cache",
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "setting": {"data": args.data, "backbone": DEFAULT_BACKBONE, "epochs": args.epochs,
                    "batch_size": args.batch_size, "seed": args.seed, "counts": data.counts()},
        "cached": {"seconds": round(cached.seconds, 2), "val_accuracy": cached.val_accuracy,
                   "test_accuracy": cached.test_accuracy},
        "through_backbone": {"seconds": round(through.seconds, 2), "val_accuracy": through.val_accuracy,
                             "test_accuracy": through.test_accuracy},
        "speedup": round(through.seconds / cached.seconds, 2),
        "steady_epoch_seconds": {"cached": _median(cached.epoch_seconds[1:]),
                                 "through_backbone": _median(through.epoch_seconds[1:])},
        "one_time_seconds": {"cached_feature_extraction_and_tracing": round(cached.seconds - sum(cached.epoch_seconds[1:]), 2),
                             "through_backbone_first_epoch_tracing": round(through.epoch_seconds[0], 2)},
        "val_accuracy_diff_points": round(100 * abs(cached.val_accuracy - through.val_accuracy), 2),
        "test_accuracy_diff_points": round(100 * abs(cached.test_accuracy - through.test_accuracy), 2),
        "goal": {"speedup_min": 5.0, "accuracy_diff_max_points": 0.5},
        "machine": machine_record(),
    }
    steady = result["steady_epoch_seconds"]
    result["steady_epoch_speedup"] = round(steady["through_backbone"] / steady["cached"], 1) if steady["cached"] else None
    result["goal_met"] = bool(result["speedup"] >= 5.0 and result["test_accuracy_diff_points"] <= 0.5
                              and result["val_accuracy_diff_points"] <= 0.5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("cached", "through_backbone", "speedup", "steady_epoch_seconds",
                                             "steady_epoch_speedup", "val_accuracy_diff_points",
                                             "test_accuracy_diff_points", "goal_met")}, indent=2))
    return result


if __name__ == "__main__":
    main()

"""Transfer quality: does the shipped backbone reduce the labels a target domain needs?

On each builtin target domain (uci_digits, mnist_m), for k = 5, 10, 20, 50 and all labelled training
images per class, 3 seeds, one fixed test split (the builtin's), compare:

- transfer from the shipped backbone through `edgexfer.train.train` (the SDK path a user runs):
  `frozen` (head on frozen features), `frozen+adabn` (AdaBN on the unlabelled training images first),
  `adabn+stage2` (then fine-tune every backbone layer, BatchNorm frozen): each adds one step;
- `scratch`: the same network from random weights, trained end to end (BatchNorm training) with the
  recipe that pretrains the shipped backbone;
- `raw_pixels`: a logistic regression on standardised raw pixels;
- `source_only`, `source_only+adabn`: the source classifier (shipped backbone + its source head) with
  no target label at all.

k-shot protocol: no validation split (a labelled validation set larger than the training set would
leak labels), fixed training budgets, last weights. Budgets are in optimiser steps, so small k gets
more epochs. Then the best mnist_m model (seed 0) is exported to full-int8 TFLite with parity and
scored float vs int8 on the test split.

    python benchmarks/bench_transfer.py            # full grid in one process
    python benchmarks/bench_transfer.py --quick    # k=10 and all, one seed: a smoke run
    # or one process per domain (one thread each), then merge (what `make benchmarks` runs):
    python benchmarks/bench_transfer.py --domains uci_digits --part transfer_uci_digits --threads 1 &
    python benchmarks/bench_transfer.py --domains mnist_m --part transfer_mnist_m --threads 1; wait
    python benchmarks/bench_transfer.py --merge transfer_uci_digits transfer_mnist_m
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import WORK, write_result  # noqa: E402

DOMAINS = ("uci_digits", "mnist_m")
KS: tuple[int | None, ...] = (5, 10, 20, 50, None)  # None: all labelled training images
SEEDS = (0, 1, 2)
TRANSFER = ("frozen", "frozen+adabn", "adabn+stage2")
METHODS = (*TRANSFER, "scratch", "raw_pixels")
SOURCE_ONLY = ("source_only", "source_only+adabn")
BATCH = 32
HEAD_STEPS, STAGE2_STEPS, SCRATCH_STEPS = 150, 250, 800
HEAD_LR, STAGE2_LR, SCRATCH_LR = 3e-3, 1e-4, 3e-3
GOALS = {"k10_margin_pts": 15.0, "all_labels_min": 0.60, "int8_max_drop_pts": 1.0}


def epochs_for(n: int, steps: int, minimum: int, maximum: int) -> int:
    """Enough epochs for about `steps` optimiser steps, within [minimum, maximum] epochs."""
    return min(maximum, max(minimum, math.ceil(steps / max(1, math.ceil(n / BATCH)))))


def open_target(domain: str, seed: int, k: int | None) -> Any:
    from edgexfer.data import open_dataset

    data = open_dataset(f"builtin:{domain}", seed=seed, val_fraction=0.0)
    return data.limit_labels(k, seed) if k is not None else data


def sdk_transfer(method: str, data: Any, seed: int, out: Path) -> tuple[float, Path]:
    """One `edgexfer.train.train` run; returns the test accuracy from run.json and the run dir."""
    from edgexfer.train import DIGITS_BACKBONE, train

    n = int(data.counts()["train"])
    options: dict[str, Any] = {"adapt_bn": "adabn" in method, "backbone": DIGITS_BACKBONE}  # not the default any more
    if method.endswith("stage2"):
        options.update(fine_tune_layers=1000, fine_tune_epochs=epochs_for(n, STAGE2_STEPS, 10, 40),
                       fine_tune_lr=STAGE2_LR)
    result = train(data, out, epochs=epochs_for(n, HEAD_STEPS, 30, 60), batch_size=BATCH, learning_rate=HEAD_LR,
                   seed=seed, patience=0, verbose=0, force=True, **options)
    return float(result.record.metrics["test_accuracy"]), out


def scratch(data: Any, seed: int) -> float:
    """Same architecture from random weights, BatchNorm training, the pretraining optimiser recipe."""
    import keras

    from edgexfer.train.shipped import IMAGE_SIZE, mnv3s_architecture

    keras.utils.set_random_seed(seed)
    x, y = data.arrays("train", IMAGE_SIZE)
    xt, yt = data.arrays("test", IMAGE_SIZE)
    backbone = mnv3s_architecture()
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(backbone(inputs)))
    repeat = max(1, math.ceil(25 * BATCH / len(y)))  # >= 25 steps per Keras epoch: less per-epoch overhead
    x, y = np.tile(x, (repeat, 1, 1, 1)), np.tile(y, repeat)
    epochs = math.ceil(SCRATCH_STEPS / math.ceil(len(y) / BATCH))
    steps = epochs * math.ceil(len(y) / BATCH)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(SCRATCH_LR, steps)),
                  loss="sparse_categorical_crossentropy")
    model.fit(x.astype(np.float32), y, batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True)
    return float(np.mean(np.argmax(model.predict(xt.astype(np.float32), batch_size=256, verbose=0), 1) == yt))


def raw_pixels(data: Any) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = data.arrays("train", None)
    xt, yt = data.arrays("test", None)
    scaler = StandardScaler().fit(x.reshape(len(x), -1).astype(np.float32))
    clf = LogisticRegression(max_iter=3000).fit(scaler.transform(x.reshape(len(x), -1)), y)
    return float(clf.score(scaler.transform(xt.reshape(len(xt), -1)), yt))


def source_only(data: Any, adabn: bool) -> float:
    """Shipped backbone + shipped source head on the target test split; AdaBN on the training images."""
    from edgexfer.train.adapt import adapt_batchnorm
    from edgexfer.train.pretraining import SOURCE_HEAD_FILE, load_source_head
    from edgexfer.train.shipped import IMAGE_SIZE, SHIPPED_DIR, WEIGHTS_FILE, mnv3s_architecture, models_dir

    backbone = mnv3s_architecture()
    backbone.load_weights(str(models_dir() / SHIPPED_DIR / WEIGHTS_FILE))
    if adabn:
        adapt_batchnorm(backbone, data.arrays("train", IMAGE_SIZE)[0].astype(np.float32))
    kernel, bias = load_source_head(models_dir() / SHIPPED_DIR / SOURCE_HEAD_FILE)
    xt, yt = data.arrays("test", IMAGE_SIZE)
    features = np.asarray(backbone.predict(xt.astype(np.float32), batch_size=256, verbose=0))
    return float(np.mean(np.argmax(features @ kernel + bias, 1) == yt))


def run_cell(domain: str, seed: int, k: int | None, methods: tuple[str, ...]) -> dict[str, Any]:
    data = open_target(domain, seed, k)
    cell: dict[str, Any] = {"domain": domain, "seed": seed, "k": k if k is not None else "all",
                            "train_images": int(data.counts()["train"]), "accuracy": {}, "seconds": {}}
    for method in methods:
        started = time.perf_counter()
        if method in TRANSFER:
            run_dir = WORK / "transfer" / f"{domain}_k{cell['k']}_s{seed}_{method.replace('+', '_')}"
            cell["accuracy"][method], _ = sdk_transfer(method, data, seed, run_dir)
        elif method == "scratch":
            cell["accuracy"][method] = scratch(data, seed)
        else:
            cell["accuracy"][method] = raw_pixels(data)
        cell["seconds"][method] = round(time.perf_counter() - started, 1)
        print(f"{domain:10s} k={cell['k']!s:3s} seed={seed} {method:13s} {cell['accuracy'][method]:.4f} "
              f"({cell['seconds'][method]} s)", flush=True)
    return cell


def summarize(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (domain, k, method)."""
    rows = []
    for domain in DOMAINS:
        for k in dict.fromkeys(c["k"] for c in cells if c["domain"] == domain):
            group = [c for c in cells if c["domain"] == domain and c["k"] == k]
            for method in dict.fromkeys(m for c in group for m in c["accuracy"]):
                values = [c["accuracy"][method] for c in group if method in c["accuracy"]]
                rows.append({"domain": domain, "k": k, "method": method, "mean": float(np.mean(values)),
                             "std": float(np.std(values)), "seeds": len(values), "values": values,
                             "train_images": group[0]["train_images"]})
    return rows


def best_transfer(rows: list[dict[str, Any]], domain: str, k: Any) -> dict[str, Any]:
    return max((r for r in rows if r["domain"] == domain and r["k"] == k and r["method"] in TRANSFER),
               key=lambda r: r["mean"])


def int8_check(domain: str, method: str) -> dict[str, Any]:
    """Export the seed-0 all-labels run of `method` to tflite-int8 (with parity); float vs int8 test accuracy."""
    from edgexfer.data import load_split
    from edgexfer.export import export
    from edgexfer.record import RunRecord
    from edgexfer.runtime import load

    run_dir = WORK / "transfer" / f"{domain}_kall_s0_{method.replace('+', '_')}"
    bundle = WORK / "transfer" / f"{domain}_best_bundle"
    export(run_dir, bundle, formats=["tflite", "tflite-int8"], force=True)
    record = RunRecord.load(run_dir)
    x, y = load_split(record.data, "test", tuple(record.input_shape[:2]))
    out = {"domain": domain, "method": method, "run": str(run_dir.relative_to(WORK.parent))}
    for fmt in ("tflite", "tflite-int8"):
        with load(bundle, format=fmt) as model:
            out[fmt] = float(np.mean(np.argmax(model.predict(x), 1) == y))
    out["drop_pts"] = round(100 * (out["tflite"] - out["tflite-int8"]), 2)
    return out


def goals(rows: list[dict[str, Any]], int8: dict[str, Any] | None) -> dict[str, Any]:
    def mean(domain: str, k: Any, method: str) -> float | None:
        found = [r["mean"] for r in rows if (r["domain"], r["k"], r["method"]) == (domain, k, method)]
        return found[0] if found else None

    out: dict[str, Any] = {}
    if mean("mnist_m", 10, "scratch") is not None:
        best = best_transfer(rows, "mnist_m", 10)
        margin = 100 * (best["mean"] - max(mean("mnist_m", 10, "scratch"), mean("mnist_m", 10, "raw_pixels")))
        out["mnist_m_k10"] = {"best": best["method"], "accuracy": best["mean"], "margin_pts": round(margin, 2),
                              "goal_pts": GOALS["k10_margin_pts"], "met": margin >= GOALS["k10_margin_pts"]}
    if any(r["domain"] == "mnist_m" and r["k"] == "all" for r in rows):
        best = best_transfer(rows, "mnist_m", "all")
        out["mnist_m_all"] = {"best": best["method"], "accuracy": best["mean"], "goal": GOALS["all_labels_min"],
                              "met": best["mean"] >= GOALS["all_labels_min"]}
    if int8:
        out["int8"] = {**int8, "goal_pts": GOALS["int8_max_drop_pts"], "met": int8["drop_pts"] <= GOALS["int8_max_drop_pts"]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="k=10 and all, seed 0 only (smoke run)")
    parser.add_argument("--domains", nargs="*", default=list(DOMAINS))
    parser.add_argument("--part", default=None, help="write results/<part>.json with this part's cells only")
    parser.add_argument("--merge", nargs="*", default=None, help="merge part files, add int8 check, card, goals")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow intra-op threads (for parts)")
    args = parser.parse_args(argv)
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    ks = (10, None) if args.quick else KS
    seeds = (0,) if args.quick else SEEDS
    started = time.perf_counter()
    if args.merge is not None:
        cells, seconds = _load_parts(args.merge)
    else:
        cells = [run_cell(domain, seed, k, METHODS) for domain in args.domains for seed in seeds for k in ks]
        cells += [{"domain": d, "seed": s, "k": "none", "train_images": 0,
                   "accuracy": {m: source_only(open_target(d, s, None), "adabn" in m) for m in SOURCE_ONLY}}
                  for d in args.domains for s in seeds]
        seconds = round(time.perf_counter() - started, 1)
        if args.part:
            write_result(args.part, {"cells": cells, "seconds": seconds})
            return 0
    rows = summarize(cells)
    domains = sorted({c["domain"] for c in cells})
    best = best_transfer(rows, "mnist_m", "all") if "mnist_m" in domains else None
    int8 = int8_check("mnist_m", best["method"]) if best else None
    payload = {"settings": {"ks": [k if k is not None else "all" for k in ks], "seeds": list(seeds),
                            "methods": list(METHODS), "source_only": list(SOURCE_ONLY), "batch": BATCH,
                            "head_steps": HEAD_STEPS, "stage2_steps": STAGE2_STEPS, "scratch_steps": SCRATCH_STEPS,
                            "head_lr": HEAD_LR, "stage2_lr": STAGE2_LR, "scratch_lr": SCRATCH_LR,
                            "protocol": "no validation split, fixed step budgets, last weights, fixed builtin test "
                                        "split", "quick": args.quick},
               "backbone_card": _card_summary(), "rows": rows, "cells": cells, "int8": int8,
               "goals": goals(rows, int8), "seconds": seconds}
    path = write_result("transfer_quick" if args.quick else "transfer", payload)
    print(f"wrote {path}")
    if not args.quick and set(domains) == set(DOMAINS):
        attach_to_card(rows, seeds)
    for name, goal in payload["goals"].items():
        print(name, goal)
    return 0


def _load_parts(names: list[str]) -> tuple[list[dict[str, Any]], float]:
    """Cells and summed compute seconds of part files written with --part (run in parallel processes)."""
    import json

    from _common import RESULTS

    docs = [json.loads((RESULTS / f"{name}.json").read_text()) for name in names]
    return [c for d in docs for c in d["cells"]], round(sum(d["seconds"] for d in docs), 1)


def attach_to_card(rows: list[dict[str, Any]], seeds: tuple[int, ...]) -> None:
    """The model card in models/ states these results (a compact copy of the table)."""
    from edgexfer.train.pretraining import attach_transfer
    from edgexfer.train.shipped import SHIPPED_DIR, models_dir

    methods = [*METHODS]
    table = []
    for domain in DOMAINS:
        for k in dict.fromkeys(r["k"] for r in rows if r["domain"] == domain and r["k"] != "none"):
            got = {r["method"]: r["mean"] for r in rows if (r["domain"], r["k"]) == (domain, k)}
            table.append({"domain": domain, "k": k, "accuracy": [got.get(m) for m in methods]})
        src = {r["method"]: r["mean"] for r in rows if (r["domain"], r["k"]) == (domain, "none")}
        table.append({"domain": domain, "k": "0 (source only / +AdaBN)",
                      "accuracy": [src.get("source_only"), src.get("source_only+adabn"), *[None] * (len(methods) - 2)]})
    attach_transfer(models_dir() / SHIPPED_DIR, {"source": "benchmarks/results/transfer.json", "seeds": len(seeds),
                                                 "methods": methods, "rows": table})


def _card_summary() -> dict[str, Any]:
    import json

    from edgexfer.train.shipped import SHIPPED_DIR, models_dir

    card = json.loads((models_dir() / SHIPPED_DIR / "card.json").read_text())
    return {k: card.get(k) for k in ("name", "sha256", "source_test_accuracy", "train_seconds", "epochs")}


if __name__ == "__main__":
    sys.exit(main())

"""Batch-1 latency: Keras `model.predict` (how a notebook runs inference) against the edgexfer runtime.

Same model: the run's model.keras through Keras, and every passed artifact of its bundle through the
runtime, measured in this one run. Goal (runtime issue): at least 50x faster on a MobileNetV3Small-class
model. The model is the digits model (digits_mnv3s: MobileNetV3Small-0.75 at 32x32 on builtin:uci_digits,
benchmarks/_common.digits_bundle: the demo before efficientnet_lite0 on builtin:textures).

    .venv/bin/python benchmarks/bench_keras_vs_runtime.py   # writes benchmarks/results/keras_vs_runtime.json
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from _common import DIGITS_LABEL, digits_bundle, digits_run_dir, pairs, write_result

THREADS = os.cpu_count() or 1


def median_ms(fn, x, runs: int) -> float:
    for _ in range(3):
        fn(x)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn(x)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return statistics.median(samples)


def main() -> None:
    bundle = digits_bundle()
    import keras

    from edgexfer import runtime

    model = keras.saving.load_model(digits_run_dir() / "model.keras")
    x = np.random.default_rng(0).integers(0, 256, (1, *model.input_shape[1:]), dtype=np.uint8)
    keras_ms = median_ms(lambda a: model.predict(a.astype("float32"), verbose=0), x, runs=30)
    rows = []
    for artifact, backend in pairs(bundle):
        with runtime.load(bundle, format=artifact, backend=backend, device="cpu", threads=THREADS) as m:
            ms = median_ms(m.predict, x, runs=300)
        rows.append({"artifact": artifact, "backend": backend, "p50_ms": ms, "speedup": keras_ms / ms})
        print(f"{artifact:>14} {backend:>12}: {ms:.4f} ms  ({keras_ms / ms:.0f}x faster than Keras predict)")
    best = max(rows, key=lambda r: r["speedup"])
    path = write_result("keras_vs_runtime", {
        "model": DIGITS_LABEL, "bundle": str(bundle), "keras_predict_ms": keras_ms, "rows": rows, "best": best,
        "goal": {"speedup_min": 50}, "goal_met": best["speedup"] >= 50})
    print(f"Keras model.predict: {keras_ms:.2f} ms; best {best['artifact']}/{best['backend']} "
          f"{best['speedup']:.0f}x -> {path}")


if __name__ == "__main__":
    main()

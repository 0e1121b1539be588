"""A measured choice of backend: `runtime.load(backend="auto")` against the best cell of the sweep.

For the demo model, a MobileNetV3Small@224 and a ResNet50@224 (random weights: speed only), in one run:
sweep every passed artifact x backend x batch size with `--tune` (recording the fastest choice in the
bundle), then measure what `load()` picks by itself at each batch size. Goal (benchmark issue): auto reaches
at least 0.90x the best cell's throughput.

    .venv/bin/python benchmarks/bench_auto.py [--quick]   # writes benchmarks/results/auto_vs_best.json
"""
from __future__ import annotations

import argparse
from dataclasses import replace

from _common import demo_bundle, model_bundle, write_result

GOAL = 0.90
MODELS = {
    "demo (digits_mnv3s@32)": lambda: demo_bundle(),
    "mobilenet_v3_small@224": lambda: model_bundle("mnv3s224", "mobilenet_v3_small", 224),
    "resnet50@224": lambda: model_bundle("resnet50_224", "resnet50", 224,
                                         formats="onnx,tflite,openvino"),  # int8 of random weights: noise
}


def evaluate_model(label: str, bundle, config) -> list[dict]:
    from edgexfer.bench import api
    from edgexfer.bench.cell import CellSpec
    from edgexfer.bench.sweep import run_one

    result = api.bench(bundle, config, out=bundle.parent / "bench", tune=True)
    rows = []
    for batch in config.batch_sizes:
        cells = [c for c in result.results["cells"] if c["status"] == "ok" and c["batch_size"] == batch
                 and not c.get("variant")]
        best = max(cells, key=lambda c: c["throughput_ips"])
        auto = run_one(CellSpec(bundle=str(bundle), artifact="auto", backend="auto", device="cpu", batch_size=batch,
                                threads=0, runs=config.runs, seconds=config.seconds, warmup=config.warmup))
        ratio = auto["throughput_ips"] / best["throughput_ips"] if auto["status"] == "ok" else 0.0
        rows.append({"model": label, "batch": batch, "best": {k: best[k] for k in ("artifact", "backend", "mode",
                     "threads", "throughput_ips")}, "auto": {"artifact": auto.get("resolved", {}).get("artifact"),
                     "backend": auto.get("resolved", {}).get("backend"), "throughput_ips": auto.get("throughput_ips"),
                     "status": auto["status"], "error": auto.get("error")},
                     "ratio": ratio, "goal_met": ratio >= GOAL})
        print(f"{label:>24} b{batch:<3} best {best['artifact']}/{best['backend']}/{best['mode']} "
              f"{best['throughput_ips']:.0f} img/s; auto {rows[-1]['auto']['artifact']}/{rows[-1]['auto']['backend']} "
              f"{auto.get('throughput_ips', 0):.0f} img/s -> {ratio:.2f}x", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo model only, fewer runs")
    args = parser.parse_args()
    from edgexfer.bench.sweep import SweepConfig

    config = SweepConfig(devices=["cpu"], batch_sizes=[1, 8, 32], runs=30 if args.quick else 60,
                         seconds=1.0 if args.quick else 2.0, warmup=3)
    rows = []
    for label, make in list(MODELS.items())[: 1 if args.quick else None]:
        rows += evaluate_model(label, make(), replace(config))
    path = write_result("auto_vs_best", {"goal_ratio_min": GOAL, "rows": rows,
                                         "goal_met": all(r["goal_met"] for r in rows)})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

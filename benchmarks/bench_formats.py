"""Formats x backends x batch sizes on the demo bundle, with accuracy on the demo's held-out test images.

The demo model is what `make demo` builds: builtin:textures as an image folder, trained with the defaults
(ImageNet EfficientNet-Lite0, 224 px), exported to every format (benchmarks/_common.demo_bundle). Runs
`edgexfer bench` (one process per cell) at batch 1 and 32 and stores the cells in
benchmarks/results/formats.json (the full per-cell files go to benchmarks/.work/formats/). Goal (issue 13):
LiteRT full-int8 at 224 px, batch-1 p50 <= 4 ms. The load average before and after and the CPU other processes
used meanwhile are recorded (_common.MachineLoad; run it on a quiet machine: other work moves every number).

    .venv/bin/python benchmarks/bench_formats.py
"""
from __future__ import annotations

from _common import WORK, MachineLoad, demo_bundle, demo_images, demo_run_dir, run_summary, write_result

GOAL = {"artifact": "tflite-int8", "backend": "litert", "batch_size": 1, "p50_ms_max": 4.0}


def int8_goal(cells: list[dict]) -> dict:
    """The LiteRT full-int8 batch-1 p50 against GOAL."""
    found = [c for c in cells if c["status"] == "ok" and c["artifact"] == GOAL["artifact"]
             and c["backend"] == GOAL["backend"] and c["batch_size"] == GOAL["batch_size"]]
    p50 = found[0]["latency"]["p50_ms"] if found else None
    return {**GOAL, "p50_ms": p50, "met": p50 is not None and p50 <= GOAL["p50_ms_max"]}


def main() -> None:
    from edgexfer.bench import api
    from edgexfer.bench.sweep import SweepConfig

    bundle = demo_bundle()
    config = SweepConfig(devices=["cpu"], batch_sizes=[1, 32], runs=200, seconds=2.0, warmup=10)
    with MachineLoad() as load:
        result = api.bench(bundle, config, data=str(demo_images()), out=WORK / "formats")
    print(result.table)
    res = result.results
    goal = int8_goal(res["cells"])
    path = write_result("formats", {"model": res["model"], "run": run_summary(demo_run_dir()), "config": res["config"], "cells": res["cells"],
                                    "goal": goal, **load.record})
    print(f"LiteRT full-int8 batch-1 p50 {goal['p50_ms']} ms (goal <= {GOAL['p50_ms_max']}): {goal['met']}\n-> {path}")


if __name__ == "__main__":
    main()

"""Formats x backends x batch sizes on the demo bundle, with accuracy on the held-out digits.

Runs `edgexfer bench` (one process per cell) on the demo bundle and stores the cells in
benchmarks/results/formats.json (the full per-cell files go to benchmarks/.work/formats/).

    .venv/bin/python benchmarks/bench_formats.py
"""
from __future__ import annotations

from _common import WORK, demo_bundle, write_result


def main() -> None:
    from edgexfer.bench import api
    from edgexfer.bench.sweep import SweepConfig

    bundle = demo_bundle()
    config = SweepConfig(devices=["cpu"], batch_sizes=[1, 8, 32], runs=200, seconds=2.0, warmup=10)
    result = api.bench(bundle, config, data="builtin:uci_digits", out=WORK / "formats")
    print(result.table)
    res = result.results
    path = write_result("formats", {"model": res["model"], "config": res["config"], "cells": res["cells"]})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

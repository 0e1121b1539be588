"""Export wall time and peak memory: every format + parity for the demo model.

Goal (issue 13): all 7 artifacts plus parity for the demo model (what `make demo` trains: ImageNet
EfficientNet-Lite0 at 224x224 on builtin:textures written as an image folder, benchmarks/_common.demo_run_dir)
in <= 150 s and <= 4 GB peak RSS, with the default number of conversions at once.

The export runs in a fresh measuring process (so training never pollutes the numbers); a sampler
thread sums the RSS of that process and all its conversion children every 50 ms (the peak of the
whole tree, what a machine must hold at once); each child also reports its own ru_maxrss, and
RUSAGE_CHILDREN gives the largest child. The load average and the CPU other processes used during the
measurements are recorded (_common.MachineLoad). Results: benchmarks/results/export.json.

    .venv/bin/python benchmarks/bench_export.py [--run-dir RUN] [--parallel 1 2] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import MachineLoad, demo_run_dir, run_summary, write_result

GOAL_SECONDS, GOAL_RSS_MB = 150.0, 4096.0


def _tree_rss_mb(proc) -> float:
    import psutil

    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


def measure(run_dir: str, parallel: int) -> dict:
    """Runs inside the measuring process: one export of every installed format, timed and sampled."""
    import psutil

    from edgexfer.export import export

    me, peak, stop = psutil.Process(), [0.0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _tree_rss_mb(me))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = Path(tempfile.mkdtemp(prefix="bench-export-")) / "bundle"
    started = time.perf_counter()
    result = export(run_dir, out, parallel=parallel)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    prov = result.manifest.provenance
    return {
        "seconds": round(seconds, 2), "parallel": parallel,
        "peak_tree_rss_mb": round(peak[0], 1),
        "parent_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "largest_child_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "children": prov["export"]["children"],
        "artifacts": {n: {"status": a.status, "size_bytes": a.size_bytes, "precision": a.precision,
                          "convert_seconds": a.details.get("convert_seconds"),
                          "metrics": a.parity.metrics if a.parity is not None else None,
                          "gate": a.parity.gate.to_dict() if a.parity is not None else None,
                          "rung": a.details.get("rung")}
                      for n, a in result.manifest.artifacts.items()},
        "reference": prov["parity_reference"], "table": result.table(), "bundle": str(result.bundle),
    }


def measure_in_fresh_process(run_dir: Path, parallel: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--measure", str(run_dir), str(parallel)],
                          capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"measurement failed:\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    print(f"parallel={parallel}: {res['seconds']:.1f} s, peak tree RSS {res['peak_tree_rss_mb']:.0f} MB "
          f"(largest child {res['largest_child_rss_mb']:.0f} MB)\n{res['table']}\n", flush=True)
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", help="An existing run dir (default: the demo run, trained if missing).")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # internal: RUN_DIR PARALLEL
    args = parser.parse_args()
    if args.measure:
        print("RESULT " + json.dumps(measure(args.measure[0], int(args.measure[1]))))
        return
    run_dir = Path(args.run_dir) if args.run_dir else demo_run_dir()
    with MachineLoad() as load:
        runs = [measure_in_fresh_process(run_dir, parallel) for parallel in args.parallel for _ in range(args.repeat)]
    from edgexfer.export.pipeline import auto_parallel

    best = min(runs, key=lambda r: r["seconds"])
    default = auto_parallel()
    judged = [r for r in runs if r["parallel"] == default] or runs
    payload = {"goal": {"seconds": GOAL_SECONDS, "peak_rss_mb": GOAL_RSS_MB}, "default_parallel": default,
               "met": all(r["seconds"] <= GOAL_SECONDS and r["peak_tree_rss_mb"] <= GOAL_RSS_MB for r in judged),
               "model": run_summary(run_dir), "best_seconds": best["seconds"], "runs": runs, **load.record}
    print(f"goal met with the default parallel={default}: {payload['met']}\n-> {write_result('export', payload)}")


if __name__ == "__main__":
    main()

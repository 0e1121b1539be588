"""`make demo` minus set-up: the wall time of each of its commands and of all of them.

The commands are read from the Makefile's `demo` target (benchmarks/_common.demo_steps: data export of
builtin:textures as an image folder, train with the defaults, export every format, predict, bench) and run in
a temporary directory with the venv's `edgexfer` script, as make runs them; the set-up (`make setup`, i.e.
the venv and the pip install, and the `rm -rf`) is not timed. By default the edgexfer cache
($EDGEXFER_CACHE_DIR) is a fresh empty folder, so the one-time conversion of the offline EfficientNet-Lite0
weights is included, as on a user's first run; --warm-cache uses the normal cache instead.
Goal (issue 13): <= 5 minutes on 2 cores. The load average and the CPU other processes used meanwhile are
recorded (_common.MachineLoad).

    .venv/bin/python benchmarks/bench_demo.py [--warm-cache]   # writes benchmarks/results/demo.json
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import MachineLoad, demo_steps, write_result

GOAL_SECONDS = 300.0


def edgexfer_script() -> list[str]:
    """The venv's console script, as the Makefile's $(EDGEXFER); `python -m edgexfer` when there is none."""
    script = Path(sys.executable).parent / "edgexfer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "edgexfer"]


def run_steps(root: Path, env: dict[str, str]) -> list[dict]:
    steps, cli = [], edgexfer_script()
    for name, argv in demo_steps(root, cli):
        print("+", " ".join(argv), flush=True)
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"{name} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        print(f"  {name}: {seconds:.1f} s", flush=True)
        steps.append({"step": name, "seconds": round(seconds, 2),
                      "command": " ".join(a.replace(str(root), "$(DEMO)") for a in argv[len(cli):])})
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-cache", action="store_true", help="use the normal edgexfer cache")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgexfer-demo-") as tmp:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        if not args.warm_cache:
            env["EDGEXFER_CACHE_DIR"] = str(Path(tmp) / "cache")
        with MachineLoad() as load:
            steps = run_steps(Path(tmp) / "demo", env)
    total = sum(s["seconds"] for s in steps)
    payload = {"steps": steps, "total_seconds": round(total, 2), "fresh_cache": not args.warm_cache,
               "goal": {"seconds": GOAL_SECONDS}, "goal_met": total <= GOAL_SECONDS, **load.record}
    print(f"total {total:.1f} s (goal <= {GOAL_SECONDS:.0f} s): {payload['goal_met']}")
    print(f"-> {write_result('demo', payload)}")


if __name__ == "__main__":
    main()

"""Cold start: a fresh process imports the runtime, loads the digits bundle and makes its first prediction.

Goal (runtime issue): at most 0.5 s and 150 MB peak RSS with onnxruntime. Each backend is measured in its
own fresh interpreter, several times; the median is reported. The bundle is the digits model
(digits_mnv3s@32 on builtin:uci_digits, benchmarks/_common.digits_bundle: what the demo was before
efficientnet_lite0 on builtin:textures), so the results stay comparable with the earlier ones.

    .venv/bin/python benchmarks/bench_cold_start.py     # writes benchmarks/results/cold_start.json
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys

from _common import DIGITS_LABEL, digits_bundle, write_result

PROBE = r"""
import time, json, sys
t0 = time.perf_counter()
import numpy as np
from edgexfer import runtime
t1 = time.perf_counter()
model = runtime.load(sys.argv[1], format=sys.argv[2], backend=sys.argv[3], device="cpu")
t2 = time.perf_counter()
x = np.zeros((1, *model.input_spec.shape), np.uint8)
model.predict(x)
t3 = time.perf_counter()
from edgexfer.bench.cell import peak_rss_mb  # after the timed part: it is not part of a cold start
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "total_s": t3 - t0,
                  "peak_rss_mb": peak_rss_mb(),
                  "tensorflow_imported": any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)}))
"""

CASES = [("onnx", "onnxruntime"), ("openvino", "openvino"), ("tflite", "litert")]


def measure(bundle, artifact: str, backend: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        wall0 = __import__("time").perf_counter()
        out = subprocess.run([sys.executable, "-c", PROBE, str(bundle), artifact, backend], capture_output=True,
                             text=True, check=True).stdout
        wall = __import__("time").perf_counter() - wall0
        runs.append({**json.loads(out.strip().splitlines()[-1]), "process_wall_s": wall})
    keys = ("import_s", "load_s", "first_predict_s", "total_s", "peak_rss_mb", "process_wall_s")
    return {"artifact": artifact, "backend": backend, "repeats": repeats,
            **{k: statistics.median(r[k] for r in runs) for k in keys},
            "tensorflow_imported": any(r["tensorflow_imported"] for r in runs)}


def main() -> None:
    bundle = digits_bundle()
    rows = [measure(bundle, a, b, repeats=7) for a, b in CASES]
    ort = rows[0]
    goal = {"total_s_max": 0.5, "peak_rss_mb_max": 150}
    met = ort["total_s"] <= goal["total_s_max"] and ort["peak_rss_mb"] <= goal["peak_rss_mb_max"]
    path = write_result("cold_start", {"model": DIGITS_LABEL, "bundle": str(bundle), "rows": rows, "goal": goal, "goal_met": met})
    for r in rows:
        print(f"{r['artifact']:>10} {r['backend']:>12}: import {r['import_s']:.3f}s load {r['load_s']:.3f}s "
              f"first {r['first_predict_s'] * 1e3:.1f}ms total {r['total_s']:.3f}s peak {r['peak_rss_mb']:.0f} MB")
    print(f"goal (onnxruntime <= 0.5 s and 150 MB): {'met' if met else 'NOT met'} -> {path}")


if __name__ == "__main__":
    main()

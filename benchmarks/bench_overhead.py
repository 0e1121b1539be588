"""Runtime overhead: edgexfer's Model.predict against calling the engine directly, side by side.

Same artifact, same thread count, same input, alternating rounds so drift hits both sides. The raw side is
the plainest correct engine call (ORT session.run; an OpenVINO InferRequest compiled with the same f32
LATENCY settings; a LiteRT interpreter resized to the batch), fed an input already in the engine's dtype
(int8 quantized beforehand for int8 artifacts), so every conversion the runtime does counts as overhead.
The runtime side gets uint8 images, as an app would, and for OpenVINO the same LATENCY configuration as
the raw side (its THROUGHPUT path for large batches is a different engine setting, compared by
`edgexfer bench`, not overhead).
Goal (runtime issue): at most 1.05x at batch 1 and 1.02x at batch 32, for every backend.

    .venv/bin/python benchmarks/bench_overhead.py     # writes benchmarks/results/overhead.json
"""
from __future__ import annotations

import os
import statistics
import time

import numpy as np

from _common import demo_bundle, model_bundle, pairs, write_result

THREADS = os.cpu_count() or 1
GOALS = {1: 1.05, 32: 1.02}


def raw_onnxruntime(path: str, batch: int, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})[0], np.float32


def raw_openvino(path: str, batch: int, threads: int):
    import openvino as ov

    core = ov.Core()
    model = core.read_model(path)
    model.reshape({model.inputs[0]: ov.PartialShape([batch, *model.inputs[0].partial_shape[1:]])})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                                 "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()

    def call(x):
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()

    return call, np.float32


def raw_litert(path: str, batch: int, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]])
    interp.allocate_tensors()

    def call(x):
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return call, inp["dtype"], inp["quantization"]


RAW = {"onnxruntime": raw_onnxruntime, "openvino": raw_openvino, "litert": raw_litert}


def engine_input(x: np.ndarray, dtype, quant=None) -> np.ndarray:
    if np.issubdtype(dtype, np.integer) and quant and quant[0]:
        info = np.iinfo(dtype)
        return np.clip(np.round(x / quant[0] + quant[1]), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def timed(fn, x, calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter_ns() - t0) / calls / 1e6


def compare(bundle, artifact: str, backend: str, batch: int, rounds: int = 25, model_name: str = "") -> dict:
    from edgexfer import runtime
    from edgexfer.manifest import Manifest

    path = str(bundle / Manifest.load(bundle).artifact(artifact).main_file)
    same_engine_work = {"performance_hint": "latency"} if backend == "openvino" else {}
    model = runtime.load(bundle, format=artifact, backend=backend, device="cpu", threads=THREADS,
                         options=same_engine_work)
    raw_call, *engine = RAW[backend](path, batch, THREADS)
    images = np.random.default_rng(0).integers(0, 256, (batch, *model.input_spec.shape), dtype=np.uint8)
    x_raw = engine_input(images.astype(np.float32), *engine)
    calls = max(3, int(0.05 / max(timed(raw_call, x_raw, 3) / 1e3, 1e-6)))
    for _ in range(3):
        model.predict(images), raw_call(x_raw)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(timed(model.predict, images, calls))
        theirs.append(timed(raw_call, x_raw, calls))
    model.close()
    ratio = statistics.median(ours) / statistics.median(theirs)
    return {"model": model_name, "artifact": artifact, "backend": backend, "batch": batch, "threads": THREADS,
            "runtime_ms": statistics.median(ours), "raw_ms": statistics.median(theirs), "ratio": ratio,
            "goal": GOALS[batch], "goal_met": ratio <= GOALS[batch], "calls_per_round": calls, "rounds": rounds}


MODELS = {  # the demo model (engine calls of ~0.1 ms) and a MobileNetV3Small-class model at full size
    "demo (digits_mnv3s@32)": demo_bundle,
    "mobilenet_v3_small@224": lambda: model_bundle("mnv3s224", "mobilenet_v3_small", 224),
}


def main() -> None:
    rows = []
    for label, make in MODELS.items():
        bundle = make()
        for artifact, backend in pairs(bundle):
            for batch in GOALS:
                row = compare(bundle, artifact, backend, batch, model_name=label)
                rows.append(row)
                print(f"{label:>24} {artifact:>14} {backend:>12} b{batch:<3} runtime {row['runtime_ms']:.4f} ms  raw "
                      f"{row['raw_ms']:.4f} ms  ratio {row['ratio']:.3f}  {'ok' if row['goal_met'] else 'OVER'}",
                      flush=True)
    path = write_result("overhead", {"rows": rows, "goal_met": all(r["goal_met"] for r in rows)})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

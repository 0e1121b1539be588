"""Runtime overhead: edgexfer's Model.predict against calling the engine directly, side by side.

Same artifact, same thread count, same input. Per cell:
- side by side: thousands of calls alternating call by call (rotating order) between Model.predict, a raw
  engine and a SECOND raw engine; the ratio is the median of ours over the median of the raw engine's;
- A/A control: the second raw engine over the first, identical work: how far apart two equal things come
  out on this machine (the noise floor a ratio must be read against);
- block ratios: the ratio within 5 consecutive blocks of calls (its stability);
- isolated: Model.predict with only the engine call replaced by returning its output, i.e. everything
  edgexfer adds, free of engine noise; raw + that cost gives the ratio the wrapper alone implies.
The raw side is the plainest correct engine call (ORT session.run; an OpenVINO InferRequest compiled with the
same f32 LATENCY settings; a LiteRT interpreter resized to the batch), fed an input already in the engine's
dtype (int8 quantized beforehand for int8 artifacts), so every conversion the runtime does counts as overhead.
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

from _common import DIGITS_LABEL, digits_bundle, model_bundle, pairs, write_result

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


def interleaved(sides: list[tuple], calls: int) -> list[list[int]]:
    """Per-call times (ns) of every side, alternating call by call in a rotating order, so that drift,
    frequency changes and neighbours on the VM hit all sides alike."""
    times: list[list[int]] = [[] for _ in sides]
    order = list(range(len(sides)))
    for i in range(calls):
        for k in order[i % len(order):] + order[:i % len(order)]:
            fn, x = sides[k]
            t0 = time.perf_counter_ns()
            fn(x)
            times[k].append(time.perf_counter_ns() - t0)
    return times


def wrapper_cost_ms(model, images: np.ndarray, calls: int) -> float:
    """Median time of Model.predict with only the engine's own call replaced by returning its output: all
    the work edgexfer adds (checks, conversion, quantization, dispatch, dequantization), without engine noise.
    For LiteRT the stubbed call is `invoke` + `get_tensor`, so writing the input into the interpreter (which
    the raw side pays inside `set_tensor`) counts against us here: an upper bound."""
    runner = model._runner  # noqa: SLF001 - a benchmark may look inside
    hook = "_invoke" if hasattr(runner, "_invoke") else "_infer_impl"
    if hook == "_invoke":
        interp = runner._interpreter_for(len(images))  # noqa: SLF001
        interp.set_tensor(runner._input_index, model._engine_input(images))  # noqa: SLF001
        canned = runner._invoke(interp)  # noqa: SLF001
    else:
        canned = runner._infer_impl(model._engine_input(images))  # noqa: SLF001
    setattr(runner, hook, lambda *args: canned)
    try:
        for _ in range(50):
            model.predict(images)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter_ns()
            model.predict(images)
            times.append(time.perf_counter_ns() - t0)
    finally:
        delattr(runner, hook)  # back to the class method
    return statistics.median(times) / 1e6


def block_ratios(ours: list[int], raw: list[int], blocks: int = 5) -> list[float]:
    """Median ratio within each consecutive block of calls: the spread shows how stable the result is."""
    size = len(ours) // blocks
    return [statistics.median(ours[i * size:(i + 1) * size]) / statistics.median(raw[i * size:(i + 1) * size])
            for i in range(blocks)]


def compare(bundle, artifact: str, backend: str, batch: int, seconds: float = 12.0, model_name: str = "") -> dict:
    from edgexfer import runtime
    from edgexfer.manifest import Manifest

    path = str(bundle / Manifest.load(bundle).artifact(artifact).main_file)
    same_engine_work = {"performance_hint": "latency"} if backend == "openvino" else {}
    model = runtime.load(bundle, format=artifact, backend=backend, device="cpu", threads=THREADS,
                         options=same_engine_work)
    raw_call, *engine = RAW[backend](path, batch, THREADS)
    control_call = RAW[backend](path, batch, THREADS)[0]  # a second raw engine: the A/A noise floor
    images = np.random.default_rng(0).integers(0, 256, (batch, *model.input_spec.shape), dtype=np.uint8)
    x_raw = engine_input(images.astype(np.float32), *engine)
    for _ in range(20):  # warm-up: allocations, static-shape compiles, thread pools
        model.predict(images), raw_call(x_raw), control_call(x_raw)
    t0 = time.perf_counter()
    raw_call(x_raw)
    per_call = max(time.perf_counter() - t0, 1e-5)
    calls = int(min(20000, max(100, seconds / 3 / per_call)))
    ours, theirs, control = interleaved([(model.predict, images), (raw_call, x_raw), (control_call, x_raw)], calls)
    wrapper_ms = wrapper_cost_ms(model, images, min(calls, 2000))
    model.close()
    runtime_ms, raw_ms = statistics.median(ours) / 1e6, statistics.median(theirs) / 1e6
    ratio = runtime_ms / raw_ms
    aa_ratio = statistics.median(control) / 1e6 / raw_ms
    isolated = (raw_ms + wrapper_ms) / raw_ms
    blocks = block_ratios(ours, theirs)
    return {"model": model_name, "artifact": artifact, "backend": backend, "batch": batch, "threads": THREADS,
            "runtime_ms": runtime_ms, "raw_ms": raw_ms, "ratio": ratio, "block_ratios": blocks, "aa_ratio": aa_ratio,
            "wrapper_ms": wrapper_ms, "isolated_ratio": isolated, "goal": GOALS[batch],
            "goal_met": ratio <= GOALS[batch], "isolated_goal_met": isolated <= GOALS[batch], "calls": calls}


MODELS = {  # the digits model (engine calls of ~0.1 ms) and a MobileNetV3Small-class model at full size
    DIGITS_LABEL: digits_bundle,
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
                      f"{row['raw_ms']:.4f} ms  ratio {row['ratio']:.3f} (blocks {min(row['block_ratios']):.3f}-"
                      f"{max(row['block_ratios']):.3f}, A/A {row['aa_ratio']:.3f})  wrapper {1000 * row['wrapper_ms']:.1f} us -> "
                      f"{row['isolated_ratio']:.3f}  {'ok' if row['goal_met'] else 'OVER'}", flush=True)
    path = write_result("overhead", {"rows": rows, "goal_met": all(r["goal_met"] for r in rows)})
    print(f"-> {path}")


if __name__ == "__main__":
    main()

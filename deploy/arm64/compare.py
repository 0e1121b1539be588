"""Compare edgexfer's runtime on x86 with the same runtime on aarch64 (emulated): the comparer of check.sh.

    compare.py reference --bundle B --images DIR --formats tflite,tflite-int8,onnx --out x86.npz   # on x86
    compare.py run --bundle B --inputs x86.npz --out arm64.npz                 # inside the aarch64 userland
    compare.py check --reference x86.npz --emulated arm64.npz --out arm64_check.json               # on x86
    compare.py cpuinfo                                     # an ARM-looking /proc/cpuinfo for onnxruntime

Why the inputs travel in the .npz: both sides must classify exactly the same uint8 pixels, so decoding and
resizing (PIL versions may differ) cannot explain a difference. Needs only numpy and edgexfer.runtime, so
it runs in the runtime-only install inside the emulated userland.

Gates (issue 6), judged by edgexfer.parity (the comparator export uses): fp32 max |diff| within the export's fp32
gate (1e-4); int8 max |diff| <= one output quantization step (the int8 outputs are compared after
dequantization); top-1 identical on every image.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from edgexfer.parity import Gate

BACKEND = {"tflite": "litert", "tflite-fp16": "litert", "tflite-int8": "litert", "onnx": "onnxruntime",
           "openvino": "openvino"}
ENGINES = ("edgexfer", "numpy", "onnxruntime", "openvino", "ai-edge-litert", "pillow", "tensorflow")
CORTEX_A72 = """processor\t: {i}
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3
"""


# -- both sides ------------------------------------------------------------------------------------------
def predict_all(bundle: str, formats: list[str], inputs: np.ndarray) -> tuple[dict[str, np.ndarray], dict]:
    """Probabilities per artifact, and what really ran (backend, device, precision, seconds)."""
    from edgexfer.runtime import load

    probs, ran = {}, {}
    for name in formats:
        start = time.perf_counter()
        with load(bundle, format=name, backend=BACKEND.get(name, "auto"), threads=1) as model:
            probs[name] = model.predict(inputs, batch_size=32)
            quant = model.artifact.output_quant if model.artifact else None
            ran[name] = {"backend": model.backend, "device": model.device, "precision": model.precision,
                         "output_scale": quant.scale if quant else None,
                         "seconds": round(time.perf_counter() - start, 2)}
    return probs, ran


def environment() -> dict:
    """What this side is: the facts that make an emulated run comparable (or not) with a real board."""
    from edgexfer._versions import installed_versions

    return {"machine": platform.machine(), "uname": " ".join(platform.uname()), "python": platform.python_version(),
            "libc": " ".join(platform.libc_ver()), "versions": installed_versions(ENGINES),
            "tensorflow_imported": "tensorflow" in sys.modules}


def save(path: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
    np.savez_compressed(path, **arrays, meta=np.array(json.dumps(meta)))


def load_npz(path: str) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
        return arrays, json.loads(str(data["meta"]))


# -- x86: the reference ------------------------------------------------------------------------------------
def read_images(folder: Path, bundle: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """uint8 NHWC at the model's size, the true class index per image (from the sub-folder), the paths."""
    from edgexfer.runtime import load
    from edgexfer.runtime.inputs import IMAGE_SUFFIXES, load_image

    with load(bundle, verify=False) as model:
        spec, labels = model.input_spec, model.labels
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"Expected images under {folder}. Received: none.")
    x = np.stack([load_image(p, spec) for p in files])
    y = np.array([labels.index(p.parent.name) if p.parent.name in labels else -1 for p in files])
    return x, y, [str(p.relative_to(folder)) for p in files]


def cmd_reference(args: argparse.Namespace) -> None:
    formats = args.formats.split(",")
    x, y, files = read_images(Path(args.images), args.bundle)
    probs, ran = predict_all(args.bundle, formats, x)
    save(args.out, {"inputs": x, "labels": y, **{f"probs:{k}": v for k, v in probs.items()}},
         {"formats": formats, "ran": ran, "files": files, "environment": environment()})
    print(f"reference: {len(x)} images, {', '.join(formats)} on {platform.machine()}", file=sys.stderr)


# -- aarch64: the emulated run -------------------------------------------------------------------------------
def emulation() -> dict:
    """How the emulated CPU looks from inside: each of these changed int8 results when it was wrong."""
    def first(path: str, key: str = "") -> str | None:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            return None
        return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), None) if key else \
            (lines[0] if lines else "")

    return {"qemu_cpu": os.environ.get("QEMU_CPU"), "cpuinfo_cpu_part": first("/proc/cpuinfo", "CPU part"),
            "sys_cpu_possible": first("/sys/devices/system/cpu/possible")}


def cmd_run(args: argparse.Namespace) -> None:
    ref, meta = load_npz(args.inputs)
    env = {**environment(), "emulation": emulation()}
    print(f"emulated: {env['machine']}, Python {env['python']}, {env['versions']}", file=sys.stderr)
    probs, ran = predict_all(args.bundle, meta["formats"], ref["inputs"])
    env["tensorflow_imported"] = "tensorflow" in sys.modules
    save(args.out, {f"probs:{k}": v for k, v in probs.items()}, {"ran": ran, "environment": env})


# -- x86: the verdict ----------------------------------------------------------------------------------------
def tolerance_for(scale: float | None) -> float:
    """max |diff| allowed: the fp32 export gate's, or (int8) one output quantization step."""
    from edgexfer.export.formats import FP32_GATE

    return scale if scale else FP32_GATE.max_abs_diff


def gate_for(scale: float | None) -> "Gate":
    """The ARM64 gate in the shared comparator's terms: max |diff| within `tolerance_for` (plus float slack for
    a difference of exactly one step), and top-1 identical on every image (agreement 100%, no near ties)."""
    from edgexfer.parity import Gate

    return Gate(max_abs_diff=tolerance_for(scale) * (1 + 1e-6), min_agreement=100.0)


def agreement(ref: np.ndarray, emu: np.ndarray, labels: np.ndarray, scale: float | None) -> dict:
    """The numbers behind one artifact's verdict (int8: scale is the output quantization step), judged by
    edgexfer.parity's comparator, the one export and `edgexfer info` use."""
    from edgexfer.parity import compare, top1_accuracy

    gate = gate_for(scale)
    known = labels >= 0
    result = compare(ref, emu, np.where(known, labels, ref.argmax(1)), gate)
    m = result.metrics
    row = {"n": m["n"], "max_abs_diff": m["max_abs_diff"], "tolerance": tolerance_for(scale),
           "top1_agreement_pct": round(m["agreement"], 4), "top1_differences": m["flips"],
           "accuracy_x86_pct": round(100.0 * top1_accuracy(ref[known], labels[known]), 4) if known.any() else None,
           "accuracy_arm64_pct": round(100.0 * top1_accuracy(emu[known], labels[known]), 4) if known.any() else None}
    if scale:
        row["max_diff_in_steps"] = round(m["max_abs_diff"] / scale, 4)
    row.update(passed=result.passed, reason=result.reason, checks=[c.to_dict() for c in result.checks])
    return row


def cmd_check(args: argparse.Namespace) -> int:
    from edgexfer.machine import machine_record

    ref, ref_meta = load_npz(args.reference)
    emu, emu_meta = load_npz(args.emulated)
    results = {}
    for name in ref_meta["formats"]:
        scale = ref_meta["ran"][name]["output_scale"] if ref_meta["ran"][name]["precision"] == "int8" else None
        results[name] = agreement(ref[f"probs:{name}"], emu[f"probs:{name}"], ref["labels"], scale)
        results[name].update(x86=ref_meta["ran"][name], arm64=emu_meta["ran"][name])
    passed = all(r["passed"] for r in results.values())
    report = {"what": "edgexfer.runtime on aarch64 (qemu-user, QEMU_CPU=cortex-a72) against x86, same inputs",
              "passed": passed, "gates": {"fp32_max_abs_diff": tolerance_for(None),
                                          "int8_max_abs_diff": "one output quantization step",
                                          "top1": "identical on every image"},
              "images": len(ref["inputs"]), "results": results, "host": machine_record(),
              "reference_environment": ref_meta["environment"], "emulated": emu_meta["environment"],
              "note": "emulated latency (the seconds fields) is 100-200x native and means nothing; agreement does",
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{name:12s} max|diff| {r['max_abs_diff']:.2e} (<= {r['tolerance']:.2e})  top-1 agreement "
              f"{r['top1_agreement_pct']:.2f}%  {'passed' if r['passed'] else 'FAILED'}")
    print(f"{'passed' if passed else 'FAILED'}: wrote {args.out}")
    return 0 if passed else 1


def cmd_cpuinfo(_args: argparse.Namespace) -> None:
    print("\n".join(CORTEX_A72.format(i=i) for i in range(4)), end="")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reference")
    r.add_argument("--bundle", required=True)
    r.add_argument("--images", required=True)
    r.add_argument("--formats", default="tflite,tflite-int8,onnx")
    r.add_argument("--out", required=True)
    e = sub.add_parser("run")
    e.add_argument("--bundle", required=True)
    e.add_argument("--inputs", required=True)
    e.add_argument("--out", required=True)
    c = sub.add_parser("check")
    c.add_argument("--reference", required=True)
    c.add_argument("--emulated", required=True)
    c.add_argument("--out", required=True)
    sub.add_parser("cpuinfo")
    args = p.parse_args(argv)
    handler = {"reference": cmd_reference, "run": cmd_run, "check": cmd_check, "cpuinfo": cmd_cpuinfo}[args.cmd]
    return handler(args) or 0


if __name__ == "__main__":
    sys.exit(main())

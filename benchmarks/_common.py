"""Shared helpers for the scripts in benchmarks/: result files with the machine record, the demo and digits bundles.

Every script writes benchmarks/results/<name>.json holding its numbers, the settings and
`edgexfer.machine.machine_record()`; benchmarks/readme_tables.py turns them into the README's tables.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORK = HERE / ".work"  # bundles and run dirs the scripts build (git-ignored)
EDGEXFER = [sys.executable, "-m", "edgexfer"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json with the machine record and a timestamp."""
    from edgexfer.machine import machine_record

    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_record(), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def free_ports(n: int) -> list[int]:
    """n TCP ports on localhost that are free right now (TF_CONFIG for a multi-worker cluster on one machine;
    bench_multiworker.py and tests/train use it)."""
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def run(cmd: list[str]) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def demo_steps(root: Path, edgexfer: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """The commands of the Makefile's `demo` target, read from the Makefile, with $(DEMO) -> `root` and
    $(EDGEXFER) -> `edgexfer` (default: this interpreter's `-m edgexfer`); the `rm -rf` set-up line is left
    out. Each as (subcommand, argv): data export, train, export, predict, bench."""
    import shlex

    lines, inside = [], False
    for line in (HERE.parent / "Makefile").read_text().splitlines():
        if line.startswith("demo:"):
            inside = True
        elif inside and line.startswith("\t"):
            lines.append(line.strip())
        elif inside:
            break
    cli = shlex.join(edgexfer or EDGEXFER)
    steps = []
    for line in lines:
        if line.startswith("rm "):
            continue
        argv = shlex.split(line.replace("$(EDGEXFER)", cli).replace("$(DEMO)", shlex.quote(str(root))))
        sub = argv[len(edgexfer or EDGEXFER):]
        steps.append((" ".join(sub[:2]) if sub[0] == "data" else sub[0], argv))
    if [name for name, _ in steps][:3] != ["data export", "train", "export"]:
        raise RuntimeError(f"Expected the Makefile's demo target to start with data export, train, export. "
                           f"Received: {lines}")
    return steps


def demo_run_dir(rebuild: bool = False) -> Path:
    """The demo run: builtin:textures written as an image folder, trained with `edgexfer train`'s defaults
    (efficientnet_lite0, ImageNet weights, 224 px), as `make demo` does; built once under benchmarks/.work/demo."""
    root = WORK / "demo"
    steps = dict(demo_steps(root))
    if rebuild or not (root / "images" / "test").is_dir():
        if (root / "images").exists():
            import shutil

            shutil.rmtree(root / "images")
        run(steps["data export"])
    if rebuild or not (root / "run" / "model.keras").exists():
        run(steps["train"])
    return root / "run"


def demo_images() -> Path:
    """The demo's image folder (train/ val/ test/ of builtin:textures), written by demo_run_dir."""
    return WORK / "demo" / "images"


def demo_bundle(rebuild: bool = False) -> Path:
    """The demo model (demo_run_dir) exported to every format with parity, built once."""
    run_dir, bundle = demo_run_dir(rebuild), WORK / "demo" / "bundle"
    if rebuild or not (bundle / "manifest.json").exists():
        run([*dict(demo_steps(WORK / "demo"))["export"], "--force"])
    return bundle


def run_summary(run_dir: Path) -> dict[str, Any]:
    """Backbone, input size, data and split sizes of a run (from its run.json), for a result file."""
    record = json.loads((Path(run_dir) / "run.json").read_text())
    source = str(record["data"].get("source"))
    if Path(source) == demo_images():
        source = "builtin:textures written as an image folder (`edgexfer data export`)"
    counts = record["data"].get("counts", {})
    return {"backbone": record["backbone"]["name"], "weights": record["backbone"].get("weights"),
            "image_size": record["input_shape"][0], "data": source, "classes": record["data"].get("class_names"),
            "train_images": counts.get("train"), "val_images": counts.get("val"), "test_images": counts.get("test"),
            "test_accuracy": record.get("metrics", {}).get("test_accuracy")}


DEMO_LABEL = "demo model (efficientnet_lite0@224, builtin:textures)"
DIGITS_LABEL = "digits model (digits_mnv3s@32)"


def digits_run_dir(rebuild: bool = False) -> Path:
    """The former demo: the shipped digits backbone (digits_mnv3s, 32 px) on builtin:uci_digits with AdaBN.
    What the runtime overhead / auto / cold start / Keras-vs-runtime results were measured on."""
    run_dir = WORK / "digits" / "run"
    if rebuild or not (run_dir / "model.keras").exists():
        run([*EDGEXFER, "train", "builtin:uci_digits", "--out", run_dir, "--backbone", "digits_mnv3s", "--epochs",
             "15", "--adapt-bn", "--quiet", "--force"])
    return run_dir


def digits_bundle(rebuild: bool = False) -> Path:
    """digits_run_dir exported to every format, built once under benchmarks/.work/digits."""
    run_dir, bundle = digits_run_dir(rebuild), WORK / "digits" / "bundle"
    if rebuild or not (bundle / "manifest.json").exists():
        run([*EDGEXFER, "export", run_dir, "--out", bundle, "--force"])
    return bundle


def load_average() -> dict[str, float]:
    """The 1/5/15-minute load averages (timing results record them: other work on the cores moves the numbers)."""
    one, five, fifteen = os.getloadavg()
    return {"load_average_1m": round(one, 2), "load_average_5m": round(five, 2), "load_average_15m": round(fifteen, 2)}


class MachineLoad:
    """What else ran on the machine during a timed block (`with MachineLoad() as load: ...; load.record`).

    record: the load averages before and after (the one after counts this benchmark's own processes too),
    and `other_cores`: the CPU time every process outside this one and its waited-for children used during
    the block, divided by the wall time (0: nothing else ran; 2: both cores busy with other work).
    """

    def __enter__(self) -> "MachineLoad":
        self.before, self._start = load_average(), self._snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._snapshot()
        wall, busy, steal, ours = (b - a for a, b in zip(self._start, end))
        self.record = {"load_average_1m": self.before["load_average_1m"], "load_before": self.before,
                       "load_after": load_average(), "wall_seconds": round(wall, 1),
                       "other_cores": round(max(0.0, busy - ours) / wall, 2) if wall > 0 else None,
                       "steal_cores": round(steal / wall, 2) if wall > 0 else None}

    @staticmethod
    def _snapshot() -> tuple[float, float, float, float]:
        import resource
        import time

        import psutil

        cpu = psutil.cpu_times()
        busy = sum(getattr(cpu, f) for f in ("user", "nice", "system", "irq", "softirq") if hasattr(cpu, f))
        ours = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                     resource.getrusage(resource.RUSAGE_CHILDREN)))
        for child in psutil.Process().children(recursive=True):
            try:
                t = child.cpu_times()
                ours += t.user + t.system
            except psutil.Error:
                continue
        return time.perf_counter(), busy, getattr(cpu, "steal", 0.0), ours


def pairs(bundle: Path) -> list[tuple[str, str]]:
    """(artifact, backend) for every passed artifact and every installed backend that runs it."""
    from edgexfer.manifest import Manifest
    from edgexfer.runtime import backends

    manifest = Manifest.load(bundle)
    return [(a.name, b) for a in manifest.passed_artifacts() for b in backends.backends_for(a.format, True)]


def model_bundle(name: str, backbone: str, size: int, weights: str = "none", epochs: int = 1,
                 formats: str | None = None, rebuild: bool = False) -> Path:
    """A bundle for `backbone` at `size` px built through the real CLI path (train on builtin:uci_digits,
    export). With weights="none" the backbone is random: fine for speed, meaningless for accuracy."""
    run_dir, bundle = WORK / name / "run", WORK / name / "bundle"
    if rebuild or not (run_dir / "model.keras").exists():
        run([*EDGEXFER, "train", "builtin:uci_digits", "--out", run_dir, "--backbone", backbone, "--weights",
             weights, "--image-size", size, "--epochs", epochs, "--quiet", "--force"])
    if rebuild or not (bundle / "manifest.json").exists():
        extra = ["--formats", formats] if formats else []
        run([*EDGEXFER, "export", run_dir, "--out", bundle, "--force", *extra])
    return bundle

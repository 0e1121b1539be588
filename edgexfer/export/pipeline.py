"""export(): run dir -> bundle. Orchestration only; converters, parity and the bundle live elsewhere.

1. validate the arguments and the run dir (cheap, before any heavy import)
2. rebuild the held-out test images and sample calibration images from run.json (edgexfer.data)
3. convert in subprocess batches (one per family; the Keras reference runs in the first batch)
4. parity: every artifact through edgexfer.runtime.load, one comparator, gates per format;
   tflite-int8 / openvino-int8 walk their fallback ladder when they miss the gate
5. reports + manifest, then the atomic rename. The bundle holds every artifact that converted, each
   marked passed or failed (the runtime refuses failed ones unless asked); an artifact that failed never
   costs the user the others. `strict=True` raises ParityError after the bundle is written.

`progress` (an edgexfer.progress callback) hears one Step per unit: the data, each artifact converted (as its
child records it), each parity check, each ladder rung, and the bundle written.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer import __version__
from edgexfer.errors import ParityError, UserError
from edgexfer.export import bundle as _bundle
from edgexfer.export.formats import FormatSpec, Gate, gates_for, resolve_formats
from edgexfer.export.parity import ParityResult, compare, format_markdown, format_table
from edgexfer.export.worker import Batch, raise_for, run_batches, run_chains
from edgexfer.manifest import Manifest
from edgexfer.progress import Callback, Tracker
from edgexfer.record import MODEL_FILE, RunRecord

INT8_IO = ("int8", "uint8")
FAMILY_ORDER = ("onnx", "tflite", "openvino")


@dataclass
class ExportResult:
    bundle: Path
    manifest: Manifest
    parity: dict[str, ParityResult]
    archive: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [name for name, res in self.parity.items() if not res]

    @property
    def ok(self) -> bool:
        return not self.failed

    def table(self) -> str:
        sizes = {n: a.size_bytes for n, a in self.manifest.artifacts.items()}
        return format_table(self.parity, sizes)


@dataclass
class _Context:
    record: RunRecord
    run_dir: Path
    root: Path  # the staging bundle
    work: Path  # scratch: npy files, job files, logs
    settings: dict[str, Any]
    gates: dict[str, Gate]
    name: str = ""
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    reference: np.ndarray | None = None
    children: list[dict[str, Any]] = field(default_factory=list)
    progress: Tracker = field(default_factory=Tracker)


def export(run_dir: str | Path, out: str | Path, *, formats: Any = None, calibration_samples: int = 300,
           int8_io: str = "int8", max_drop: float | None = None, strict: bool = False,
           force: bool = False, archive: bool = False, gates: dict[str, dict[str, Any]] | None = None,
           parity_samples: int | None = None, parallel: int | None = None,
           progress: Callback | None = None) -> ExportResult:
    """Export a training run to every requested format, check parity, and write the bundle atomically.

    progress: called with an edgexfer.progress.Step after each unit of work (see the module docstring)."""
    settings = _validate(calibration_samples, int8_io, max_drop, parity_samples, parallel)
    specs = resolve_formats(formats)
    gate_map = gates_for(specs, gates, max_drop)
    pretrained = pretrained_source(run_dir)
    if not pretrained:
        run_dir = Path(run_dir).resolve()
        record = open_run(run_dir)
    settings.update(formats=[s.name for s in specs], gates={n: g.to_dict() for n, g in gate_map.items()},
                    strict=bool(strict))
    started = time.perf_counter()
    tracker = Tracker(progress, total=2 * len(specs) + 2 + bool(pretrained))
    with _bundle.Staging(out, force=force, archive=archive) as staging:
        if pretrained:
            run_dir = materialise_pretrained(pretrained, staging.work)
            record = open_run(run_dir)
            tracker.step(f"{pretrained} built ({time.perf_counter() - started:.1f} s)")
        if record.training.get("label_source") == "reference":
            gate_map = gates_for(specs, gates, max_drop, labelled=False)
            settings["gates"] = {n: g.to_dict() for n, g in gate_map.items()}
        ctx = _Context(record, run_dir, staging.root, staging.work, settings, gate_map, staging.out.name,
                       progress=tracker)
        manifest, results = _build(ctx, specs)
        zip_path = staging.commit(manifest)
    timings = {"total_seconds": round(time.perf_counter() - started, 2)}
    tracker.step(f"bundle written to {staging.out} ({timings['total_seconds']:.1f} s in all)")
    result = ExportResult(staging.out, manifest, results, zip_path, timings)
    if strict and result.failed:
        raise ParityError(
            f"{len(result.failed)} artifact(s) failed parity or conversion: {', '.join(result.failed)} "
            f"(strict). The bundle {result.bundle} was written with them marked failed.\n" + result.table())
    return result


def open_run(run_dir: Path) -> RunRecord:
    """The run's record, after checking that it holds a model whose training finished."""
    record = RunRecord.load(run_dir)
    if not (run_dir / MODEL_FILE).is_file():
        raise UserError(f"Expected {MODEL_FILE} in the run directory {run_dir}. Re-run `edgexfer train`.")
    status = record.training.get("status")
    if status not in (None, "complete"):  # None: a run written by hand or by an older edgexfer
        raise UserError(f"Expected a run whose training finished. Received: {run_dir} with training status "
                        f"{status!r}. Continue it with `edgexfer train ... --resume` or train it again.")
    return record


def pretrained_source(run_dir: Any) -> str | None:
    """'pretrained:NAME' checked (before any heavy work), or None for a run directory."""
    from edgexfer.train.pretrained import is_pretrained, pretrained_name

    if not is_pretrained(str(run_dir)):
        return None
    pretrained_name(str(run_dir))
    return str(run_dir)


def materialise_pretrained(source: str, work: Path) -> Path:
    """Build the pretrained classifier's run directory in a conversion child (Keras lives there)."""
    from edgexfer.train.pretrained import pretrained_name

    run_dir = work / "pretrained-run"
    job = {"name": "pretrained", "converter": "edgexfer.train.pretrained:materialise", "out_dir": str(run_dir),
           "options": {"name": pretrained_name(source)}}
    raise_for(source, run_batches([Batch("pretrained", [job], work)])["pretrained"])
    return run_dir


def _validate(calibration_samples: int, int8_io: str, max_drop: float | None, parity_samples: int | None,
              parallel: int) -> dict[str, Any]:
    if int8_io not in INT8_IO:
        raise UserError(f"Expected int8_io among {list(INT8_IO)}. Received: {int8_io!r}.")
    if not isinstance(calibration_samples, int) or calibration_samples < 1:
        raise UserError(f"Expected calibration_samples >= 1. Received: {calibration_samples!r}.")
    if max_drop is not None and not (0 <= float(max_drop) <= 100):
        raise UserError(f"Expected max_drop in accuracy points, 0..100. Received: {max_drop!r}.")
    if parity_samples is not None and (not isinstance(parity_samples, int) or parity_samples < 1):
        raise UserError(f"Expected parity_samples >= 1 or None. Received: {parity_samples!r}.")
    if parallel is None:
        parallel = auto_parallel()
    if not isinstance(parallel, int) or parallel < 1:
        raise UserError(f"Expected parallel >= 1 or None (automatic). Received: {parallel!r}.")
    return {"calibration_samples": calibration_samples, "int8_io": int8_io,
            "max_drop": None if max_drop is None else float(max_drop), "parity_samples": parity_samples,
            "parallel": parallel}


def auto_parallel(min_free_gb: float = 8.0) -> int:
    """2 conversion children at once when there are 2+ cores and 8 GB available (tf2onnx can peak at
    ~6 GB on ResNet50 beside a ~1-2 GB TFLite child), else 1."""
    available_kb = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            available_kb = next((int(line.split()[1]) for line in fh if line.startswith("MemAvailable:")), 0)
    except OSError:
        pass
    return 2 if (os.cpu_count() or 1) >= 2 and available_kb >= min_free_gb * 2**20 else 1


def _build(ctx: _Context, specs: list[FormatSpec]) -> tuple[Manifest, dict[str, ParityResult]]:
    from edgexfer.export import guardrail

    paths = _prepare_data(ctx, specs)
    ctx.progress.step(_data_text(ctx))
    outcomes = _convert(ctx, specs, paths)
    raise_for("reference (Keras predictions for parity)", outcomes.pop("reference"))
    if not any(outcomes[s.name]["ok"] for s in specs):  # nothing to keep: the first child's own error
        raise_for(specs[0].name, outcomes[specs[0].name])
    ctx.reference = np.load(paths["reference"])
    if ctx.record.training.get("label_source") == "reference":  # no labelled test set (pretrained:NAME)
        ctx.y_test = ctx.reference.argmax(1)
    manifest = _bundle.make_manifest(ctx.name, ctx.record, {})
    results: dict[str, ParityResult] = {}
    for spec in specs:
        outcome = outcomes[spec.name]
        if not outcome["ok"]:
            results[spec.name] = _conversion_failure(ctx, spec, outcome)
            ctx.progress.add(-1)  # no parity check for it
            continue
        manifest.artifacts[spec.name] = _bundle.make_artifact(spec, outcome, ctx.root)
    manifest.save(ctx.root)  # provisional: the runtime loads artifacts through the manifest
    for spec in specs:
        if spec.name in manifest.artifacts:
            results[spec.name] = check_parity(ctx, spec.name, spec, ctx.gates[spec.name])
            ctx.progress.step(parity_text(spec.name, results[spec.name]), notable=not results[spec.name])
            if not results[spec.name] and spec.ladder:
                results[spec.name] = guardrail.walk_ladder(ctx, manifest, spec, results[spec.name], paths)
    _finish(ctx, manifest, results)
    return manifest, results


def _prepare_data(ctx: _Context, specs: list[FormatSpec]) -> dict[str, str]:
    """Held-out test images (parity) and calibration / validation images, saved for the children."""
    from edgexfer.export import data as _data

    size = tuple(int(v) for v in ctx.record.input_shape[:2])
    ctx.x_test, ctx.y_test = _data.test_images(ctx.record, size, ctx.settings["parity_samples"])
    paths = {"test": str(ctx.work / "test.npy"), "reference": str(ctx.work / "reference.npy")}
    np.save(paths["test"], ctx.x_test)
    if any(s.calibrated for s in specs):
        factor = max(int(r.get("calibration_factor", 1)) for s in specs for r in ({},) + s.ladder)
        pool = _data.calibration_images(ctx.record, size, ctx.settings["calibration_samples"] * factor)
        paths["calibration"] = str(ctx.work / "calibration.npy")
        np.save(paths["calibration"], pool)
        ctx.settings["calibration_pool"] = int(len(pool))
    labelled = ctx.record.training.get("label_source") != "reference"
    has_val = int((ctx.record.data.get("counts") or {}).get("val", 0) or 0) > 0  # k-shot runs have none
    if labelled and has_val and any(s.family == "openvino" and s.calibrated for s in specs):  # NNCF accuracy control
        x_val, y_val = _data.validation_images(ctx.record, size)
        paths["validation"] = str(ctx.work / "validation.npz")
        np.savez(paths["validation"], x=x_val, y=y_val)
    return paths


def make_job(ctx: _Context, spec: FormatSpec, paths: dict[str, str], name: str | None = None,
             **options: Any) -> dict[str, Any]:
    """The JSON job a conversion child runs for `spec` (optionally a named variant with extra options)."""
    name = name or spec.name
    settings = ctx.settings
    record = ctx.record
    return {
        "name": name, "converter": spec.converter, "model": str(ctx.run_dir / MODEL_FILE),
        "out_dir": str(ctx.root / name), "work_dir": str(ctx.work), "input_shape": [int(v) for v in record.input_shape],
        "options": {**spec.options, "calibration_samples": settings["calibration_samples"],
                    "int8_io": settings["int8_io"], "max_drop": settings["max_drop"], **options},
        "calibration": paths.get("calibration") if spec.calibrated else None,
        "validation": paths.get("validation") if spec.calibrated else None,
        "source_onnx": str(ctx.root / "onnx" / "model.onnx") if spec.family == "openvino" else None,
        "metadata": {"labels": list(record.labels), "preprocessing": dict(record.preprocessing),
                     "input": {"shape": list(record.input_shape), "layout": "NHWC", "range": [0, 255]},
                     "version": __version__},
    }


def _convert(ctx: _Context, specs: list[FormatSpec], paths: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One child per family. OpenVINO converts the ONNX file of this export when there is one, so it
    runs after the ONNX child in the same chain; the TFLite child runs beside that chain."""
    reference = {"name": "reference", "converter": "edgexfer.export._keras:reference",
                 "model": str(ctx.run_dir / MODEL_FILE), "out_dir": str(ctx.work), "input_shape": [],
                 "options": {"images": paths["test"], "out": paths["reference"]}}
    families = [f for f in FAMILY_ORDER if any(s.family == f for s in specs)]
    jobs = {f: [make_job(ctx, s, paths) for s in specs if s.family == f] for f in families}
    jobs[families[0]].insert(0, reference)
    batches = {f: Batch(f, jobs[f], ctx.work) for f in families}
    chains = [[batches[f]] for f in families if f not in ("onnx", "openvino")]
    onnx_chain = [batches[f] for f in ("onnx", "openvino") if f in batches]
    if "onnx" in batches:
        chains.insert(0, onnx_chain)
    else:
        chains += [[b] for b in onnx_chain]
    with _ConversionWatch(list(batches.values()), ctx.progress) as watch:
        outcomes = run_chains(chains, ctx.settings["parallel"])
        watch.finish(outcomes)
    ctx.children += [b.stats for b in batches.values()]
    return outcomes


class _ConversionWatch:
    """Reports each artifact as its conversion child records it (a child rewrites its results file after
    every job), so a long export shows every conversion as it finishes, not only when its batch ends."""

    def __init__(self, batches: list[Batch], progress: Tracker, interval: float = 0.5) -> None:
        import threading

        self.batches, self.progress, self.interval = batches, progress, interval
        self.reported: set[str] = {"reference"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="edgexfer-export-progress")

    def __enter__(self) -> "_ConversionWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def finish(self, outcomes: dict[str, dict[str, Any]]) -> None:
        """The outcomes the parent settled (a child that died reports nothing itself)."""
        self._stop.set()
        self._thread.join()
        self._report(outcomes)

    def _poll(self) -> None:
        import json

        while not self._stop.wait(self.interval):
            for batch in self.batches:
                try:
                    self._report(json.loads(batch.results_path.read_text())["jobs"])
                except (OSError, ValueError, KeyError):  # not written yet
                    continue

    def _report(self, jobs: dict[str, dict[str, Any]]) -> None:
        for name, outcome in jobs.items():
            if name in self.reported:
                continue
            self.reported.add(name)
            if outcome.get("ok"):
                self.progress.step(f"{name} converted ({outcome.get('seconds', 0):.1f} s)")
            else:
                first = str(outcome.get("error", "")).splitlines()[0][:160] if outcome.get("error") else "?"
                self.progress.step(f"{name} conversion FAILED: {first}", notable=True)


def _data_text(ctx: _Context) -> str:
    calibration = ctx.settings.get("calibration_pool")
    extra = f", {calibration} calibration images" if calibration else ""
    return f"held-out data ready: {len(ctx.x_test)} test images{extra}"


def parity_text(name: str, result: ParityResult) -> str:
    """One line for a parity check: the verdict and the numbers a person looks at first."""
    m = result.metrics
    if not m:
        return f"{name} parity FAIL: {'; '.join(result.failures)[:200]}"
    numbers = f"max|diff| {m['max_abs_diff']:.2e}, agreement {m['agreement']:.2f}%, drop {m['accuracy_drop']:+.2f} pts"
    if result:
        return f"{name} parity PASS ({numbers})"
    return f"{name} parity FAIL ({numbers}): {'; '.join(result.failures)[:200]}"


def _conversion_failure(ctx: _Context, spec: FormatSpec, outcome: dict[str, Any]) -> ParityResult:
    ctx.settings.setdefault("failed_conversions", {})[spec.name] = outcome["error"]
    return ParityResult(metrics={}, gate=ctx.gates[spec.name].to_dict(), passed=False,
                        failures=[f"conversion failed: {outcome['error']}"])


def predict(root: Path, name: str, spec: FormatSpec, x: np.ndarray) -> np.ndarray:
    """Run one artifact of a (staging) bundle through the runtime: the only inference path."""
    from edgexfer.runtime import load

    model = load(root, format=name, backend=spec.backend, device="cpu", verify=False, allow_failed=True,
                 options=dict(spec.parity_options) or None)
    try:
        return np.asarray(model.predict(x), dtype=np.float32)
    finally:
        model.close()


def check_parity(ctx: _Context, name: str, spec: FormatSpec, gate: Gate) -> ParityResult:
    try:
        probs = predict(ctx.root, name, spec, ctx.x_test)
    except Exception as exc:  # an artifact the runtime cannot run fails its parity, with the reason
        return ParityResult(metrics={}, gate=gate.to_dict(), passed=False,
                            failures=[f"runtime could not run it: {type(exc).__name__}: {exc}"])
    return compare(ctx.reference, probs, ctx.y_test, gate)


def _finish(ctx: _Context, manifest: Manifest, results: dict[str, ParityResult]) -> None:
    for name, artifact in manifest.artifacts.items():
        artifact.parity = results[name].to_dict()
        artifact.status = "passed" if results[name] else "failed"
    ref_acc = float(100.0 * np.mean(ctx.reference.argmax(1) == ctx.y_test))
    ctx.settings["children"] = ctx.children
    manifest.provenance = _bundle.provenance(ctx.record, ctx.run_dir, ctx.settings)
    manifest.provenance["parity_reference"] = {"model": "keras float32", "split": "test",
                                               "n": int(len(ctx.y_test)), "accuracy": ref_acc,
                                               "labels": ctx.record.training.get("label_source", "data")}
    parity = {"reference": manifest.provenance["parity_reference"],
              "artifacts": {n: r.to_dict() for n, r in results.items()}}
    _bundle.write_reports(ctx.root, parity, format_markdown(results, _sizes(manifest), len(ctx.y_test)))


def _sizes(manifest: Manifest) -> dict[str, int]:
    return {n: a.size_bytes for n, a in manifest.artifacts.items()}

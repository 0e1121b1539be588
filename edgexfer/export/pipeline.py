"""export(): run dir -> bundle. Orchestration only; converters, parity and the bundle live elsewhere.

1. validate the arguments and the run dir (cheap, before any heavy import)
2. rebuild the held-out test images and sample calibration images from run.json (edgexfer.data)
3. convert in subprocess batches (one per family; the Keras reference runs in the first batch)
4. parity: every artifact through the runtime's loader layer (edgexfer.runtime.open_artifact, from its
   record in memory: no manifest round trip), one comparator (edgexfer.parity), gates per format;
   tflite-int8 / openvino-int8 walk their fallback ladder (guardrail) when they miss the gate
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

from edgexfer.errors import ParityError, UserError
from edgexfer.export import bundle as _bundle
from edgexfer.export import guardrail
from edgexfer.export.check import check_parity, parity_text
from edgexfer.export.context import DataFiles, ExportContext, ExportSettings
from edgexfer.export.formats import FormatSpec, gates_for, resolve_formats
from edgexfer.export.jobs import INT8_IO, ConverterOptions, Job
from edgexfer.export.worker import Batch, raise_for, run_batches, run_chains
from edgexfer.manifest import Manifest
from edgexfer.parity import ParityResult, format_markdown, format_table, top1_accuracy
from edgexfer.progress import Callback, Tracker
from edgexfer.record import MODEL_FILE, RunRecord

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


def export(run_dir: str | Path, out: str | Path, *, formats: Any = None,
           calibration_samples: int = ConverterOptions.calibration_samples, int8_io: str = ConverterOptions.int8_io, max_drop: float | None = None, strict: bool = False,
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
    settings.formats, settings.strict = [s.name for s in specs], bool(strict)
    settings.gates = {n: g.to_dict() for n, g in gate_map.items()}
    started = time.perf_counter()
    tracker = Tracker(progress, total=2 * len(specs) + 2 + bool(pretrained))
    with _bundle.Staging(out, force=force, archive=archive) as staging:
        if pretrained:
            run_dir = materialise_pretrained(pretrained, staging.work)
            record = open_run(run_dir)
            tracker.step(f"{pretrained} built ({time.perf_counter() - started:.1f} s)")
        if record.training.get("label_source") == "reference":
            gate_map = gates_for(specs, gates, max_drop, labelled=False)
            settings.gates = {n: g.to_dict() for n, g in gate_map.items()}
        ctx = ExportContext(record, run_dir, staging.root, staging.work, settings, gate_map, staging.out.name,
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
    job = Job(name="pretrained", converter="edgexfer.train.pretrained:materialise", out_dir=str(run_dir),
              args={"name": pretrained_name(source)})
    raise_for(source, run_batches([Batch("pretrained", [job], work)])["pretrained"])
    return run_dir


def _validate(calibration_samples: int, int8_io: str, max_drop: float | None, parity_samples: int | None,
              parallel: int | None) -> ExportSettings:
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
    return ExportSettings(calibration_samples=calibration_samples, int8_io=int8_io,
                          max_drop=None if max_drop is None else float(max_drop), parity_samples=parity_samples,
                          parallel=parallel)


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


def _build(ctx: ExportContext, specs: list[FormatSpec]) -> tuple[Manifest, dict[str, ParityResult]]:
    _prepare_data(ctx, specs)
    ctx.progress.step(_data_text(ctx))
    outcomes = _convert(ctx, specs)
    raise_for("reference (Keras predictions for parity)", outcomes.pop("reference"))
    if not any(outcomes[s.name]["ok"] for s in specs):  # nothing to keep: the first child's own error
        raise_for(specs[0].name, outcomes[specs[0].name])
    ctx.reference = np.load(ctx.files.reference)
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
    for spec in specs:
        artifact = manifest.artifacts.get(spec.name)
        if artifact is None:
            continue
        result = check_parity(ctx, artifact, spec, ctx.gates[spec.name])
        ctx.progress.step(parity_text(spec.name, result), notable=not result)
        if not result and spec.ladder:
            result = guardrail.walk_ladder(ctx, manifest.artifacts, spec, result)
        results[spec.name] = result
    _finish(ctx, manifest, results)
    return manifest, results


def _prepare_data(ctx: ExportContext, specs: list[FormatSpec]) -> None:
    """Held-out test images (parity) and calibration / validation images, saved for the children."""
    from edgexfer.export import data as _data

    size = tuple(int(v) for v in ctx.record.input_shape[:2])
    ctx.x_test, ctx.y_test = _data.test_images(ctx.record, size, ctx.settings.parity_samples)
    files = ctx.files = DataFiles(test=str(ctx.work / "test.npy"), reference=str(ctx.work / "reference.npy"))
    np.save(files.test, ctx.x_test)
    if any(s.calibrated for s in specs):
        factor = max(s.calibration_factor for s in specs)
        pool = _data.calibration_images(ctx.record, size, ctx.settings.calibration_samples * factor)
        files.calibration = str(ctx.work / "calibration.npy")
        np.save(files.calibration, pool)
        ctx.settings.calibration_pool = int(len(pool))
    labelled = ctx.record.training.get("label_source") != "reference"
    if labelled and any(s.family == "openvino" and s.calibrated for s in specs):  # NNCF accuracy control
        validation = _data.validation_images(ctx.record, size)  # None for a k-shot run: control is off
        if validation is not None:
            files.validation = str(ctx.work / "validation.npz")
            np.savez(files.validation, x=validation[0], y=validation[1])


def _convert(ctx: ExportContext, specs: list[FormatSpec]) -> dict[str, dict[str, Any]]:
    """One child per family. OpenVINO converts the ONNX file of this export when there is one, so it
    runs after the ONNX child in the same chain; the TFLite child runs beside that chain."""
    reference = Job(name="reference", converter="edgexfer.export._keras:reference",
                    model=str(ctx.run_dir / MODEL_FILE), out_dir=str(ctx.work),
                    args={"images": ctx.files.test, "out": ctx.files.reference})
    families = [f for f in FAMILY_ORDER if any(s.family == f for s in specs)]
    jobs = {f: [ctx.job(s) for s in specs if s.family == f] for f in families}
    jobs[families[0]].insert(0, reference)
    batches = {f: Batch(f, jobs[f], ctx.work) for f in families}
    chains = [[batches[f]] for f in families if f not in ("onnx", "openvino")]
    onnx_chain = [batches[f] for f in ("onnx", "openvino") if f in batches]
    if "onnx" in batches:
        chains.insert(0, onnx_chain)
    else:
        chains += [[b] for b in onnx_chain]
    with _ConversionWatch(list(batches.values()), ctx.progress) as watch:
        outcomes = run_chains(chains, ctx.settings.parallel)
        watch.finish(outcomes)
    ctx.settings.children += [b.stats for b in batches.values()]
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


def _data_text(ctx: ExportContext) -> str:
    calibration = ctx.settings.calibration_pool
    extra = f", {calibration} calibration images" if calibration else ""
    return f"held-out data ready: {len(ctx.x_test)} test images{extra}"


def _conversion_failure(ctx: ExportContext, spec: FormatSpec, outcome: dict[str, Any]) -> ParityResult:
    ctx.settings.failed_conversions[spec.name] = outcome["error"]
    return ParityResult.failed(ctx.gates[spec.name], f"conversion failed: {outcome['error']}")


def _finish(ctx: ExportContext, manifest: Manifest, results: dict[str, ParityResult]) -> None:
    for name, artifact in manifest.artifacts.items():
        artifact.parity = results[name]
        artifact.status = "passed" if results[name] else "failed"
    ref_acc = 100.0 * top1_accuracy(ctx.reference, ctx.y_test)
    manifest.provenance = _bundle.provenance(ctx.record, ctx.run_dir, ctx.settings.to_dict())
    manifest.provenance["parity_reference"] = {"model": "keras float32", "split": "test",
                                               "n": int(len(ctx.y_test)), "accuracy": ref_acc,
                                               "labels": ctx.record.training.get("label_source", "data")}
    parity = {"reference": manifest.provenance["parity_reference"],
              "artifacts": {n: r.to_dict() for n, r in results.items()}}
    _bundle.write_reports(ctx.root, parity, format_markdown(results, _sizes(manifest), len(ctx.y_test)))


def _sizes(manifest: Manifest) -> dict[str, int]:
    return {n: a.size_bytes for n, a in manifest.artifacts.items()}

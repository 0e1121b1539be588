"""The int8 guardrail: when an artifact with a ladder (tflite-int8, openvino-int8) misses its gate.

The rungs are data beside each format (FormatSpec.ladder: formats.TFLITE_INT8_LADDER and
OPENVINO_INT8_LADDER, explained in tflite.py and openvino.py). Rungs are built
`FormatSpec.ladder_chunk` per conversion child (TFLite: all in one, since a TF child is costly;
OpenVINO: one per child), the walk stops after the first chunk with a passing variant, every
variant is checked through the runtime's loader layer with the same comparator and gate, and the
best passing variant replaces the default one. When none passes, the best variant is kept and the
artifact is marked failed. Every rung tried is recorded (ParityResult.tried, typed `Rung`s).

Variants live in memory (Artifact records) and in their own folders of the staging bundle; the
manifest is written once, by the pipeline, at the end.
"""
from __future__ import annotations

import shutil
from dataclasses import replace
from typing import Any

from edgexfer.export import bundle as _bundle
from edgexfer.export.check import check_parity
from edgexfer.export.context import DataFiles, ExportContext
from edgexfer.export.formats import FormatSpec, LadderStep
from edgexfer.export.jobs import Job
from edgexfer.export.worker import Batch, run_batches
from edgexfer.manifest import Artifact
from edgexfer.parity import Gate, ParityResult, Rung

DEFAULT_RUNG = "default"
#: (rung name, its parity result, the variant's Artifact: None for the default one)
Candidate = tuple[str, ParityResult, Artifact | None]


def _summary(result: ParityResult) -> str:
    m = result.metrics
    if not m:
        return "; ".join(result.failures)
    return f"accuracy {m['accuracy']:.2f}%, cosine {m['cosine']:.5f}; {result.reason}"


def _entry(rung: str, result: ParityResult, details: dict[str, Any] | None = None) -> Rung:
    """A record of one rung; `details` is copied so that adopting a variant later cannot rewrite it."""
    return Rung(rung, "passed" if result else "failed", _summary(result), dict(result.metrics),
                list(result.failures), list(result.checks), dict(details or {}))


def walk_ladder(ctx: ExportContext, artifacts: dict[str, Artifact], spec: FormatSpec,
                first: ParityResult) -> ParityResult:
    """Try the rungs of spec.ladder, `spec.ladder_chunk` per child, until a chunk has a pass; the chosen
    variant replaces artifacts[spec.name] (files moved into its folder)."""
    candidates: list[Candidate] = [(DEFAULT_RUNG, first, None)]
    tried = [_entry(DEFAULT_RUNG, first, artifacts[spec.name].details)]
    built: list[str] = []
    ladder = runnable_rungs(spec, ctx.files)
    ctx.progress.add(len(ladder))
    ctx.progress.note(f"{spec.name}: trying the int8 fallback ladder ({', '.join(r.name for r in ladder)})")
    step = max(1, spec.ladder_chunk)
    for start in range(0, len(ladder), step):
        found = _try_rungs(ctx, spec, ladder[start: start + step], tried, built)
        candidates += found
        if any(result for _, result, _ in found):
            break
    ctx.progress.add(len(tried) - 1 - len(ladder))  # rungs not needed after a pass
    best_rung, best, variant = _choose(candidates)
    _adopt(ctx, artifacts[spec.name], variant, best_rung)
    ctx.progress.note(f"{spec.name}: kept the {best_rung} variant, " +
                      ("which passes" if best else "still failing: marked failed, kept out of automatic selection"))
    for name in built:
        shutil.rmtree(ctx.root / name, ignore_errors=True)
    best.tried = tried
    return best


def _try_rungs(ctx: ExportContext, spec: FormatSpec, rungs: tuple[LadderStep, ...], tried: list[Rung],
               built: list[str]) -> list[Candidate]:
    """Build `rungs` in one child, check each through the runtime; append to `tried`."""
    gate = ctx.gates[spec.name]
    jobs = [_rung_job(ctx, spec, r, gate) for r in rungs]
    batch = Batch(f"{spec.name}-ladder-{len(built)}", jobs, ctx.work)
    outcomes = run_batches([batch])
    ctx.settings.children.append(batch.stats)
    found: list[Candidate] = []
    for rung, job in zip(rungs, jobs, strict=True):
        built.append(job.name)
        outcome = outcomes[job.name]
        if not outcome["ok"]:
            tried.append(Rung(rung.name, "error", outcome["error"][:300]))
            ctx.progress.step(f"{spec.name} rung {rung.name}: conversion failed", notable=True)
            continue
        variant = _bundle.make_artifact(replace(spec, name=job.name), outcome, ctx.root)
        result = check_parity(ctx, variant, spec, gate)
        tried.append(_entry(rung.name, result, variant.details))
        ctx.progress.step(f"{spec.name} rung {rung.name}: {'PASS' if result else 'FAIL'} ({_summary(result)[:200]})")
        found.append((rung.name, result, variant))
    return found


def runnable_rungs(spec: FormatSpec, files: DataFiles | None) -> tuple[LadderStep, ...]:
    """The ladder without the rungs that cannot differ from the default here: accuracy control without a
    validation split (a k-shot or unlabelled run) is the default quantization again (openvino._quantize)."""
    has_validation = files is not None and files.validation is not None
    return tuple(r for r in spec.ladder if has_validation or not r.accuracy_control)


def _rung_job(ctx: ExportContext, spec: FormatSpec, rung: LadderStep, gate: Gate) -> Job:
    """A rung's conversion job (named FORMAT@RUNG)."""
    return ctx.job(spec, rung, name=f"{spec.name}@{rung.name}", **_rung_changes(rung, gate))


def _rung_changes(rung: LadderStep, gate: Gate) -> dict[str, Any]:
    """Converter option changes a rung needs from the gate.

    Accuracy control measures the drop on the validation split, while the gate judges the test split;
    a default variant that misses the gate on test usually meets it on validation, and aiming at the
    gate itself would then revert nothing. So it aims at half the gate's drop: it reverts layers until
    validation shows a clear margin, and the result is judged by the same gate as every other rung.
    """
    if not rung.accuracy_control:
        return {}
    return {"max_drop": (gate.max_acc_drop if gate.max_acc_drop is not None else 1.0) / 2}


def _choose(candidates: list[Candidate]) -> Candidate:
    """Passing variants first, then the lowest upper bound of the accuracy drop (the gate's evidence),
    then the highest accuracy, then the earliest rung."""
    def key(item: tuple[int, Candidate]) -> tuple:
        index, (_, result, _) = item
        worst = result.metrics.get("accuracy_drop_ci", [float("inf")] * 2)[1]
        return (not result.passed, worst, -result.metrics.get("accuracy", float("-inf")), index)

    return min(enumerate(candidates), key=key)[1]


def _adopt(ctx: ExportContext, artifact: Artifact, variant: Artifact | None, rung: str) -> None:
    """Move the chosen variant's files into the artifact's folder and describe them again."""
    artifact.details["rung"] = rung
    if variant is None:
        return
    target = ctx.root / artifact.name
    shutil.rmtree(target)
    shutil.move(str(ctx.root / variant.name), str(target))
    artifact.files = [f.replace(variant.name + "/", artifact.name + "/", 1) for f in variant.files]
    artifact.sha256, artifact.size_bytes = _bundle.describe_files(ctx.root, artifact.files)
    artifact.input_quant, artifact.output_quant = variant.input_quant, variant.output_quant
    artifact.details = {**variant.details, "rung": rung}

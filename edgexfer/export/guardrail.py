"""The int8 guardrail: when an artifact with a ladder (tflite-int8, openvino-int8) misses its gate.

The rungs are data beside each format (FormatSpec.ladder: formats.TFLITE_INT8_LADDER and
OPENVINO_INT8_LADDER, explained in tflite.py and openvino.py). Rungs are built
`FormatSpec.ladder_chunk` per conversion child (TFLite: all in one, since a TF child is costly;
OpenVINO: one per child), the walk stops after the first chunk with a passing variant, every
variant is checked through the runtime with the same comparator and gate, and the best passing
variant (highest accuracy; the earlier rung on a tie) replaces the default one. When none
passes, the best variant is kept and the artifact is marked failed. Every rung tried is recorded
in artifact.parity["tried"].
"""
from __future__ import annotations

import shutil
from typing import Any

from edgexfer.export import bundle as _bundle
from edgexfer.export.formats import FormatSpec
from edgexfer.export.parity import ParityResult
from edgexfer.export.worker import Batch, run_batches
from edgexfer.manifest import Manifest

DEFAULT_RUNG = "default"


def _summary(result: ParityResult) -> str:
    m = result.metrics
    if not m:
        return "; ".join(result.failures)
    return f"accuracy {m['accuracy']:.2f}%, cosine {m['cosine']:.5f}; {result.reason}"


def _entry(rung: str, result: ParityResult, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A record of one rung; `details` is copied so that adopting a variant later cannot rewrite it."""
    return {"rung": rung, "status": "passed" if result else "failed", "summary": _summary(result),
            "metrics": dict(result.metrics), "failures": list(result.failures), "checks": list(result.checks),
            "details": dict(details or {})}


def walk_ladder(ctx: Any, manifest: Manifest, spec: FormatSpec, first: ParityResult,
                paths: dict[str, str]) -> ParityResult:
    """Try the rungs of spec.ladder, `spec.ladder_chunk` per child, until a chunk has a pass."""
    candidates = [(DEFAULT_RUNG, first, None)]
    tried = [_entry(DEFAULT_RUNG, first, manifest.artifacts[spec.name].details)]
    built: list[str] = []
    ctx.progress.add(len(spec.ladder))
    ctx.progress.note(f"{spec.name}: trying the int8 fallback ladder "
                      f"({', '.join(r['rung'] for r in spec.ladder)})")
    for start in range(0, len(spec.ladder), max(1, spec.ladder_chunk)):
        chunk = spec.ladder[start: start + max(1, spec.ladder_chunk)]
        found = _try_rungs(ctx, manifest, spec, chunk, paths, tried, built)
        candidates += found
        if any(result for _, result, _ in found):
            break
    ctx.progress.add(len(tried) - 1 - len(spec.ladder))  # rungs not needed after a pass
    best_rung, best, variant = _choose(candidates)
    _adopt(ctx, manifest, spec, variant, best_rung)
    ctx.progress.note(f"{spec.name}: kept the {best_rung} variant, " +
                      ("which passes" if best else "still failing: marked failed, kept out of automatic selection"))
    for name in built:
        manifest.artifacts.pop(name, None)
        shutil.rmtree(ctx.root / name, ignore_errors=True)
    manifest.save(ctx.root)
    best.tried = tried
    return best


def _try_rungs(ctx: Any, manifest: Manifest, spec: FormatSpec, rungs: tuple[dict[str, Any], ...],
               paths: dict[str, str], tried: list[dict[str, Any]], built: list[str]) -> list[tuple]:
    """Build `rungs` in one child, check each through the runtime; append to `tried`."""
    from edgexfer.export.pipeline import check_parity, make_job

    gate = ctx.gates[spec.name]
    jobs = [make_job(ctx, spec, paths, name=f"{spec.name}@{r['rung']}", **_rung_options(r, gate)) for r in rungs]
    batch = Batch(f"{spec.name}-ladder-{len(built)}", jobs, ctx.work)
    outcomes = run_batches([batch])
    ctx.children.append(batch.stats)
    found = []
    for rung, job in zip(rungs, jobs, strict=True):
        built.append(job["name"])
        outcome = outcomes[job["name"]]
        if not outcome["ok"]:
            tried.append({"rung": rung["rung"], "status": "error", "summary": outcome["error"][:300]})
            ctx.progress.step(f"{spec.name} rung {rung['rung']}: conversion failed", notable=True)
            continue
        variant = _bundle.make_artifact(_renamed(spec, job["name"]), outcome, ctx.root)
        manifest.artifacts[job["name"]] = variant
        manifest.save(ctx.root)
        result = check_parity(ctx, job["name"], spec, gate)
        tried.append(_entry(rung["rung"], result, variant.details))
        ctx.progress.step(f"{spec.name} rung {rung['rung']}: {'PASS' if result else 'FAIL'} ({_summary(result)[:200]})")
        found.append((rung["rung"], result, variant))
    return found


def _rung_options(rung: dict[str, Any], gate: Any) -> dict[str, Any]:
    """A rung's converter options.

    Accuracy control measures the drop on the validation split, while the gate judges the test split;
    a default variant that misses the gate on test usually meets it on validation, and aiming at the
    gate itself would then revert nothing. So it aims at half the gate's drop: it reverts layers until
    validation shows a clear margin, and the result is judged by the same gate as every other rung.
    """
    options = {k: v for k, v in rung.items() if k != "accuracy_control"}
    if rung.get("accuracy_control"):
        options["max_drop"] = (gate.max_acc_drop if gate.max_acc_drop is not None else 1.0) / 2
    return options


def _choose(candidates: list[tuple[str, ParityResult, Any]]) -> tuple[str, ParityResult, Any]:
    """Passing variants first, then the lowest upper bound of the accuracy drop (the gate's evidence),
    then the highest accuracy, then the earliest rung."""
    def key(item: tuple[int, tuple[str, ParityResult, Any]]) -> tuple:
        index, (_, result, _) = item
        worst = result.metrics.get("accuracy_drop_ci", [float("inf")] * 2)[1]
        return (not result.passed, worst, -result.metrics.get("accuracy", float("-inf")), index)

    return min(enumerate(candidates), key=key)[1]


def _renamed(spec: FormatSpec, name: str) -> FormatSpec:
    from dataclasses import replace

    return replace(spec, name=name)


def _adopt(ctx: Any, manifest: Manifest, spec: FormatSpec, variant: Any, rung: str) -> None:
    """Move the chosen variant's files into the artifact's folder and describe them again."""
    artifact = manifest.artifacts[spec.name]
    artifact.details["rung"] = rung
    if variant is None:
        return
    target = ctx.root / spec.name
    shutil.rmtree(target)
    shutil.move(str(ctx.root / variant.name), str(target))
    artifact.files = [f.replace(variant.name + "/", spec.name + "/", 1) for f in variant.files]
    artifact.sha256, artifact.size_bytes = _bundle.describe_files(ctx.root, artifact.files)
    artifact.input_quant, artifact.output_quant = variant.input_quant, variant.output_quant
    artifact.details = {**variant.details, "rung": rung}

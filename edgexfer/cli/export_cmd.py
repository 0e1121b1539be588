"""`edgexfer export` and `edgexfer info`: thin click wrappers over edgexfer.export and edgexfer.manifest.

Top-level imports are click and light modules only; the export pipeline is imported when the
command runs. Errors are edgexfer exceptions: the group prints "Error: ..." with their exit code.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgexfer.errors import IntegrityError
from edgexfer.export.formats import list_formats
from edgexfer.export.jobs import ConverterOptions
from edgexfer.manifest import Manifest, verify_bundle


def _split_formats(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _parse_gates(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict | None:
    """--gate tflite-int8:max_acc_drop=2 (repeatable) -> {"tflite-int8": {"max_acc_drop": 2.0}}."""
    gates: dict[str, dict[str, float]] = {}
    for raw in values:
        name, _, setting = raw.partition(":")
        key, _, number = setting.partition("=")
        try:
            gates.setdefault(name.strip(), {})[key.strip()] = float(number)
        except ValueError:
            raise click.BadParameter(
                f"Expected FORMAT:KEY=NUMBER, e.g. tflite-int8:max_acc_drop=2. Received: {raw!r}.") from None
    return gates or None


def _run_or_pretrained(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A run directory, or 'pretrained:NAME' (the ImageNet classifier itself, no training step)."""
    if value.startswith("pretrained:") or Path(value).is_dir():
        return value
    raise click.BadParameter(f"Expected a run directory (from `edgexfer train`) or pretrained:NAME, e.g. "
                             f"pretrained:efficientnet_lite0. Received: {value!r}, which is not a directory.")


@click.command("export")
@click.argument("run_dir", callback=_run_or_pretrained, metavar="RUN_DIR|pretrained:NAME")
@click.option("--out", "-o", required=True, type=click.Path(), help="Bundle directory to create.")
@click.option("--formats", callback=_split_formats, metavar="LIST",
              help=f"Comma-separated formats (default: every installed one). Known: {','.join(list_formats())}.")
@click.option("--calibration-samples", default=ConverterOptions.calibration_samples, show_default=True, type=click.IntRange(min=1),
              help="Real training images used to calibrate int8 artifacts.")
@click.option("--int8-io", type=click.Choice(["int8", "uint8"]), default="int8", show_default=True,
              help="Input/output dtype of the full-integer TFLite model.")
@click.option("--max-drop", type=click.FloatRange(0, 100), default=None,
              help="Accepted int8 accuracy drop in points; enables NNCF accuracy control for openvino-int8.")
@click.option("--parity-samples", type=click.IntRange(min=1), default=None,
              help="Check parity on at most N held-out test images (default: all).")
@click.option("--parallel", type=click.IntRange(min=1), default=None,
              help="Conversion subprocesses at once (default: 2 with 2+ cores and 8 GB free, else 1; "
                   "each can take a few GB on large models).")
@click.option("--gate", "gates", multiple=True, callback=_parse_gates, metavar="FORMAT:KEY=VALUE",
              help="Override a parity gate, e.g. tflite-int8:max_acc_drop=2 (keys: max_abs_diff, min_cosine, "
                   "min_agreement, max_acc_drop). Repeatable.")
@click.option("--strict", is_flag=True,
              help="Exit 1 when any artifact fails parity or conversion (the bundle is written either way, "
                   "with failed artifacts marked; the runtime refuses them unless --allow-failed).")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--archive", is_flag=True, help="Also write BUNDLE.zip next to the bundle directory.")
def export(run_dir: str, out: str, formats: list[str] | None, calibration_samples: int, int8_io: str,
           max_drop: float | None, parity_samples: int | None, parallel: int | None, gates: dict | None,
           strict: bool, force: bool, archive: bool) -> None:
    """Export RUN_DIR (model.keras + run.json), or the pretrained ImageNet classifier pretrained:NAME, to
    ONNX / TFLite / OpenVINO with parity checks."""
    from edgexfer.export import export as run_export
    from edgexfer.progress import Reporter

    with Reporter("export") as progress:
        result = run_export(run_dir, out, formats=formats, calibration_samples=calibration_samples,
                            int8_io=int8_io, max_drop=max_drop, strict=strict, force=force, archive=archive,
                            gates=gates, parity_samples=parity_samples, parallel=parallel, progress=progress)
    click.echo(result.table())
    click.echo(f"\nBundle: {result.bundle}" + (f"  (archive: {result.archive})" if result.archive else ""))
    for name in result.failed:
        click.secho(f"{name}: FAILED, kept out of automatic selection: {result.parity[name].reason}", fg="yellow",
                    err=True)
    click.echo(f"Exported in {result.timings.get('total_seconds', 0):.1f} s")


@click.command("info")
@click.argument("bundle", type=click.Path(exists=True))
@click.option("--verify", is_flag=True, help="Re-check the sha256 of every artifact file.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (and verification) as JSON.")
def info(bundle: str, verify: bool, as_json: bool) -> None:
    """Summarise BUNDLE: artifacts, sizes, precision, parity and provenance."""
    manifest = Manifest.load(bundle)
    problems = verify_bundle(bundle, manifest) if verify else []
    if as_json:
        payload = manifest.to_dict()
        if verify:
            payload["verify"] = {"ok": not problems, "problems": problems}
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(summary(manifest))
        if verify and not problems:
            click.secho(f"Verified: every file of {len(manifest.artifacts)} artifact(s) matches its sha256, and "
                        "every parity record agrees with its own metrics and gate.", fg="green")
    if problems:
        raise IntegrityError("Bundle verification failed:\n  " + "\n  ".join(problems))


def summary(manifest: Manifest) -> str:
    """A human-readable summary of a manifest (the parity table comes from the one comparator); the
    training history is summarised (epochs, best and final metrics): `info --json` has every value."""
    from edgexfer.parity import format_table

    prov = manifest.provenance
    inp = manifest.input
    lines = [
        f"Bundle {manifest.name!r} (schema {manifest.schema_version})",
        f"  labels ({len(manifest.labels)}): {', '.join(manifest.labels[:12])}{' ...' if len(manifest.labels) > 12 else ''}",
        f"  input: {inp.layout} {inp.height}x{inp.width}x{inp.channels} {inp.dtype} range {inp.value_range}",
        f"  preprocessing: {_pairs(manifest.preprocessing)}",
        f"  backbone: {prov.get('backbone')} (weights: {prov.get('source_weights')})",
        f"  data: {prov.get('data', {}).get('source')} fingerprint {str(prov.get('data', {}).get('fingerprint'))[:23]}",
        *training_lines(prov.get("metrics") or {}),
        f"  created: {prov.get('created')}  edgexfer {prov.get('versions', {}).get('edgexfer')}",
        "",
    ]
    results = {n: a.verdict for n, a in manifest.artifacts.items()}
    lines.append(format_table(results, {n: a.size_bytes for n, a in manifest.artifacts.items()}))
    lines.append("")
    for name, art in manifest.artifacts.items():
        quant = ""
        if art.input_quant:
            quant = (f"  in {art.input_quant.dtype} s={art.input_quant.scale:.6g} zp={art.input_quant.zero_point}"
                     f"  out {art.output_quant.dtype} s={art.output_quant.scale:.6g} zp={art.output_quant.zero_point}"
                     if art.output_quant else "")
        lines.append(f"  {name:<14} {art.precision:<5} {art.status:<7} {', '.join(art.files)}{quant}")
    return "\n".join(lines)


def training_lines(metrics: dict) -> list[str]:
    """The run's metrics in a few lines: epochs per stage with the final loss, the best epoch, held-out
    accuracy, and per-class accuracy (not the raw history lists, nor the confusion matrix)."""
    if not metrics:
        return ["  training: no metrics recorded"]
    lines = []
    stages = [f"{stage} {_epochs(h)}{_final(h)}" for stage, h in (metrics.get("history") or {}).items()]
    if stages:
        lines.append(f"  training: {'; '.join(stages)}")
    best = metrics.get("best") or {}
    if best:
        metric = next((k for k in best if k not in ("stage", "epoch")), "")
        lines.append(f"  best: {metric} {_number(best.get(metric))} at stage {best.get('stage')}, "
                     f"epoch {best.get('epoch')}")
    held_out = [f"{split} {_pct(metrics.get(f'{split}_accuracy'))}" + (f" on {metrics[f'{split}_n']} images"
                if metrics.get(f"{split}_n") else "") for split in ("val", "test") if f"{split}_accuracy" in metrics]
    if held_out:
        lines.append(f"  accuracy: {', '.join(held_out)}")
    per_class = metrics.get("per_class") or {}
    if per_class:
        shown = ", ".join(f"{k} {_pct(v)}" for k, v in list(per_class.items())[:12])
        lines.append(f"  per class ({metrics.get('per_class_split', 'test')}): {shown}"
                     f"{' ...' if len(per_class) > 12 else ''}")
    return lines or [f"  training metrics: {', '.join(sorted(metrics))} (see `edgexfer info --json`)"]


def _epochs(history: dict) -> str:
    n = max((len(v) for v in history.values() if isinstance(v, list)), default=0)
    return f"{n} epoch{'s' * (n != 1)}"


def _final(history: dict) -> str:
    """The last epoch's values of the usual metrics, e.g. " (final val_loss 0.12, val_accuracy 97.2%)"."""
    keys = [k for k in ("loss", "accuracy", "val_loss", "val_accuracy") if history.get(k)]
    if not keys:
        return ""
    values = [f"{k} {_pct(history[k][-1]) if k.endswith('accuracy') else _number(history[k][-1])}" for k in keys]
    return f" (final {', '.join(values)})"


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _pct(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else "n/a"


def _pairs(mapping) -> str:
    if not isinstance(mapping, dict):
        return str(mapping)
    return "; ".join(f"{k}: {v}" for k, v in mapping.items())

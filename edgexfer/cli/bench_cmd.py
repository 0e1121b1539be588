"""`edgexfer bench BUNDLE ...` and `edgexfer bench compare RESULTS...` (light imports at module level)."""
from __future__ import annotations

from pathlib import Path

import click

from edgexfer.errors import UserError


class _DefaultToRun(click.Group):
    """`bench BUNDLE` runs the sweep; `bench compare ...` merges results. First argument decides."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, received {value!r}") from None
    if not items or min(items) < 1:
        raise click.BadParameter(f"expected positive integers, received {value!r}")
    return items


def _str_list(ctx, param, value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


@click.group(cls=_DefaultToRun, invoke_without_command=False)
def bench() -> None:
    """Benchmark a bundle (`bench BUNDLE`) or merge results from several machines (`bench compare`)."""


@bench.command("run")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False))
@click.option("--devices", default="auto", show_default=True, help="auto, or a list such as cpu,cuda.")
@click.option("--batch-sizes", default="1,8,32", show_default=True, callback=_int_list)
@click.option("--threads", default=None, help="Thread counts to sweep, e.g. 1,2 [default: all cores].")
@click.option("--runs", default=100, show_default=True, help="Timed runs per cell (at least 5).")
@click.option("--seconds", default=3.0, show_default=True, help="Stop a cell's timed runs after this long.")
@click.option("--warmup", default=5, show_default=True, help="Untimed warm-up runs per cell.")
@click.option("--formats", default=None, callback=_str_list, help="Only these artifacts (comma-separated).")
@click.option("--backends", default=None, callback=_str_list, help="Only these backends (comma-separated).")
@click.option("--variants", default=None, callback=_str_list, help="Extra precision variants, e.g. bf16.")
@click.option("--data", default=None, help="Image folder or builtin:NAME for an accuracy column.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Results folder [BUNDLE/bench].")
@click.option("--tune", is_flag=True, help="Record the fastest choice per batch size in the bundle.")
def run(bundle: str, devices: str, batch_sizes: list[int], threads: str | None, runs: int, seconds: float,
        warmup: int, formats, backends, variants, data: str | None, out: str | None, tune: bool) -> None:
    """Latency, throughput, memory, size and accuracy per artifact, backend, device and batch size."""
    import os

    from edgexfer.bench import api

    config = api.SweepConfig(
        devices=[d.strip() for d in devices.split(",")], batch_sizes=batch_sizes,
        threads=_int_list(None, None, threads) if threads else [os.cpu_count() or 1], runs=max(runs, 5),
        seconds=seconds, warmup=warmup, formats=formats, backends=backends, variants=variants or [])
    result = api.bench(bundle, config, data=data, out=out, tune=tune, progress=_progress)
    click.echo(result.table)
    click.echo(f"\nResults: {result.paths['json'].parent}")
    if result.tuning:
        click.echo("Tuned (recorded in the bundle): " + ", ".join(
            f"batch {b}: {e['artifact']} on {e['backend']}" for b, e in sorted(result.tuning.items(), key=lambda kv: int(kv[0]))))


@bench.command("compare")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", default="bench-compare", show_default=True, type=click.Path(file_okay=False))
def compare(results: tuple[str, ...], out: str) -> None:
    """Merge results.json files from different machines into one table and plot (hardware as a column)."""
    from edgexfer.bench import report

    merged = report.compare(list(results))
    paths = report.write_all(merged, out, hardware=True)
    click.echo(report.text_table(merged, hardware=True))
    click.echo(f"\nMerged results: {Path(paths['json']).parent}")


def _progress(cells):
    """A progress bar on stderr over the cells (hidden when stderr is not a terminal)."""
    with click.progressbar(cells, label="Benchmarking", file=click.get_text_stream("stderr"),
                           item_show_func=lambda c: c.key() if c else "") as bar:
        yield from bar


__all__ = ["bench", "UserError"]

"""`edgexfer bench BUNDLE [options]` and `edgexfer bench compare RESULTS... [--out DIR]` (light imports only).

One command, so `edgexfer bench --help` shows the sweep's options. The rule for the first argument: the word
`compare` on its own is the merge subcommand; anything else is the bundle. A bundle folder that is literally
named `compare` is written as a path: `edgexfer bench ./compare`.
"""
from __future__ import annotations

from pathlib import Path

import click

from edgexfer.errors import UserError

COMPARE = "compare"
_COMPARE_CTX = "edgexfer.bench.compare"


class _BenchCommand(click.Command):
    """`bench BUNDLE` runs the sweep; `bench compare ...` hands the rest of the line to `compare`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] == COMPARE:
            # parent: the group's context, so usage reads "edgexfer bench compare" (not "... BUNDLE bench compare")
            name = f"{ctx.info_name} {COMPARE}"
            ctx.meta[_COMPARE_CTX] = compare.make_context(name, args[1:], parent=ctx.parent)
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):  # noqa: D401 - click API
        sub = ctx.meta.get(_COMPARE_CTX)
        if sub is None:
            return super().invoke(ctx)
        with sub:
            return compare.invoke(sub)


def _int_list(ctx, param, value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"Expected comma-separated integers. Received: {value!r}.") from None
    if not items or min(items) < 1:
        raise click.BadParameter(f"Expected positive integers. Received: {value!r}.")
    return items


def _str_list(ctx, param, value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


EPILOG = """\b
Merge results from several machines into one table and plot (hardware as a column):
  edgexfer bench compare RESULTS... [--out DIR]     (see `edgexfer bench compare --help`)
A bundle folder named `compare` is written as a path: edgexfer bench ./compare"""


@click.command("bench", cls=_BenchCommand, epilog=EPILOG)
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
def bench(bundle: str, devices: str, batch_sizes: list[int], threads: str | None, runs: int, seconds: float,
          warmup: int, formats, backends, variants, data: str | None, out: str | None, tune: bool) -> None:
    """Benchmark BUNDLE: latency, throughput, memory, size and accuracy per artifact, backend, device and
    batch size, each cell in its own process (progress on stderr, the table on stdout)."""
    import os

    from edgexfer.bench import api, report
    from edgexfer.progress import Reporter

    config = api.SweepConfig(
        devices=[d.strip() for d in devices.split(",")], batch_sizes=batch_sizes,
        threads=_int_list(None, None, threads) if threads else [os.cpu_count() or 1], runs=max(runs, 5),
        seconds=seconds, warmup=warmup, formats=formats, backends=backends, variants=variants or [])
    with Reporter("bench") as progress:
        result = api.bench(bundle, config, data=data, out=out, tune=tune, progress=progress)
    click.echo(result.table)
    _echo_notes(report.explain(result.results))
    click.echo(f"\nResults: {result.paths['json'].parent}")
    if result.tuning:
        click.echo("Tuned (recorded in the bundle): " + ", ".join(
            f"batch {b}: {e['artifact']} on {e['backend']}" for b, e in sorted(result.tuning.items(), key=lambda kv: int(kv[0]))))


@click.command(COMPARE)
@click.argument("results", nargs=-1, type=click.Path(exists=True))
@click.option("--out", default="bench-compare", show_default=True, type=click.Path(file_okay=False))
def compare(results: tuple[str, ...], out: str) -> None:
    """Merge results.json files (or the folders holding them) from different machines into one table and
    plot, hardware as a column."""
    from edgexfer.bench import report

    if not results:
        hint = " To benchmark the bundle folder named compare, write `edgexfer bench ./compare`." \
            if Path(COMPARE, "manifest.json").is_file() else ""
        raise UserError("Expected results.json files (or folders holding one) to merge, e.g. `edgexfer bench "
                        f"compare laptop/results.json pi/results.json`. Received: none.{hint}")
    merged = report.compare(list(results))
    paths = report.write_all(merged, out, hardware=True)
    click.echo(report.text_table(merged, hardware=True))
    _echo_notes(report.explain(merged))
    click.echo(f"\nMerged results: {Path(paths['json']).parent}")


def _echo_notes(lines: list[str]) -> None:
    """Skipped artifacts and noisy cells, one line each, under the table."""
    if lines:
        click.echo("")
    for line in lines:
        click.echo(line)


__all__ = ["bench", "compare", "UserError"]

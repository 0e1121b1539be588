"""`edgexfer data ...`: list the builtin datasets, or write one as an image folder.

Imports only click and light edgexfer modules at top level; errors are edgexfer errors, which the
lazy CLI group prints as one line with the right exit code.
"""
from __future__ import annotations

import click


@click.group("data")
def data() -> None:
    """List builtin datasets or write one as an image folder."""


@data.command("list")
def list_cmd() -> None:
    """Builtin datasets: name, size, native resolution and a one-line description."""
    from edgexfer.data.builtin import builtin_spec, list_builtin

    names = list(list_builtin())
    width = max(len(n) for n in names) + len("builtin:")
    for name in names:
        spec = builtin_spec(name)
        resolution = "{}x{}".format(*spec.shape[:2])
        click.echo(f"{'builtin:' + name:<{width}}  {spec.size:>6,} images  {resolution:>5}  {spec.description}")


@data.command("export")
@click.argument("spec")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace train/ val/ test/ in a non-empty OUT_DIR.")
@click.option("--seed", default=0, show_default=True, help="Seed of the validation split.")
@click.option("--val-fraction", default=0.15, show_default=True, help="Share of each class held out for validation.")
def export_cmd(spec: str, out_dir: str, overwrite: bool, seed: int, val_fraction: float) -> None:
    """Write SPEC (builtin:NAME or a folder) as PNG files OUT_DIR/<split>/<class>/<n>.png."""
    from edgexfer.data import open_dataset, write_image_folder

    dataset = open_dataset(spec, seed=seed, val_fraction=val_fraction)
    out = write_image_folder(dataset, out_dir, overwrite=overwrite)
    counts = dataset.counts()
    click.echo(f"Wrote {dataset.source} to {out}: train {counts['train']}, val {counts['val']}, "
               f"test {counts['test']} images in {len(dataset.class_names)} classes.")

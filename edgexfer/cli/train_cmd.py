"""`edgexfer train`, `edgexfer evaluate`, `edgexfer pretrain`: a thin click layer over edgexfer.train.

Only click and light modules are imported here; edgexfer.train (and TensorFlow) is imported inside
each command, so `edgexfer --help` stays instant. Errors are edgexfer errors: the group prints
"Error: ..." and exits with the error's code. Ctrl-C during training saves a checkpoint and exits 130.
"""
from __future__ import annotations

import json

import click

STRATEGIES = ["auto", "one", "mirrored", "multiworker"]
SPLITS = ["train", "val", "test", "all"]


@click.command()
@click.argument("data")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Run directory to write.")
@click.option("--backbone", default=None,
              help="Backbone name (default: efficientnet_lite0, ImageNet weights, offline; digits_mnv3s for digits).")
@click.option("--weights", default="default", show_default=True, help="imagenet | none | default | PATH.")
@click.option("--image-size", type=int, default=None, help="Square input size (default: the backbone's).")
@click.option("--epochs", type=int, default=10, show_default=True,
              help="Stage 1 epochs with --augment (without it the head is fitted to convergence on cached features).")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Global batch size.")
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True, help="Stage 1 learning rate.")
@click.option("--dropout", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--augment/--no-augment", default=False, help="Flip/rotate/zoom/contrast in the tf.data pipeline.")
@click.option("--fine-tune-layers", type=int, default=0, show_default=True, help="Stage 2: unfreeze the top N layers.")
@click.option("--fine-tune-epochs", type=int, default=0, show_default=True)
@click.option("--fine-tune-lr", type=float, default=1e-5, show_default=True)
@click.option("--patience", type=int, default=3, show_default=True, help="Early stopping (0: off).")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True)
@click.option("--strict", is_flag=True, help="Fail on corrupt files instead of skipping them.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in --out.")
@click.option("--force", is_flag=True, help="Replace a finished run already in --out.")
@click.option("--val-fraction", type=float, default=0.15, show_default=True)
@click.option("--test-fraction", type=float, default=0.15, show_default=True)
@click.option("--labels-per-class", type=int, default=None,
              help="Few-shot: keep at most K labelled training images per class (seeded); the rest count as "
                   "unlabelled images for --adapt-bn.")
@click.option("--adapt-bn", is_flag=True,
              help="AdaBN: re-estimate the backbone's BatchNorm statistics on unlabelled target images "
                   "(the training images, labels unused, plus --unlabeled) before training the head.")
@click.option("--unlabeled", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of unlabelled target-domain images (any layout) for --adapt-bn.")
@click.option("--quiet", is_flag=True,
              help="One line per epoch instead of progress bars (the default when stdout is not a terminal).")
def train(data: str, out: str, backbone: str | None, image_size: int | None, quiet: bool, **options) -> None:
    """Train a classifier on DATA (an image folder or builtin:NAME) into --out."""
    from edgexfer.enginelog import import_tensorflow
    from edgexfer.progress import keras_verbose

    import_tensorflow()
    from edgexfer.train import DEFAULT_BACKBONE
    from edgexfer.train import train as run_training
    from edgexfer.train.trainer import TrainingInterrupted

    try:
        result = run_training(data, out, backbone=backbone or DEFAULT_BACKBONE, image_size=image_size,
                              verbose=keras_verbose(quiet), **options)
    except TrainingInterrupted as exc:
        click.echo(f"Interrupted: checkpoint saved in {exc.args[0]}; continue with --resume.", err=True)
        click.get_current_context().exit(130)
    except KeyboardInterrupt:
        click.echo("Interrupted before training started: nothing was saved.", err=True)
        click.get_current_context().exit(130)
    metrics = result.record.metrics
    where = (f"Run directory: {result.run_dir}" if result.chief else
             "This worker kept no files: the chief (worker 0, or the task of type chief) wrote the run directory.")
    click.echo(f"Done: val accuracy {_pct(metrics.get('val_accuracy'))}, test accuracy "
               f"{_pct(metrics.get('test_accuracy'))}. {where}")


@click.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("data")
@click.option("--split", type=click.Choice(SPLITS), default=None,
              help="Default: the held-out test split on the training data, every image on other data.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def evaluate(run_dir: str, data: str, split: str | None, as_json: bool) -> None:
    """Accuracy and confusion matrix of RUN_DIR's model on DATA."""
    from edgexfer.enginelog import import_tensorflow

    import_tensorflow()
    from edgexfer.train import evaluate as run_evaluation
    from edgexfer.train.metrics import format_confusion

    result = run_evaluation(run_dir, data, split=split)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['source']} [{result['split']}]: accuracy {_pct(result['accuracy'])} on {result['n']} images")
    click.echo(format_confusion(result))


@click.command()
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: models/digits_mnv3s in the repository).")
@click.option("--epochs", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def pretrain(out: str | None, epochs: int, seed: int) -> None:
    """Pretrain the shipped source backbone offline: MobileNetV3Small (alpha 0.75, 32 px) on the
    builtin:mnist digits under domain randomisation (new geometry, stroke, background texture, blend,
    colour, resolution, blur and noise every epoch). Writes the weights, the source head and the card."""
    from edgexfer.errors import UserError
    from edgexfer.train import pretrain as run_pretraining

    if epochs < 1:
        raise UserError(f"Expected --epochs >= 1. Received: {epochs}.")
    card = run_pretraining(out, epochs=epochs, seed=seed)
    click.echo(f"Source: {card['source_data']['spec']} ({card['source_data']['counts']['train']} training digits), "
               f"{card['recipe']['epochs']} epochs x {card['recipe']['copies_per_epoch']} randomised copies.")
    click.echo(f"Source accuracy (randomised images): val {_pct(card['source_val_accuracy'])}, test "
               f"{_pct(card['source_test_accuracy'])}; {card['size_bytes']:,} bytes, sha256 {card['sha256'][:16]}..., "
               f"{card['train_seconds']} s.")
    click.echo("Model card: card.md beside the weights; transfer results: python benchmarks/bench_transfer.py.")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"

"""`edgexfer` command line: a thin click layer over the Python API.

Subcommand modules are imported only when that subcommand runs, so `edgexfer --help` and
`edgexfer predict` never pay for TensorFlow. Errors raised on purpose (EdgexferError) become a
one-line message and the error's exit code; only real bugs show a traceback.
"""
from __future__ import annotations

import importlib
import warnings
import sys

import click

from edgexfer._version import __version__
from edgexfer.errors import EdgexferError

#: name -> ("module", "attribute", "short help"); the module is imported on use.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("edgexfer.cli.train_cmd", "train", "Fine-tune a frozen-backbone classifier on an image folder."),
    "evaluate": ("edgexfer.cli.train_cmd", "evaluate", "Accuracy and confusion matrix of a run on a dataset."),
    "pretrain": ("edgexfer.cli.train_cmd", "pretrain", "Pretrain the shipped source-domain backbone."),
    "data": ("edgexfer.cli.data_cmd", "data", "List builtin datasets or write one as an image folder."),
    "export": ("edgexfer.cli.export_cmd", "export", "Export a run to ONNX / TFLite / OpenVINO with parity checks."),
    "info": ("edgexfer.cli.export_cmd", "info", "Summarise a bundle; --verify re-checks every checksum."),
    "predict": ("edgexfer.cli.runtime_cmd", "predict", "Classify images with a bundle (no TensorFlow)."),
    "bench": ("edgexfer.cli.bench_cmd", "bench", "Benchmark a bundle across formats, backends and batch sizes."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # subcommand not built in this version
                return None
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands from the table, without importing their modules (keeps --help instant)."""
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS) if _exists(COMMANDS[name][0])]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):  # noqa: D401 - click API
        _terminate_like_interrupt()
        try:
            with warnings.catch_warnings():  # restored after the command (CliRunner runs many in one process)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except EdgexferError as exc:
            click.secho(f"Error: {exc}", err=True, fg="red")
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            click.echo("Terminated." if isinstance(exc, Terminated) else "Interrupted.", err=True)
            ctx.exit(143 if isinstance(exc, Terminated) else 130)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A warning as the CLI's one line ("Warning: ..."), not Python's file:line plus a line of source."""
    click.secho(f"Warning: {message}", err=True, fg="yellow")


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `systemctl stop`, a CI timeout), delivered like Ctrl-C so cleanup still runs."""


def _terminate_like_interrupt() -> None:
    """Let SIGTERM unwind the stack like Ctrl-C: staging folders are removed and conversion children
    killed by the same `finally` blocks (Python's default SIGTERM ends the process with no cleanup)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


def _exists(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgexfer")
def main() -> None:
    """edgexfer: transfer-learn an image classifier, export it, run it on any device."""


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

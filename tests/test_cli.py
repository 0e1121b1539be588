"""The CLI group: lazy commands, clean errors, exit codes."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgexfer import errors
from edgexfer.cli import COMMANDS, main


def test_help_lists_every_registered_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "edgexfer" in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("exc, code", [
    (errors.UserError("bad input"), 2),
    (errors.MissingDependencyError("onnxruntime", "cpu"), 2),
    (errors.ParityError("drift"), 1),
    (errors.InternalError("bug"), 70),
])
def test_errors_become_one_line_messages_with_exit_codes(monkeypatch, exc, code):
    @click.command()
    def boom():
        raise exc

    main.add_command(boom, "boom")
    try:
        result = CliRunner().invoke(main, ["boom"])
    finally:
        main.commands.pop("boom")
    assert result.exit_code == code
    assert result.output.startswith("Error: ") and "Traceback" not in result.output
    assert str(exc) in result.output


def test_missing_dependency_names_the_extra():
    assert "pip install 'edgexfer[cpu]'" in str(errors.MissingDependencyError("onnxruntime", "cpu"))


def test_unknown_command_is_a_usage_error():
    assert CliRunner().invoke(main, ["nope"]).exit_code == 2

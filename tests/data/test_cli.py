"""`edgexfer data list|export` through the real CLI entry point."""
from __future__ import annotations

from click.testing import CliRunner

from edgexfer.cli import main
from edgexfer.data import list_builtin


def test_data_list_shows_every_builtin():
    result = CliRunner().invoke(main, ["data", "list"])
    assert result.exit_code == 0, result.output
    for name in list_builtin():
        assert f"builtin:{name}" in result.output
    assert "3,500 images" in result.output


def test_data_export_writes_a_folder(tmp_path):
    result = CliRunner().invoke(main, ["data", "export", "builtin:uci_digits", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "train" in result.output and (tmp_path / "out" / "val").is_dir()
    again = CliRunner().invoke(main, ["data", "export", "builtin:uci_digits", str(tmp_path / "out")])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_unknown_builtin_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["data", "export", "builtin:nope", str(tmp_path / "x")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "mnist" in lines[0]
    assert "Traceback" not in result.output

"""The shell scripts `make test` and the deploy checks run: they must not fail by chance.

Under `set -o pipefail` a pipeline whose reader exits early (`grep -q`, `head`) fails whenever the writer's
next write meets the closed pipe (SIGPIPE, status 141): `unzip -l wheel | grep -q ...` failed 5 of 200 tries
on the CI kind of machine and turned one CI run red.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in [*ROOT.glob("scripts/*.sh"), *ROOT.glob("deploy/**/*.sh"), ROOT / ".ci" / "run"])
EARLY_EXIT = re.compile(r"\|\s*(grep\s+(-\w*q|-\w*m\s*\d|--quiet|--max-count)|head\b)")


def _code(script: Path) -> list[tuple[int, str]]:
    lines = script.read_text().splitlines()
    return [(n, line) for n, line in enumerate(lines, 1) if not line.lstrip().startswith("#")]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_early_exit_reader_under_pipefail(script):
    code = _code(script)
    if not any("pipefail" in line for _, line in code):
        pytest.skip(f"{script.name} does not set pipefail")
    bad = [f"{script.name}:{n}: {line.strip()}" for n, line in code if EARLY_EXIT.search(line.split(" #")[0])]
    assert not bad, "a reader that exits early can SIGPIPE the writer under pipefail; read a file instead:\n" + "\n".join(bad)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_parses(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True).returncode == 0


def test_the_pattern_is_caught():
    assert EARLY_EXIT.search('unzip -l "$w" | grep -q x')
    assert EARLY_EXIT.search("ls | head -1")
    assert not EARLY_EXIT.search("ls | sed -n 1p")
    assert not EARLY_EXIT.search('grep -q x "$work/listing"')

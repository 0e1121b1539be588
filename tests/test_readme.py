"""The README's result tables are exactly what benchmarks/readme_tables.py renders from benchmarks/results/."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_tables_match_the_result_files():
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_table_marker_has_a_result_file():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import readme_tables
    finally:
        sys.path.pop(0)
    text = (ROOT / "README.md").read_text()
    for name in readme_tables.RENDERERS:
        assert f"<!-- table:{name} -->" in text, f"README has no table for {name}"
        assert (ROOT / "benchmarks" / "results" / f"{name}.json").is_file(), f"no result file for {name}"

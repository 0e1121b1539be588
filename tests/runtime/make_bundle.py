"""Build the session test bundle: `python tests/runtime/make_bundle.py OUT_DIR` (the Makefile's `test` runs this).

A thin entry point: the factory is tests/factory.py (`python -m tests.factory OUT_DIR` does the same).
Needs the full environment (TensorFlow and the converters).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.factory import main  # noqa: E402

if __name__ == "__main__":
    main(sys.argv[1:])

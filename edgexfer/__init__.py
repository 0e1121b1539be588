"""edgexfer: from a folder of images to a transfer-learned model running on a device.

This module stays light (no TensorFlow, no inference engine): the public API functions import
their heavy modules when called.
"""
from __future__ import annotations

from typing import Any

from edgexfer._version import __version__

__all__ = ["__version__", "train", "evaluate", "export", "load"]


def train(data: str, out: str, **kwargs: Any):
    """Fine-tune a classifier on `data` (an image folder or `builtin:NAME`); see edgexfer.train.train."""
    from edgexfer.train import train as _train

    return _train(data, out, **kwargs)


def evaluate(run_dir: str, data: str, **kwargs: Any):
    """Accuracy and confusion matrix of a trained run on a dataset; see edgexfer.train.evaluate."""
    from edgexfer.train import evaluate as _evaluate

    return _evaluate(run_dir, data, **kwargs)


def export(run_dir: str, out: str, **kwargs: Any):
    """Export a run to every requested format with parity checks; see edgexfer.export.export."""
    from edgexfer.export import export as _export

    return _export(run_dir, out, **kwargs)


def load(path: str, **kwargs: Any):
    """Load a bundle or model file for inference (no TensorFlow); see edgexfer.runtime.load."""
    from edgexfer.runtime import load as _load

    return _load(path, **kwargs)

"""Classification metrics with numpy only, and the training-curve plot.

Why numpy: the same numbers are computed by evaluate, by train and (later) on devices without
TensorFlow, so they must not depend on Keras metric objects.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return matrix


def summarize(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """accuracy, per-class accuracy (None for a class with no sample), confusion matrix, labels, n."""
    y_true = np.asarray(y_true, np.int64)
    n = int(y_true.shape[0])
    pred = np.argmax(probs, axis=1) if n else np.zeros((0,), np.int64)
    matrix = confusion_matrix(y_true, pred, len(labels))
    support = matrix.sum(axis=1)
    per_class = {label: (float(matrix[i, i] / support[i]) if support[i] else None) for i, label in enumerate(labels)}
    return {"accuracy": float((pred == y_true).mean()) if n else None, "per_class": per_class,
            "confusion": matrix.tolist(), "labels": list(labels), "n": n}


def format_confusion(summary: dict[str, Any]) -> str:
    """A plain-text confusion matrix (rows: true, columns: predicted)."""
    labels = [str(label) for label in summary["labels"]]
    width = max([len(label) for label in labels] + [len(str(v)) for row in summary["confusion"] for v in row] + [4])
    head = " " * (width + 1) + " ".join(label.rjust(width) for label in labels)
    rows = [label.rjust(width) + " " + " ".join(str(v).rjust(width) for v in row)
            for label, row in zip(labels, summary["confusion"])]
    return "\n".join(["true \\ predicted", head, *rows])


def plot_history(history: dict[str, dict[str, list[float]]], path: str | Path) -> Path:
    """Loss and accuracy per epoch, stages one after another, written with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for stage in sorted(history):
        metrics = history[stage]
        for ax, key in zip(axes, ("loss", "accuracy")):
            for prefix in ("", "val_"):
                values = metrics.get(prefix + key, [])
                epochs = range(offset + 1, offset + len(values) + 1)
                ax.plot(epochs, values, marker="o", label=f"{stage} {prefix or 'train_'}{key}")
        offset += len(metrics.get("loss", []))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return Path(path)

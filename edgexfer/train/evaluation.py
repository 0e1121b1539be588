"""`evaluate()`: accuracy, per-class accuracy and confusion matrix of a run on a dataset.

Why the split logic: evaluating on the training images would flatter the model. When DATA is the
dataset the run was trained on, the exact split membership stored in run.json is used (default:
the held-out test split). On any other dataset every image is used unless a split is named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.errors import DataError, UserError
from edgexfer.record import MODEL_FILE, RunRecord

SPLITS = ("train", "val", "test", "all")


def evaluate(run_dir: str | Path, data: Any, *, split: str | None = None, batch_size: int = 128
             ) -> dict[str, Any]:
    """dict(accuracy, per_class, confusion, labels, n, split, source) for the run's model on `data`."""
    if split is not None and split not in SPLITS:
        raise UserError(f"Expected split one of {', '.join(SPLITS)}. Received: '{split}'.")
    record = RunRecord.load(run_dir)
    x, y, used_split, source = _load_images(record, data, split)
    model = _load_model(Path(run_dir))
    from edgexfer.train.metrics import summarize

    probs = model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0) if len(x) else np.zeros((0, 1))
    return {**summarize(y, probs, record.labels), "split": used_split, "source": source}


def _load_model(run_dir: Path) -> Any:
    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise UserError(f"{run_dir} has no {MODEL_FILE} (was the run interrupted? resume it with --resume).")
    import keras

    return keras.models.load_model(path, compile=False)


def _same_source(record: RunRecord, dataset: Any) -> bool:
    return str(record.data.get("source", "")) == str(getattr(dataset, "source", ""))


def _load_images(record: RunRecord, data: Any, split: str | None) -> tuple[np.ndarray, np.ndarray, str, str]:
    """Images (uint8) and labels re-indexed to the run's label order."""
    from edgexfer.train.trainer import open_data

    size = tuple(record.input_shape[:2])
    dataset = open_data(data, seed=int(record.seed))
    if _same_source(record, dataset):
        from edgexfer.data import load_split

        chosen = split or "test"
        parts = ["train", "val", "test"] if chosen == "all" else [chosen]
        arrays = [load_split(record.data, part, size) for part in parts]
        x, y = _concat(arrays)
        return x, y, chosen, dataset.source
    chosen = split or "all"
    parts = ["train", "val", "test"] if chosen == "all" else [chosen]
    x, y = _concat([dataset.arrays(part, size) for part in parts])
    return x, _remap(y, list(dataset.class_names), record.labels), chosen, dataset.source


def _concat(arrays: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    xs = [a[0] for a in arrays if len(a[0])]
    ys = [a[1] for a in arrays if len(a[1])]
    if not xs:
        raise DataError("No images to evaluate in the requested split.")
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def _remap(y: np.ndarray, names: list[str], labels: list[str]) -> np.ndarray:
    """Dataset class indices -> the run's class indices, matched by class name."""
    unknown = sorted(set(names) - set(labels))
    if unknown:
        raise DataError(f"The dataset has classes the model does not know: {', '.join(unknown)}. "
                        f"Model classes: {', '.join(labels)}.")
    lookup = np.array([labels.index(name) for name in names], dtype=np.int64)
    return lookup[np.asarray(y, np.int64)]

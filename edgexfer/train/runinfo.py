"""Building run.json (edgexfer.record.RunRecord) from a finished or interrupted training run.

Why a module of its own: the record is the contract with export and evaluate, so every field is
filled in one place, and the shape of each field is easy to review.
"""
from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import asdict, dataclass
from typing import Any

from edgexfer._versions import installed_versions
from edgexfer.record import RunRecord

CALLER_PREPROCESSING = "raw RGB, NHWC, float32 values 0..255 (uint8 cast by the runtime)"
_PACKAGES = ("edgexfer", "tensorflow", "tensorflow-cpu", "keras", "numpy", "h5py", "matplotlib")


@dataclass
class HyperParams:
    """The training settings exactly as run (stored in run.json under `training`)."""

    epochs: int
    batch_size: int
    learning_rate: float
    dropout: float
    augment: bool
    fine_tune_layers: int
    fine_tune_epochs: int
    fine_tune_lr: float
    patience: int
    seed: int


def package_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **installed_versions(_PACKAGES)}


def make_record(*, labels: list[str], image_size: tuple[int, int], backbone: dict[str, Any],
                data_record: dict[str, Any], hp: HyperParams, plan: dict[str, Any], state: Any,
                evaluation: dict[str, Any], extra_training: dict[str, Any]) -> RunRecord:
    """Assemble the RunRecord; `state` is the checkpoint State (history, best epoch)."""
    training = {**asdict(hp), **plan, **extra_training}
    metrics = {"history": state.history, "best": {"val_loss": state.best_loss, "stage": state.best_stage,
                                                  "epoch": state.best_epoch}, **evaluation}
    return RunRecord(
        labels=list(labels),
        input_shape=[int(image_size[0]), int(image_size[1]), 3],
        preprocessing={"in_graph": backbone.get("preprocessing", ""), "caller": CALLER_PREPROCESSING},
        backbone=backbone,
        data=data_record,
        seed=hp.seed,
        training=training,
        metrics=metrics,
        versions=package_versions(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )


def evaluation_metrics(val: dict[str, Any] | None, test: dict[str, Any] | None) -> dict[str, Any]:
    """val/test accuracy; per-class accuracy and confusion matrix of the test split (else val)."""
    main = test if test and test["n"] else val
    out: dict[str, Any] = {
        "val_accuracy": val["accuracy"] if val else None,
        "test_accuracy": test["accuracy"] if test else None,
        "val_n": val["n"] if val else 0,
        "test_n": test["n"] if test else 0,
    }
    if main:
        out.update(per_class_split="test" if main is test else "val", per_class=main["per_class"],
                   confusion=main["confusion"])
    return out

"""Stage 1 in one chosen mode, timed: cached features vs fitting through the frozen backbone.

Why: the cache is the main training speed-up of the SDK, and its claim ("same head, same
accuracy, much faster") must be measurable. The benchmark (bench_train_cache.py) and
tests/train/test_stages.py call `run_stage1` with the same data, seed and epochs for both modes;
early stopping is off so that both run every epoch. A benchmark helper, so it lives here and not
in the package (it imports Keras, inside the function).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES = ("cached", "through")


@dataclass
class Stage1Result:
    mode: str
    seconds: float  # stage 1 wall time, feature extraction included for "cached"
    val_accuracy: float | None
    test_accuracy: float | None
    history: dict[str, list[float]]
    epoch_seconds: list[float]  # per epoch, as Keras ran them (the first one includes graph tracing)


def run_stage1(data: Any, mode: str, *, backbone: str | None = None, weights: str = "default",
               image_size: int | None = None, epochs: int = 10, batch_size: int = 64, learning_rate: float = 1e-3,
               dropout: float = 0.2, seed: int = 0, verbose: int = 0) -> Stage1Result:
    """Build the classifier, run stage 1 in `mode`, return time and val/test accuracy."""
    import keras

    from edgexfer.train import stages
    from edgexfer.train.backbones import DEFAULT_BACKBONE, build_backbone, get_backbone, normalize_size
    from edgexfer.train.checkpoints import Checkpointer, State
    from edgexfer.train.metrics import summarize
    from edgexfer.train.model import build_classifier, make_head
    from edgexfer.train.strategy import plan_strategy

    if mode not in MODES:
        raise ValueError(f"Expected mode one of {MODES}. Received: {mode!r}.")
    name = backbone or DEFAULT_BACKBONE
    size = normalize_size(image_size or get_backbone(name).default_size)
    keras.utils.set_random_seed(seed)
    plan = plan_strategy("one")
    built = build_backbone(name, weights, size)
    head = make_head(len(data.class_names), dropout)
    classifier = build_classifier(built.model, head, (*size, 3))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Checkpointer(Path(tmp), classifier, State({}))
        timer = epoch_timer()
        fit = stages.Fit(data, size, batch_size, seed, plan, ckpt, patience=0, verbose=verbose, callbacks=[timer])
        started = time.perf_counter()
        if mode == "cached":
            stages.stage1_cached(built.model, head, epochs, learning_rate, fit)
        else:
            stages.stage1_through(classifier, built.model, epochs, learning_rate, fit, augment=False)
        seconds = time.perf_counter() - started
        history = ckpt.state.history.get("stage1", {})
    accuracy = {}
    for split in ("val", "test"):
        if fit.has(split):
            probs, y = stages.predict_pipeline(classifier, fit.pipeline(split))
            accuracy[split] = summarize(y, probs, list(data.class_names))["accuracy"]
    return Stage1Result(mode, seconds, accuracy.get("val"), accuracy.get("test"), history, timer.seconds)


def epoch_timer() -> Any:
    """A Keras callback that records the wall time of every epoch (in `.seconds`)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds.append(round(time.perf_counter() - self._start, 4))

    return EpochTimer()

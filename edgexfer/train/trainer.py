"""`train()`: from a dataset to a run directory (model.keras, run.json, history.png, checkpoints/).

The orchestration only: validation of the arguments, then build (inside the strategy scope and
the precision policy), stage 1, optional stage 2, best weights, float32 model, metrics, record.
Each step lives in its own module (backbones, model, stages, checkpoints, strategy, runinfo).
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer.errors import UserError
from edgexfer.record import MODEL_FILE, RUN_FILE, RunRecord
from edgexfer.train.backbones import (
    DEFAULT_BACKBONE,
    build_backbone,
    get_backbone,
    normalize_size,
    resolve_weights,
)
from edgexfer.train.runinfo import HyperParams
from edgexfer.train.strategy import validate as validate_strategy

HISTORY_PLOT = "history.png"


@dataclass
class AdaptPlan:
    """Whether and from what to run AdaBN before stage 1."""

    enabled: bool = False
    folder: Path | None = None


@dataclass
class TrainResult:
    run_dir: Path  # the run directory the chief writes (on another worker: the --out it was given, untouched)
    record: RunRecord
    model: Any  # the float32 keras.Model that was saved
    chief: bool = True  # False on the other workers of a multi-worker cluster, which keep no files


def train(data: Any, out: str | Path, *, backbone: str = DEFAULT_BACKBONE, weights: str = "default",
          image_size: int | tuple[int, int] | None = None, epochs: int = 10, batch_size: int = 64,
          learning_rate: float = 1e-3, dropout: float = 0.2, seed: int = 0, augment: bool = False,
          fine_tune_layers: int = 0, fine_tune_epochs: int = 0, fine_tune_lr: float = 1e-5, patience: int = 3,
          strategy: str = "auto", strict: bool = False, resume: bool = False, verbose: int = 1,
          val_fraction: float = 0.15, test_fraction: float = 0.15, callbacks: list[Any] | None = None,
          force: bool = False, labels_per_class: int | None = None, adapt_bn: bool = False,
          unlabeled: str | Path | None = None) -> TrainResult:
    """Transfer-learn a classifier on `data` (a folder, "builtin:NAME" or an edgexfer.data.Dataset).

    labels_per_class: keep at most this many labelled training images per class (few-shot); the
    rest of the training split stays available as unlabelled images. adapt_bn: before stage 1,
    re-estimate the backbone's BatchNorm statistics (AdaBN) on the unlabelled target images: the
    training split (labels unused), the images set aside by labels_per_class, and every image under
    `unlabeled`. Ctrl-C saves a checkpoint and a run.json marked "interrupted", then re-raises KeyboardInterrupt;
    `resume=True` continues from the last checkpoint. `callbacks` are extra Keras callbacks. An existing
    finished run in `out` is only replaced with `force=True`.

    strategy="multiworker" (TF_CONFIG on every machine, the same call everywhere): only the chief
    writes `out`; the other workers write to a temporary folder they delete, and get the chief's
    checkpoints over the network. A cluster restarted with the same call continues the unfinished
    run in the chief's `out` (no resume needed; `force=True` starts a new one).
    """
    hp = HyperParams(epochs, batch_size, learning_rate, dropout, augment, fine_tune_layers, fine_tune_epochs,
                     fine_tune_lr, patience, seed)
    _validate(hp)
    spec = get_backbone(backbone)
    resolve_weights(spec, weights)  # a missing weights file fails before any data is loaded
    size = normalize_size(image_size if image_size is not None else spec.default_size)
    validate_strategy(strategy)
    _check_out(Path(out), resume, force)
    if unlabeled is not None and not adapt_bn:
        raise UserError(f"Unlabelled images are only used by AdaBN. Received: unlabeled={unlabeled} without "
                        "adapt_bn. Add --adapt-bn, or drop --unlabeled.")
    dataset = open_data(data, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, strict=strict)
    if labels_per_class is not None:
        dataset = dataset.limit_labels(labels_per_class, seed)
    run = _Run(dataset, Path(out), backbone, weights, size, hp, strategy, verbose, callbacks or [])
    run.adapt = AdaptPlan(adapt_bn, None if unlabeled is None else Path(unlabeled))
    return run.execute(resume, force)


def open_data(data: Any, *, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15,
              strict: bool = False) -> Any:
    """A path or "builtin:NAME" through edgexfer.data.open_dataset; a Dataset object as is."""
    if isinstance(data, (str, Path)):
        from edgexfer.data import open_dataset

        return open_dataset(str(data), seed=seed, val_fraction=val_fraction, test_fraction=test_fraction,
                            strict=strict)
    return data


def _validate(hp: HyperParams) -> None:
    checks = [("epochs", hp.epochs >= 1, ">= 1"), ("batch_size", hp.batch_size >= 1, ">= 1"),
              ("learning_rate", hp.learning_rate > 0, "> 0"), ("dropout", 0 <= hp.dropout < 1, "in [0, 1)"),
              ("fine_tune_layers", hp.fine_tune_layers >= 0, ">= 0"),
              ("fine_tune_epochs", hp.fine_tune_epochs >= 0, ">= 0"), ("fine_tune_lr", hp.fine_tune_lr > 0, "> 0"),
              ("patience", hp.patience >= 0, ">= 0 (0 turns early stopping off)")]
    for name, ok, rule in checks:
        if not ok:
            raise UserError(f"Expected {name} {rule}. Received: {getattr(hp, name)}.")
    if bool(hp.fine_tune_layers) != bool(hp.fine_tune_epochs):
        raise UserError("Fine-tuning needs both --fine-tune-layers N and --fine-tune-epochs E (> 0). Received: "
                        f"layers={hp.fine_tune_layers}, epochs={hp.fine_tune_epochs}.")


def _check_out(run_dir: Path, resume: bool, force: bool) -> None:
    """Refuse to overwrite a finished run by accident (before any data is loaded)."""
    if resume or force or not (run_dir / MODEL_FILE).exists():
        return
    raise UserError(f"Expected --out to be a new run directory. Received: {run_dir}, which already holds a trained "
                    f"{MODEL_FILE}. Pass --force to replace it, --resume to continue it, or choose another --out.")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C once training had started: the checkpoint is saved (args[0]: its folder) and --resume continues.
    A KeyboardInterrupt before that (data loading, building the model) saved nothing."""


class _Run:
    """One training run; holds what the steps share so that each step is a short method."""

    def __init__(self, dataset: Any, run_dir: Path, backbone: str, weights: str, size: tuple[int, int],
                 hp: HyperParams, strategy: str, verbose: int, callbacks: list[Any]) -> None:
        self.dataset, self.run_dir, self.backbone_name, self.weights = dataset, run_dir, backbone, weights
        self.out = run_dir  # run_dir is where THIS process writes: `out` on the chief, a temporary folder elsewhere
        self.size, self.hp, self.strategy_name, self.verbose, self.callbacks = size, hp, strategy, verbose, callbacks
        self.labels = list(dataset.class_names)
        self.unfrozen: list[str] = []
        self.resumed = False
        self.adapt = AdaptPlan()
        self.adapt_record: dict[str, Any] | None = None

    def say(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    def execute(self, resume: bool, force: bool = False) -> TrainResult:
        import keras

        from edgexfer.train.strategy import plan_strategy

        keras.utils.set_random_seed(self.hp.seed)
        self.plan = plan_strategy(self.strategy_name)
        self.say(f"Training on {self.plan.device}, strategy {self.plan.name} ({self.plan.replicas} replica(s)), "
                 f"mixed precision {'on' if self.plan.mixed_precision else 'off'}.")
        self._workspace()
        try:
            return self._train(resume, force)
        finally:
            if not self.plan.chief:
                shutil.rmtree(self.run_dir, ignore_errors=True)

    def _workspace(self) -> None:
        """The chief writes `out`; another worker writes the same files into a temporary folder of its own
        (Keras' multi-worker pattern): every worker runs the same steps, so their collective operations
        match, and none of them races on the run directory, shared filesystem or not."""
        if self.plan.chief:
            return
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"edgexfer-{self.plan.task.replace(' ', '')}-"))
        self.say(f"{self.plan.task} of {self.plan.workers}: the chief writes the run directory; this worker writes "
                 f"only to {self.run_dir}, deleted at the end.")

    def _train(self, resume: bool, force: bool) -> TrainResult:
        from edgexfer.train.strategy import worker_lost

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._build()
        self.ckpt = self._checkpointer(resume, force)
        started = time.perf_counter()
        try:
            self._stages()
        except KeyboardInterrupt as exc:
            self._on_interrupt(time.perf_counter() - started)
            raise TrainingInterrupted(str(self.ckpt.dir)) from exc
        except Exception as exc:
            lost = worker_lost(exc, self.plan)
            if lost is None:
                raise
            self._record({}, "interrupted", time.perf_counter() - started).save(self.run_dir)
            raise lost from exc
        return self._finish(time.perf_counter() - started)

    def _build(self) -> None:
        from edgexfer.train.model import build_classifier, make_head
        from edgexfer.train.strategy import precision

        with precision(self.plan.mixed_precision), self.plan.strategy.scope():
            self.built = build_backbone(self.backbone_name, self.weights, self.size)
            self.head = make_head(len(self.labels), self.hp.dropout)
            self.classifier = build_classifier(self.built.model, self.head, (*self.size, 3))
        self.say(f"Backbone {self.backbone_name} ({self.built.weights} weights), {self.built.feature_dim} features, "
                 f"input {self.size[0]}x{self.size[1]}x3, {len(self.labels)} classes.")

    def _config(self) -> dict[str, Any]:
        """Settings that must match for --resume to continue the same run."""
        return {"backbone": self.backbone_name, "weights": self.built.weights, "image_size": list(self.size),
                "labels": self.labels, "data": str(getattr(self.dataset, "fingerprint", "")),
                "dropout": self.hp.dropout, "augment": self.hp.augment, "seed": self.hp.seed,
                "fine_tune_layers": self.hp.fine_tune_layers, "adapt_bn": self.adapt.enabled}

    def _checkpointer(self, resume: bool, force: bool) -> Any:
        """A new run, or the one the chief's checkpoints continue (the same decision on every worker)."""
        from edgexfer.train.checkpoints import Checkpointer, State, continuation

        automatic = self.plan.name == "multiworker" and not force
        found = (continuation(self.run_dir, self._config(), resume=resume, automatic=automatic)
                 if self.plan.chief else {})
        found = self._from_chief(found)
        if found.get("error"):
            raise UserError(found["error"])
        if found.get("note"):
            self.say(found["note"])
        if found.get("state") is None:
            self._clear_checkpoints()
            return Checkpointer(self.run_dir, self.classifier, State(self._config()), self.plan)
        ckpt = Checkpointer(self.run_dir, self.classifier, State(**found["state"]), self.plan)
        ckpt.continue_run()
        self.resumed = True
        how = "" if resume else " (an unfinished multi-worker run in this directory; force=True starts a new one)"
        self.say(f"Resuming stage {ckpt.state.stage} after epoch {ckpt.state.epoch}{how}.")
        return ckpt

    def _from_chief(self, message: dict[str, Any]) -> dict[str, Any]:
        """The chief's `message` (JSON) on every worker; as is on a single worker."""
        if self.plan.workers <= 1:
            return message
        from edgexfer.train.strategy import broadcast_bytes

        return json.loads(broadcast_bytes(self.plan, json.dumps(message).encode()))

    def _clear_checkpoints(self) -> None:
        from edgexfer.train.checkpoints import CHECKPOINT_DIR

        stale = self.run_dir / CHECKPOINT_DIR
        if stale.exists():
            self.say(f"Starting a new run in {self.run_dir}: removing the checkpoints of the previous one.")
            shutil.rmtree(stale)
        for name in (MODEL_FILE, RUN_FILE):  # an interrupted new run must never sit beside the old model
            (self.run_dir / name).unlink(missing_ok=True)

    def _fit(self) -> Any:
        from edgexfer.train.stages import Fit

        return Fit(self.dataset, self.size, self.hp.batch_size, self.hp.seed, self.plan, self.ckpt,
                   self.hp.patience, self.verbose, self.callbacks)

    def _stages(self) -> None:
        from edgexfer.train import stages

        state, fit, hp = self.ckpt.state, self._fit(), self.hp
        if self.adapt.enabled and not self.resumed:
            self._adapt_batchnorm()
        elif self.adapt.enabled:  # the checkpoint holds the adapted statistics
            self.adapt_record = {"method": "AdaBN", "restored_from_checkpoint": True}
        if state.stage == 1 and not state.stage_done:
            self._stage1(fit)
            self.ckpt.finish_stage()
        if hp.fine_tune_layers and not (state.stage == 2 and state.stage_done):
            if state.stage == 1:
                self.ckpt.restore_best()  # fine-tune from the best head
                state.start_stage(2)
            self.say(f"Stage 2: fine-tuning the top {hp.fine_tune_layers} layers (BatchNorm frozen), "
                     f"lr {hp.fine_tune_lr}, up to {hp.fine_tune_epochs} epochs.")
            self.unfrozen = stages.stage2(self.classifier, self.built.model, hp.fine_tune_layers, hp.fine_tune_epochs,
                                          hp.fine_tune_lr, fit, hp.augment, state.epoch)
            self.ckpt.finish_stage()

    def _stage1(self, fit: Any) -> None:
        """Augmentation on: epochs of Adam through the frozen backbone. Off: the converged fit on cached features."""
        from edgexfer.train import stages

        hp = self.hp
        if hp.augment:
            self.say(f"Stage 1: training the head through the frozen backbone (augmentation on), up to {hp.epochs} "
                     "epochs.")
            stages.stage1_through(self.classifier, self.built.model, hp.epochs, hp.learning_rate, fit, True,
                                  self.ckpt.state.epoch)
            return
        self.say("Stage 1: fitting the head to convergence on cached backbone features (L-BFGS logistic "
                 "regression; --epochs and --learning-rate apply to stage 1 only with --augment).")
        head = stages.stage1_cached(self.built.model, self.head, hp.epochs, hp.learning_rate, fit)
        self.say(f"Stage 1: {head.summary()}")

    def _adapt_batchnorm(self) -> None:
        """AdaBN on every unlabelled target image this run has (labels are never read)."""
        import numpy as np

        from edgexfer.train.adapt import adapt_batchnorm

        parts = [self.dataset.arrays("train", self.size)[0]]
        if hasattr(self.dataset, "unlabeled_arrays"):
            parts.append(self.dataset.unlabeled_arrays(self.size))
        sources = ["the training split (labels unused)"]
        if len(parts) > 1 and len(parts[1]):
            sources.append(f"{len(parts[1])} training images set aside by labels_per_class")
        skipped = 0
        if self.adapt.folder is not None:
            from edgexfer.data.unlabeled import unlabeled_images

            images, skipped = unlabeled_images(self.adapt.folder, self.size)
            parts.append(images)
            sources.append(f"{len(images)} images from {self.adapt.folder}")
        images = np.concatenate(parts).astype(np.float32)
        report = adapt_batchnorm(self.built.model, images, source="; ".join(sources))
        self.adapt_record = {**report.record(), "skipped_unreadable": skipped}
        self.say(f"AdaBN: BatchNorm statistics of {report.layers} layers re-estimated on {report.images} unlabelled "
                 f"target images in {report.seconds:.1f} s (mean shift {report.mean_shift:.3f}).")

    def _float32_model(self) -> Any:
        """The model to save: float32 and free of distribution wrappers (rebuilt when needed)."""
        if not self.plan.mixed_precision and self.plan.name == "one":
            return self.classifier
        from edgexfer.train.model import build_classifier, make_head
        from edgexfer.train.strategy import precision

        with precision(False):
            backbone = build_backbone(self.backbone_name, "none", self.size).model
            model = build_classifier(backbone, make_head(len(self.labels), self.hp.dropout), (*self.size, 3))
        model.set_weights([w for w in self.classifier.get_weights()])
        return model

    def _evaluate_splits(self, model: Any) -> dict[str, Any]:
        from edgexfer.train.metrics import summarize
        from edgexfer.train.runinfo import evaluation_metrics
        from edgexfer.train.stages import predict_pipeline

        fit, results = self._fit(), {}
        for split in ("val", "test"):
            if fit.has(split):
                probs, y = predict_pipeline(model, fit.pipeline(split))
                results[split] = summarize(y, probs, self.labels)
        return evaluation_metrics(results.get("val"), results.get("test"))

    def _record(self, evaluation: dict[str, Any], status: str, seconds: float) -> RunRecord:
        from edgexfer.train.runinfo import make_record

        backbone = {**self.built.record(), "fine_tuned_layers": self.unfrozen}
        extra = {"status": status, "resumed": self.resumed, "train_seconds": round(seconds, 2),
                 "stage1_mode": "through_backbone" if self.hp.augment else "cached_features",
                 "stage1_fit": None if self.hp.augment else self.ckpt.state.head_fit,
                 "strategy_requested": self.strategy_name, "image_size": list(self.size),
                 "labels_per_class": getattr(self.dataset, "info", {}).get("labels_per_class"),
                 "adapt_bn": self.adapt_record if self.adapt.enabled else None}
        return make_record(labels=self.labels, image_size=self.size, backbone=backbone,
                           data_record=self.dataset.to_record(), hp=self.hp, plan=self.plan.record(),
                           state=self.ckpt.state, evaluation=evaluation, extra_training=extra)

    def _on_interrupt(self, seconds: float) -> None:
        self.ckpt.save_interrupt()
        self._record({}, "interrupted", seconds).save(self.run_dir)
        self.say(f"\nCheckpoint saved in {self.ckpt.dir}; run.json marked interrupted; resume=True continues.")

    def _finish(self, seconds: float) -> TrainResult:
        from edgexfer.train.metrics import plot_history

        self.ckpt.restore_best()
        model = self._float32_model()
        evaluation = self._evaluate_splits(model)
        model.save(self.run_dir / MODEL_FILE)
        record = self._record(evaluation, "complete", seconds)
        record.save(self.run_dir)
        if self.plan.chief:  # another worker's folder is deleted unread: plotting there is wasted time
            plot_history(self.ckpt.state.history, self.run_dir / HISTORY_PLOT)
        return TrainResult(self.out, record, model, self.plan.chief)

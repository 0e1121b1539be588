"""The two training stages.

Stage 1 trains the head on a frozen backbone. Without augmentation the backbone output never
changes, so it is computed ONCE per image (`extract_features`) and the head is fitted on the cached
numpy features. Frozen features -> Dense -> softmax is a convex problem (multinomial logistic
regression), so the head is fitted to CONVERGENCE (full-batch L-BFGS, `fit_head`) instead of running
a few epochs of Adam: on a 131-image texture set 5 Adam epochs are ~10 optimizer steps and stopped at
37% test accuracy where the converged fit of the same features reaches 67%. With augmentation every
epoch sees new pixels, so stage 1 fits through the frozen backbone on the augmented tf.data pipeline.

Stage 2 (optional) unfreezes the top N weighted non-BatchNorm layers of the backbone and fits the
whole classifier with a low learning rate; BatchNorm stays frozen and in inference mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgexfer.train.checkpoints import Checkpointer, EpochCallback
from edgexfer.train.model import (
    Head,
    build_head_model,
    compile_model,
    freeze,
    unfreeze_top,
)

INFERENCE_BATCH = 256


@dataclass
class Fit:
    """Everything a stage needs besides the models (so the stage functions stay small)."""

    data: Any  # edgexfer.data.Dataset (or anything with its interface)
    image_size: tuple[int, int]
    batch_size: int
    seed: int
    plan: Any  # strategy.Plan
    ckpt: Checkpointer
    patience: int
    verbose: int = 1
    callbacks: list[Any] = field(default_factory=list)

    def has(self, split: str) -> bool:
        return int(self.data.counts().get(split, 0)) > 0

    def pipeline(self, split: str, *, train: bool = False, augment: bool = False, batch_size: int | None = None
                 ) -> Any:
        return self.data.tf_dataset(split, self.image_size, batch_size or self.batch_size, shuffle=train,
                                    augment=augment, seed=self.seed)

    def keras_callbacks(self, stage: int) -> list[Any]:
        return [EpochCallback(self.ckpt, stage, self.patience), *self.callbacks]


def forward_fn(model: Any) -> Any:
    """The model's inference pass as a graph function with a batch-polymorphic signature, traced once."""
    import tensorflow as tf

    height, width = int(model.input_shape[1]), int(model.input_shape[2])
    spec = tf.TensorSpec((None, height, width, 3), tf.float32)
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def extract_features(model: Any, dataset: Any, forward: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Run a frozen model once over a (images, labels) tf.data pipeline, in order.

    Pass the same `forward` (from `forward_fn`) for several pipelines so the model is traced only once.
    """
    forward = forward or forward_fn(model)
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(np.asarray(forward(images), dtype=np.float32))
        labels.append(np.asarray(batch_labels, dtype=np.int64))
    if not features:
        return np.zeros((0, int(model.output_shape[-1])), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(features), np.concatenate(labels)


def cache_features(backbone: Any, fit: Fit) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Backbone features of the train and validation splits (the one expensive pass, one trace)."""
    splits = ["train"] + (["val"] if fit.has("val") else [])
    batch = max(fit.batch_size, INFERENCE_BATCH)  # inference only: bigger batches, fewer graph calls
    forward = forward_fn(backbone)
    return {split: extract_features(backbone, fit.pipeline(split, batch_size=batch), forward) for split in splits}


def stage1_cached(backbone: Any, head: Head, epochs: int, learning_rate: float, fit: Fit,
                  initial_epoch: int = 0) -> HeadFit:
    """Fit the head to convergence on cached features and write it into the shared Dense layer.

    The problem is convex and the fit runs to convergence, so `epochs`, `learning_rate` and
    `initial_epoch` do not apply here (they are kept for the callers of the epoch API, e.g.
    benchmarks/stage1_modes.py), and neither does dropout: L2 regularisation chosen on the validation
    split does its job, and the Dropout layer is inactive at inference anyway. The fit is numpy, so it
    runs the same under any tf.distribute strategy (Keras' fit on cached features crashed under
    MultiWorkerMirroredStrategy); only `set_weights` touches the (possibly distributed) variables.
    Stage 1 is ONE history record (one "epoch") and one checkpoint; resume re-runs it when it had
    not finished (it takes seconds once the features are cached).
    """
    freeze(backbone)
    cached = cache_features(backbone, fit)
    result = fit_head(cached["train"], cached.get("val"), int(head.dense.units))
    head.dense.set_weights([result.kernel, result.bias])
    fit.ckpt.state.head_fit = result.record()
    fit.ckpt.state.history.pop("stage1", None)  # a re-run after an interrupt replaces, not appends
    with fit.plan.strategy.scope():
        head_model = build_head_model(int(backbone.output_shape[-1]), head)
    _report_as_one_epoch(head_model, fit, result.logs)
    return result


def _report_as_one_epoch(model: Any, fit: Fit, logs: dict[str, float]) -> None:
    """Checkpoint, history and user callbacks see the fit as one epoch of stage 1 (as Keras would)."""
    import keras

    callbacks = keras.callbacks.CallbackList(fit.keras_callbacks(1), model=model)
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    callbacks.on_epoch_end(0, dict(logs))
    callbacks.on_train_end(dict(logs))


# --------------------------------------------------------------------------- the converged head fit

#: L2 strengths tried on the validation split, on the mean cross-entropy of features centred and
#: divided by one global scale (average channel variance 1). Strongest first: each fit warm-starts
#: the next, weaker one.
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
#: Without a validation split: scikit-learn's default C=1 for ~1,000 samples.
DEFAULT_L2 = 1e-3
MAX_ITERATIONS = 2000
GRADIENT_TOLERANCE = 1e-5  # max |gradient|; 1e-6 doubled the iterations without changing an accuracy (bench_stage1)
#: Below this many multiply-adds per matrix product (samples x features x classes) BLAS runs on one
#: thread: the products are too small to share, and on a busy machine threads that wait for each
#: other made the uci_digits fit 6x slower (26 s instead of 4 s).
ONE_THREAD_BELOW = 50_000_000


@dataclass
class HeadFit:
    """The converged head as a Dense kernel and bias over RAW features (the scaling folded in)."""

    kernel: np.ndarray  # float32 [features, classes]
    bias: np.ndarray  # float32 [classes]
    l2: float
    selected_on: str  # "val" or "default (no validation split)"
    feature_scale: float
    iterations: int
    converged: bool
    grid: list[dict[str, Any]]  # per L2 strength: iterations, converged, val_loss, val_accuracy
    logs: dict[str, float]  # loss / accuracy on train, val_loss / val_accuracy on val
    seconds: float

    def summary(self) -> str:
        val = f", val accuracy {self.logs['val_accuracy']:.4f}" if "val_accuracy" in self.logs else ""
        state = "converged" if self.converged else "NOT converged (L-BFGS stopped early)"
        return (f"L2 {self.l2:g} ({self.selected_on}), {self.iterations} L-BFGS iterations in all, {state}, "
                f"{self.seconds:.2f} s; train accuracy {self.logs['accuracy']:.4f}{val}.")

    def record(self) -> dict[str, Any]:
        """What run.json keeps under training.stage1_fit (and checkpoints/state.json for resume)."""
        return {"method": "multinomial logistic regression, full-batch L-BFGS to convergence",
                "features": "centred, divided by one global scale (folded into the Dense kernel and bias)",
                "l2": self.l2, "selected_on": self.selected_on, "feature_scale": self.feature_scale,
                "iterations": self.iterations, "converged": self.converged, "grid": self.grid,
                "seconds": round(self.seconds, 3)}


@dataclass
class _Solution:
    weights: np.ndarray  # float64 [features, classes], on scaled features
    bias: np.ndarray
    iterations: int
    converged: bool


def feature_scaling(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-channel mean and ONE global scale (the RMS of the centred features).

    Why not per-channel standardisation: a channel that is (nearly) dead on a few training images
    gets a tiny std, and dividing by it turns that channel's unseen test values into huge inputs (a
    head trained that way scored 47% at 5 labels/class where one global scale gave 100%; the test
    with channels dead on the training images reproduces it).
    """
    mean = x.mean(axis=0)
    scale = float(np.sqrt(np.mean(np.square(x - mean)))) if len(x) else 0.0
    return mean, (scale if scale > 1e-12 else 1.0)


def fold_scaling(weights: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """W' = W / s, b' = b - (mean / s) . W: the same logits from raw features, so export sees a plain Dense."""
    kernel = weights / scale
    return kernel.astype(np.float32), (bias - mean @ kernel).astype(np.float32)


def _objective(params: np.ndarray, x: np.ndarray, onehot: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Mean cross-entropy + l2/2 |W|^2 (bias not penalised) and its gradient."""
    d, k = x.shape[1], onehot.shape[1]
    w, b = params[:d * k].reshape(d, k), params[d * k:]
    logp = _log_softmax(x @ w + b)
    residual = (np.exp(logp) - onehot) / len(x)
    loss = -float(np.sum(onehot * logp)) / len(x) + 0.5 * l2 * float(np.sum(w * w))
    return loss, np.concatenate([(x.T @ residual + l2 * w).ravel(), residual.sum(axis=0)])


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def fit_logistic(x: np.ndarray, y: np.ndarray, num_classes: int, l2: float, start: _Solution | None = None
                 ) -> _Solution:
    """Multinomial logistic regression on (already scaled) features, L-BFGS run to convergence."""
    from edgexfer._deps import require

    optimize = require("scipy.optimize", purpose="the stage 1 head fit")
    d = x.shape[1]
    onehot = np.eye(num_classes)[y]
    init = (np.concatenate([start.weights.ravel(), start.bias]) if start is not None
            else np.zeros(d * num_classes + num_classes))
    with _blas_threads(x.size * num_classes):
        res = optimize.minimize(_objective, init, args=(x, onehot, l2), jac=True, method="L-BFGS-B",
                                options={"maxiter": MAX_ITERATIONS, "gtol": GRADIENT_TOLERANCE, "ftol": 1e-10})
    params = res.x
    return _Solution(params[:d * num_classes].reshape(d, num_classes), params[d * num_classes:], int(res.nit),
                     bool(res.success))


def _blas_threads(multiply_adds: int) -> Any:
    """One BLAS thread for small products (threadpoolctl comes with scikit-learn); else no limit."""
    import contextlib

    from edgexfer._deps import available

    if multiply_adds >= ONE_THREAD_BELOW or not available("threadpoolctl"):
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def loss_and_accuracy(x: np.ndarray, y: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of a linear softmax head."""
    logp = _log_softmax(x @ weights + bias)
    return float(-logp[np.arange(len(y)), y].mean()), float((logp.argmax(axis=1) == y).mean())


def fit_head(train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray] | None, num_classes: int,
             grid: tuple[float, ...] = L2_GRID) -> HeadFit:
    """The converged head. With a validation split the L2 strength is the grid point with the best
    validation accuracy (ties: the lower validation loss), each fitted on the training split only;
    without one it is DEFAULT_L2."""
    import time

    started = time.perf_counter()
    mean, scale = feature_scaling(train[0].astype(np.float64))
    x, y = _scaled(train, mean, scale)
    held = _scaled(val, mean, scale) if val is not None and len(val[1]) else None
    points, (point, solution) = _search_l2(x, y, held, num_classes, grid if held else (DEFAULT_L2,))
    logs = dict(zip(("loss", "accuracy"), loss_and_accuracy(x, y, solution.weights, solution.bias)))
    if held:
        logs.update(val_loss=point["val_loss"], val_accuracy=point["val_accuracy"])
    kernel, bias = fold_scaling(solution.weights, solution.bias, mean, scale)
    return HeadFit(kernel, bias, point["l2"], "val" if held else "default (no validation split)", scale,
                   sum(p["iterations"] for p in points), solution.converged, points, logs,
                   time.perf_counter() - started)


def _scaled(split: tuple[np.ndarray, np.ndarray], mean: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    return (split[0].astype(np.float64) - mean) / scale, np.asarray(split[1], np.int64)


def _search_l2(x: np.ndarray, y: np.ndarray, held: tuple[np.ndarray, np.ndarray] | None, num_classes: int,
               grid: tuple[float, ...]) -> tuple[list[dict[str, Any]], tuple[dict[str, Any], _Solution]]:
    """Fit every grid point (strongest first, each warm-starting the next); pick the best on `held`."""
    points: list[dict[str, Any]] = []
    best: tuple[dict[str, Any], _Solution] | None = None
    solution = None
    for l2 in sorted(grid, reverse=True):
        solution = fit_logistic(x, y, num_classes, l2, solution)
        point: dict[str, Any] = {"l2": l2, "iterations": solution.iterations, "converged": solution.converged}
        if held:
            point["val_loss"], point["val_accuracy"] = loss_and_accuracy(*held, solution.weights, solution.bias)
        points.append(point)
        if best is None or (held and _rank(point) < _rank(best[0])):
            best = (point, solution)
    if best is None:
        raise ValueError(f"Expected at least one L2 strength in the grid. Received: {grid!r}.")
    return points, best


def _rank(point: dict[str, Any]) -> tuple[float, float]:
    return -point["val_accuracy"], point["val_loss"]


def stage1_through(classifier: Any, backbone: Any, epochs: int, learning_rate: float, fit: Fit,
                   augment: bool, initial_epoch: int = 0) -> Any:
    """Fit the head through the frozen backbone (used with augmentation, and by the benchmark)."""
    freeze(backbone)
    with fit.plan.strategy.scope():
        compile_model(classifier, learning_rate, fit.plan.jit_compile)
    return _fit_full(classifier, epochs, fit, augment, initial_epoch, stage=1)


def stage2(classifier: Any, backbone: Any, n_layers: int, epochs: int, learning_rate: float, fit: Fit,
           augment: bool, initial_epoch: int = 0) -> list[str]:
    """Unfreeze the top `n_layers` (BatchNorm excluded), recompile with a low LR, fit end to end."""
    unfrozen = unfreeze_top(backbone, n_layers)
    with fit.plan.strategy.scope():
        compile_model(classifier, learning_rate, fit.plan.jit_compile)
    _fit_full(classifier, epochs, fit, augment, initial_epoch, stage=2)
    freeze(backbone)
    return unfrozen


def _fit_full(classifier: Any, epochs: int, fit: Fit, augment: bool, initial_epoch: int, stage: int) -> Any:
    """Keras' fit; under MultiWorkerMirroredStrategy the same epochs through strategy.distributed_fit
    (Keras 3's fit does not run there)."""
    val = fit.pipeline("val") if fit.has("val") else None
    train = fit.pipeline("train", train=True, augment=augment)
    if fit.plan.name == "multiworker":
        from edgexfer.train.strategy import distributed_fit

        return distributed_fit(classifier, train, val, plan=fit.plan, epochs=epochs, initial_epoch=initial_epoch,
                               callbacks=fit.keras_callbacks(stage), verbose=fit.verbose)
    return classifier.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                          verbose=fit.verbose, callbacks=fit.keras_callbacks(stage))


def predict_pipeline(model: Any, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels over a (images, labels) pipeline, in order."""
    return extract_features(model, dataset)

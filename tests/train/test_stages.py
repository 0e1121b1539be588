"""Stage 1 freezes the backbone and fits the head to convergence on cached features; stage 2 keeps
BatchNorm statistics; resume and distribution strategies work with the one-record stage 1."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from edgexfer.record import RunRecord
from edgexfer.train import DIGITS_BACKBONE, build_backbone, train
from edgexfer.train.backbones import flat_layers
from edgexfer.train.model import make_head, unfreeze_top
from edgexfer.train.stages import (
    L2_GRID,
    feature_scaling,
    fit_head,
    fit_logistic,
    fold_scaling,
    loss_and_accuracy,
)

HERE = Path(__file__).parent


def _backbone_of(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.slow
@pytest.mark.parametrize("augment", [False, True], ids=["cached", "through_backbone"])
def test_stage1_leaves_backbone_weights_unchanged(tiny_data, tmp_path, augment):
    result = train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, epochs=2, augment=augment, verbose=0, patience=0)
    fresh = build_backbone(DIGITS_BACKBONE).model
    trained = _backbone_of(result.model)
    for before, after in zip(fresh.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(before, after)
    training, history = result.record.training, result.record.metrics["history"]["stage1"]
    assert training["stage1_mode"] == ("through_backbone" if augment else "cached_features")
    assert {len(v) for v in history.values()} == {2 if augment else 1}  # the converged fit is ONE record
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    if augment:
        assert training["stage1_fit"] is None
    else:
        fitted = training["stage1_fit"]
        assert fitted["converged"] and fitted["selected_on"] == "val" and fitted["l2"] in L2_GRID
        assert history["val_loss"][0] == pytest.approx(result.record.metrics["best"]["val_loss"])


def _same(weights: dict, path: str) -> str:
    """The key of `weights` naming the same variable as `path` (classifier paths may be prefixed)."""
    return next(k for k in weights if k == path or k.endswith("/" + path))


class Snapshot(keras.callbacks.Callback):
    """Backbone weights at the end of every fit (the last one is stage 2, before best weights)."""

    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_train_end(self, logs=None):
        self.snapshots.append({w.path: np.array(w) for w in self.model.weights})


@pytest.mark.slow
def test_stage2_trains_top_layers_but_keeps_batchnorm_statistics(tiny_data, tmp_path):
    snap = Snapshot()
    result = train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, epochs=1, fine_tune_layers=4, fine_tune_epochs=2, fine_tune_lr=1e-3,
                   verbose=0, patience=0, callbacks=[snap])
    fresh = {v.path: np.array(v) for v in build_backbone(DIGITS_BACKBONE).model.weights}
    after_stage2 = snap.snapshots[-1]
    bn_paths = [p for p in fresh if "moving_mean" in p or "moving_variance" in p]
    assert bn_paths
    for path in bn_paths:
        np.testing.assert_array_equal(after_stage2[_same(after_stage2, path)], fresh[path])
    tuned = result.record.backbone["fine_tuned_layers"]
    assert len(tuned) == 4 and not any("bn" in name.lower() or "batchnorm" in name.lower() for name in tuned)
    changed = [p for p in fresh if not np.array_equal(after_stage2[_same(after_stage2, p)], fresh[p])]
    assert changed and {p.rsplit("/", 1)[0] for p in changed} <= set(tuned)


def test_unfreeze_top_skips_batchnorm_and_preprocessing():
    backbone = build_backbone("resnet50", "none", 32).model
    chosen = unfreeze_top(backbone, 3)
    trainable = [layer for layer in flat_layers(backbone) if layer.trainable and layer.weights]
    assert [layer.name for layer in reversed(trainable)] == chosen and len(chosen) == 3
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    assert not unfreeze_top(backbone, 10_000).count("preprocess_caffe_bgr_mean")


@pytest.mark.slow
def test_converged_cached_stage1_is_at_least_as_good_as_adam_through_the_backbone(tiny_data):
    from benchmarks.stage1_modes import run_stage1

    options = dict(epochs=6, batch_size=16, learning_rate=3e-3, seed=1, backbone=DIGITS_BACKBONE)
    cached = run_stage1(tiny_data, "cached", **options)
    through = run_stage1(tiny_data, "through", **options)
    assert len(cached.history["loss"]) == 1 and len(through.history["loss"]) == 6
    assert cached.val_accuracy > 0.8  # chance: 0.33
    assert cached.val_accuracy >= through.val_accuracy - 0.05
    assert cached.test_accuracy >= through.test_accuracy - 0.1


# --------------------------------------------------------------------------- the converged head fit (numpy)


def _blobs(rng, n, centres, noise, offset=5.0, gain=3.0):
    """Gaussian classes around `centres`, then an affine map like a backbone's (not zero-mean, not unit)."""
    y = rng.integers(0, len(centres), n)
    x = centres[y] + rng.normal(0, noise, (n, centres.shape[1]))
    return (offset + gain * x).astype(np.float32), y


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("noise", [0.3, 2.5], ids=["separable", "noisy"])
def test_fit_matches_scikit_learn_logistic_regression(noise):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 32))
    train_, val, test = (_blobs(rng, n, centres, noise) for n in (300, 100, 1000))
    mean, scale = feature_scaling(train_[0].astype(np.float64))
    scaled = [(x - mean) / scale for x, _ in (train_, test)]
    head = fit_head(train_, val, 4)
    assert head.converged and head.selected_on == "val" and len(head.grid) == len(L2_GRID)
    accuracy = float(((test[0] @ head.kernel + head.bias).argmax(1) == test[1]).mean())
    reference = max(LogisticRegression(C=c, max_iter=10_000).fit(scaled[0], train_[1]).score(scaled[1], test[1])
                    for c in (0.01, 0.1, 1.0, 10.0))
    assert accuracy >= reference - 0.02
    # the same objective (C = 1 / (l2 n)) gives the same probabilities: the fit has converged
    same = fit_head(train_, val, 4, grid=(1e-2,))
    sk = LogisticRegression(C=1 / (1e-2 * len(train_[1])), max_iter=10_000, tol=1e-10).fit(scaled[0], train_[1])
    np.testing.assert_allclose(_softmax(test[0] @ same.kernel + same.bias), sk.predict_proba(scaled[1]), atol=1e-3)


def test_folded_dense_gives_the_probabilities_of_the_unfolded_model():
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 200, rng.normal(0, 1, (3, 16)), 1.0, offset=40.0, gain=12.0)
    mean, scale = feature_scaling(x.astype(np.float64))
    solution = fit_logistic((x - mean) / scale, y, 3, 1e-3)
    unfolded = _softmax(((x - mean) / scale) @ solution.weights + solution.bias)
    kernel, bias = fold_scaling(solution.weights, solution.bias, mean, scale)
    head = make_head(3, dropout=0.2)
    features = keras.Input((16,))
    model = keras.Model(features, head(features))
    head.dense.set_weights([kernel, bias])
    np.testing.assert_allclose(model.predict(x, verbose=0), unfolded, atol=1e-4)
    assert model.predict(x, verbose=0).argmax(1).tolist() == unfolded.argmax(1).tolist()


def _few_shot(rng, n_per_class, dead):
    """8 informative channels; 24 more that are (nearly) dead on the labelled images, alive elsewhere."""
    y = np.repeat(np.arange(3), n_per_class)
    signal = np.eye(3, 8)[y] * 3 + rng.normal(0, 1, (len(y), 8))
    rest = rng.normal(0, 1e-4 if dead else 1.0, (len(y), 24))
    return np.concatenate([signal, rest], axis=1).astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_channels_dead_on_the_few_training_images_do_not_blow_up(seed):
    rng = np.random.default_rng(seed)
    train_, val, test = _few_shot(rng, 5, dead=True), _few_shot(rng, 5, dead=False), _few_shot(rng, 200, dead=False)
    head = fit_head(train_, val, 3)
    accuracy = float(((test[0] @ head.kernel + head.bias).argmax(1) == test[1]).mean())
    oracle = fit_head((train_[0][:, :8], train_[1]), (val[0][:, :8], val[1]), 3)  # the dead channels removed
    oracle_accuracy = float(((test[0][:, :8] @ oracle.kernel + oracle.bias).argmax(1) == test[1]).mean())
    assert accuracy >= oracle_accuracy - 0.06 and accuracy > 0.8
    assert np.abs(head.kernel[8:]).max() < 0.01 * np.abs(head.kernel[:8]).max()
    # why one global scale: per-channel standardisation multiplies those channels by ~1e4 on test
    m, sd = train_[0].mean(0), train_[0].std(0)
    per_channel = fit_logistic((train_[0] - m) / sd, train_[1], 3, 1e-3)
    assert loss_and_accuracy((test[0] - m) / sd, test[1], per_channel.weights, per_channel.bias)[1] < 0.6


def test_without_a_validation_split_the_default_l2_is_used():
    rng = np.random.default_rng(3)
    train_ = _blobs(rng, 120, rng.normal(0, 1, (3, 8)), 0.5)
    head = fit_head(train_, None, 3)
    assert head.selected_on.startswith("default") and len(head.grid) == 1 and head.converged
    assert set(head.logs) == {"loss", "accuracy"} and head.logs["accuracy"] > 0.9


def test_constant_features_give_a_finite_head():
    head = fit_head((np.ones((12, 5), np.float32), np.arange(12) % 3), None, 3)
    assert head.feature_scale == 1.0 and np.isfinite(head.kernel).all() and np.isfinite(head.bias).all()


# --------------------------------------------------------------------------- resume with the one-record stage 1


class InterruptAtEpoch(keras.callbacks.Callback):
    """Ctrl-C right after epoch index `index` (0: stage 1's only record; >0: only stage 2 has it)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.index:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupt_in_stage2_resumes_without_refitting_stage1(tiny_data, tmp_path):
    settings = dict(backbone=DIGITS_BACKBONE, epochs=1, fine_tune_layers=2, fine_tune_epochs=3, patience=0, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path, callbacks=[InterruptAtEpoch(1)], **settings)
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["stage"] == 2 and state["epoch"] == 2 and state["head_fit"]["converged"]
    result = train(tiny_data, tmp_path, resume=True, **settings)
    history = result.record.metrics["history"]
    assert len(history["stage1"]["loss"]) == 1 and len(history["stage2"]["loss"]) == 3
    assert result.record.training["stage1_fit"] == state["head_fit"]  # kept from the checkpoint state
    assert result.record.training["status"] == "complete" and result.record.training["resumed"]


@pytest.mark.slow
def test_interrupt_at_the_end_of_stage1_refits_it_once(tiny_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, epochs=1, patience=0, verbose=0, callbacks=[InterruptAtEpoch(0)])
    assert RunRecord.load(tmp_path).training["status"] == "interrupted"
    result = train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, epochs=1, patience=0, verbose=0, resume=True)
    assert {len(v) for v in result.record.metrics["history"]["stage1"].values()} == {1}  # replaced, not appended
    assert result.record.metrics["test_accuracy"] > 0.6 and (tmp_path / "model.keras").is_file()

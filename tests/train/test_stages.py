"""Stage 1 freezes the backbone, stage 2 keeps BatchNorm statistics, the feature cache changes nothing."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from edgexfer.train import DEFAULT_BACKBONE, build_backbone, train
from edgexfer.train.backbones import flat_layers
from edgexfer.train.model import unfreeze_top


def _backbone_of(model):
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


@pytest.mark.slow
@pytest.mark.parametrize("augment", [False, True], ids=["cached", "through_backbone"])
def test_stage1_leaves_backbone_weights_unchanged(tiny_data, tmp_path, augment):
    result = train(tiny_data, tmp_path, epochs=2, augment=augment, verbose=0, patience=0)
    fresh = build_backbone(DEFAULT_BACKBONE).model
    trained = _backbone_of(result.model)
    for before, after in zip(fresh.get_weights(), trained.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert result.record.training["stage1_mode"] == ("through_backbone" if augment else "cached_features")


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
    result = train(tiny_data, tmp_path, epochs=1, fine_tune_layers=4, fine_tune_epochs=2, fine_tune_lr=1e-3,
                   verbose=0, patience=0, callbacks=[snap])
    fresh = {v.path: np.array(v) for v in build_backbone(DEFAULT_BACKBONE).model.weights}
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
def test_cached_and_through_backbone_stage1_reach_the_same_accuracy(tiny_data):
    from edgexfer.train.compare import run_stage1

    cached = run_stage1(tiny_data, "cached", epochs=6, batch_size=16, learning_rate=3e-3, seed=1)
    through = run_stage1(tiny_data, "through", epochs=6, batch_size=16, learning_rate=3e-3, seed=1)
    assert len(cached.history["loss"]) == len(through.history["loss"]) == 6
    assert cached.val_accuracy > 0.6  # chance: 0.33
    assert abs(cached.val_accuracy - through.val_accuracy) <= 0.1
    assert abs(cached.history["loss"][-1] - through.history["loss"][-1]) < 0.25

"""AdaBN: BatchNorm statistics re-estimated on target images; weights, flags and momenta untouched."""
from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.train.adapt import adapt_batchnorm, batchnorm_layers


def _net() -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


@pytest.mark.parametrize("batch_size", [1000, 7])  # one chunk, and a cumulative average over chunks
def test_first_layer_statistics_equal_the_target_moments(batch_size):
    net = _net()
    net.trainable = False
    images = np.random.default_rng(0).normal(50.0, 20.0, (60, 8, 8, 3)).astype(np.float32)
    conv_out = np.asarray(keras.Model(net.input, net.get_layer("conv").output)(images))
    weights_before = [w.copy() for w in net.get_layer("conv").get_weights()]
    report = adapt_batchnorm(net, images, source="test", batch_size=batch_size)
    bn1 = net.get_layer("bn1")
    np.testing.assert_allclose(np.asarray(bn1.moving_mean), conv_out.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-4)
    if batch_size >= len(images):
        np.testing.assert_allclose(np.asarray(bn1.moving_variance), conv_out.var(axis=(0, 1, 2)), rtol=1e-3)
    assert report.images == 60 and report.layers == 2 and report.mean_shift > 0
    assert net.trainable is False and all(layer.momentum == 0.99 for layer in batchnorm_layers(net))
    for a, b in zip(weights_before, net.get_layer("conv").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_adapted_network_normalises_the_target_domain():
    net = _net()
    images = np.random.default_rng(1).normal(120.0, 30.0, (64, 8, 8, 3)).astype(np.float32)
    adapt_batchnorm(net, images)
    bn_out = np.asarray(keras.Model(net.input, net.get_layer("bn2").output)(images, training=False))
    assert np.abs(bn_out.mean(axis=(0, 1, 2))).max() < 0.05
    assert np.abs(bn_out.std(axis=(0, 1, 2)) - 1.0).max() < 0.05


def test_adapt_under_mixed_precision_keeps_float32_statistics():
    """A GPU run builds the backbone under mixed_float16: BatchNorm statistics stay float32 and still match
    the target moments (up to float16 activations)."""
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        net = _net()
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    images = np.random.default_rng(2).normal(80.0, 25.0, (40, 8, 8, 3)).astype(np.float32)
    conv_out = np.asarray(keras.Model(net.input, net.get_layer("conv").output)(images)).astype(np.float32)
    adapt_batchnorm(net, images, batch_size=16)
    bn1 = net.get_layer("bn1")
    assert bn1.moving_mean.dtype == "float32" and bn1.dtype_policy.name == "mixed_float16"
    np.testing.assert_allclose(np.asarray(bn1.moving_mean), conv_out.mean(axis=(0, 1, 2)), rtol=2e-3, atol=2e-2)


def test_adapt_refuses_too_few_images_and_models_without_batchnorm():
    with pytest.raises(UserError, match="at least 2"):
        adapt_batchnorm(_net(), np.zeros((1, 8, 8, 3), np.float32))
    plain = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(UserError, match="no"):
        adapt_batchnorm(plain, np.zeros((4, 8, 8, 3), np.float32))


@pytest.mark.slow
def test_train_with_adapt_bn_and_few_labels_records_both(tmp_path):
    from tests.factory import trained_run

    run_dir = trained_run(tmp_path / "run", labels_per_class=2, adapt_bn=True, val_fraction=0.0)
    record = json.loads((run_dir / "run.json").read_text())
    adapt = record["training"]["adapt_bn"]
    assert adapt["method"] == "AdaBN" and adapt["batchnorm_layers"] > 10
    assert adapt["images"] == sum(c["train"] for c in record["data"]["counts"]["per_class"].values()) + len(
        record["data"]["splits"]["unlabeled"]["indices"])
    assert record["training"]["labels_per_class"] == 2
    assert all(c["train"] == 2 for c in record["data"]["counts"]["per_class"].values())
    from edgexfer.export import export  # an adapted model exports like any other, parity included

    result = export(run_dir, tmp_path / "bundle", formats=["tflite"], parity_samples=50)
    assert result.ok and result.manifest.artifacts["tflite"].parity.passed


def test_cli_unlabeled_without_adapt_bn_is_a_user_error(tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import main

    result = CliRunner().invoke(main, ["train", "builtin:uci_digits", "--out", str(tmp_path / "r"),
                                       "--unlabeled", str(tmp_path)])
    assert result.exit_code == 2 and "--adapt-bn" in result.output and "Traceback" not in result.output

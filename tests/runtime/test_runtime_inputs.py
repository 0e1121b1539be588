"""Bad input: a UserError (a ValueError) naming what was expected and what was received."""
from __future__ import annotations

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.runtime import load
from edgexfer.runtime.inputs import dequantize, quantize
from edgexfer.manifest import QuantParams

pytestmark = pytest.mark.runtime

GOOD = np.zeros((2, 32, 32, 3), np.uint8)


def _nan():
    x = GOOD.astype(np.float32)
    x[1, 3, 4, 0] = np.nan
    return x


def _inf():
    x = GOOD.astype(np.float32)
    x[0, 0, 0, 2] = np.inf
    return x


BAD = {  # case -> (input, words the message must contain)
    "rank2": (np.zeros((32, 32), np.uint8), ["rank 2", "(32, 32, 3)"]),
    "rank5": (np.zeros((1, 1, 32, 32, 3), np.uint8), ["rank 5"]),
    "channels": (np.zeros((2, 32, 32, 4), np.uint8), ["Expected 3 channels", "4 channels"]),
    "channels_first": (np.zeros((2, 3, 32, 32), np.uint8), ["channels-first"]),
    "size": (np.zeros((2, 28, 28, 3), np.uint8), ["32x32", "28x28", "not resized"]),
    "nan": (_nan(), ["finite", "image 1"]),
    "inf": (_inf(), ["finite", "image 0"]),
    "empty": (np.zeros((0, 32, 32, 3), np.float32), ["empty batch"]),
    "empty_list": ([], ["empty list"]),
    "dtype_int64": (GOOD.astype(np.int64), ["dtype int64", "uint8"]),
    "dtype_bool": (GOOD.astype(bool), ["dtype bool"]),
    "type": ({"image": 1}, ["dict"]),
    "missing_file": ("/no/such/image.png", ["not found"]),
    "list_item": ([GOOD], ["item 0", "(2, 32, 32, 3)"]),
}


@pytest.fixture(scope="module")
def onnx_model(bundle_dir):
    with load(bundle_dir, format="onnx") as m:
        yield m


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_message(onnx_model, case):
    x, words = BAD[case]
    with pytest.raises(ValueError) as info:
        onnx_model.predict(x)
    assert isinstance(info.value, UserError)
    for word in words:
        assert word in str(info.value), str(info.value)


def test_bad_input_checked_for_every_artifact(bundle_dir, artifact_name):
    with load(bundle_dir, format=artifact_name) as m:
        with pytest.raises(UserError, match="finite"):
            m.predict(_nan())
        with pytest.raises(UserError, match="28x28"):
            m.predict(np.zeros((1, 28, 28, 3), np.uint8))


def test_undecodable_file(onnx_model, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png"):
        onnx_model.predict(bad)


def test_bad_top_k_and_batch_size(onnx_model):
    with pytest.raises(UserError, match="top_k"):
        onnx_model.classify(GOOD, top_k=99)
    with pytest.raises(UserError, match="batch_size"):
        onnx_model.predict(GOOD, batch_size=0)


def test_closed_model(bundle_dir):
    m = load(bundle_dir, format="onnx")
    m.close()
    with pytest.raises(UserError, match="closed"):
        m.predict(GOOD)


def test_quantize_round_trip():
    q = QuantParams(dtype="int8", scale=0.5, zero_point=-10)
    x = np.array([0.0, 1.0, 100.0, 1000.0], np.float32)
    qx = quantize(x, q, np.dtype(np.int8))
    assert qx.dtype == np.int8 and qx.tolist() == [-10, -8, 127, 127]
    np.testing.assert_allclose(dequantize(qx[:2], q), [0.0, 1.0])


@pytest.mark.parametrize("scale, zero_point, dtype", [(1.0, -128, np.int8), (0.9, -100, np.int8), (1.0, 0, np.uint8),
                                                       (1.0039, 0, np.uint8), (0.003, 3, np.int16)])
def test_uint8_fast_quantize_equals_the_arithmetic(scale, zero_point, dtype):
    """Every uint8 value (0..255 all present), through the table or the pinned-range fast paths."""
    from edgexfer.manifest import QuantParams
    from edgexfer.runtime.inputs import quantize

    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1)
    q = QuantParams("x", scale, zero_point)
    fast, slow = quantize(images, q, dtype), quantize(images.astype(np.float32), q, dtype)
    assert fast.dtype == slow.dtype == dtype and np.array_equal(fast, slow)


@pytest.mark.parametrize("scale, zero_point, dtype, source", [
    (1.0, -128, np.int8, np.uint8), (0.9, -100, np.int8, np.uint8), (1.0, 0, np.uint8, np.uint8),
    (0.5, 3, np.int8, np.float32), (None, None, np.uint8, np.float32), (None, None, np.int8, np.uint8)])
def test_quantize_into_out_equals_a_new_array(scale, zero_point, dtype, source):
    """Writing into the engine's memory (`out=`) gives the same values as quantizing into a new array."""
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=-1).astype(source)
    q = None if scale is None else QuantParams("x", scale, zero_point)
    out = np.full(images.shape, 7, dtype)
    result = quantize(images, q, dtype, out=out)
    assert result is out and np.array_equal(out, quantize(images, q, dtype))


def test_engine_input_pads_a_fixed_batch_and_fills_out(bundle_dir):
    """A fixed engine batch is zero-padded; a given `out` is filled in place, its extra rows zeroed."""
    m = load(bundle_dir, format="onnx")
    x = np.full((2, *m.input_spec.shape), 200, np.uint8)
    m._runner.fixed_batch = 4
    padded = m._engine_input(x)
    assert padded.shape[0] == 4 and (padded[:2] == 200).all() and (padded[2:] == 0).all()
    out = np.full((3, *m.input_spec.shape), -1, m._in_dtype)
    assert m._engine_input(x, out=out) is out and (out[:2] == 200).all() and (out[2:] == 0).all()
    m.close()


@pytest.mark.parametrize("dtype, scale, zero_point", [(np.int8, 0.00390625, -128), (np.uint8, 0.02, 7), (np.int8, 0.5, 3)])
def test_dequantize_every_8bit_value(dtype, scale, zero_point):
    """Every 8-bit value gives exactly (q - zero_point) * scale in float32."""
    out = np.arange(256, dtype=np.uint8).view(dtype).reshape(2, 128)
    q = QuantParams("x", scale, zero_point)
    expected = (out.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    got = dequantize(out, q)
    assert got.dtype == np.float32 and got.shape == out.shape and np.array_equal(got, expected)

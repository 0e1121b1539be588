"""Every artifact on every backend that runs it: shapes, probabilities, agreement, input kinds, batching."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgexfer.runtime import load

pytestmark = pytest.mark.runtime


@pytest.fixture
def model(bundle_dir, artifact_backend):
    name, backend = artifact_backend
    with load(bundle_dir, format=name, backend=backend, threads=2) as m:
        yield m


def test_predict_probabilities(model, images, manifest):
    probs = model.predict(images)
    assert probs.dtype == np.float32
    assert probs.shape == (len(images), len(manifest.labels))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=2e-2 if model.precision == "int8" else 1e-4)
    assert model.labels == manifest.labels and model.input_spec == manifest.input
    assert model.device == "cpu" and model.format == model.artifact.name
    assert model.precision == model.artifact.precision


def test_agrees_with_reference(model, images, reference):
    probs = model.predict(images)
    if model.precision == "fp32":
        np.testing.assert_allclose(probs, reference, atol=1e-4)
    elif model.precision == "fp16":
        np.testing.assert_allclose(probs, reference, atol=1e-2)
        assert (probs.argmax(1) == reference.argmax(1)).mean() >= 0.95
    else:  # int8: quantization error is the converter's business (export gates it); top-1 mostly equal
        assert np.abs(probs - reference).max() < 0.25
        assert (probs.argmax(1) == reference.argmax(1)).mean() >= 0.85


@pytest.mark.parametrize("n", [1, 7, 33])
def test_batch_sizes_match_one_big_batch(model, images, n):
    full = model.predict(images[:n])
    assert full.shape[0] == n
    split = model.predict(images[:n], batch_size=3)
    np.testing.assert_allclose(split, full, atol=1e-5)


def test_single_image_uint8_float_pil_path(model, images, tmp_path):
    one = model.predict(images[0])
    assert one.shape == (1, len(model.labels))
    np.testing.assert_allclose(model.predict(images[:1].astype(np.float32)), one, atol=1e-6)
    np.testing.assert_allclose(model.predict(images[:1].astype(np.float64)), one, atol=1e-6)
    np.testing.assert_allclose(model.predict(Image.fromarray(images[0])), one, atol=1e-6)
    path = tmp_path / "img.png"
    Image.fromarray(images[0]).save(path)
    np.testing.assert_allclose(model.predict(str(path)), one, atol=1e-6)
    np.testing.assert_allclose(model.predict([path, images[0]]), np.concatenate([one, one]), atol=1e-6)


def test_pil_and_files_are_resized(model, images, tmp_path):
    big = Image.fromarray(images[0]).resize((64, 48))
    big.convert("L").save(tmp_path / "grey.jpg")
    probs = model.predict([big, tmp_path / "grey.jpg"])
    assert probs.shape == (2, len(model.labels))


def test_classify_top_k(model, images):
    probs = model.predict(images[:4])
    top = model.classify(images[:4], top_k=2)
    assert len(top) == 4 and all(len(row) == 2 for row in top)
    for row, p in zip(top, probs):
        assert row[0][0] == model.labels[int(p.argmax())]
        assert row[0][1] >= row[1][1]
        assert row[0][1] == pytest.approx(float(p.max()), abs=1e-6)


def test_openvino_static_batch_compiles_match_the_dynamic_model_and_stay_bounded(bundle_dir, images):
    from edgexfer.runtime import backends

    if not backends.is_available("openvino"):
        pytest.skip("openvino is not installed")
    with load(bundle_dir, format="openvino", backend="openvino", options={"static_batches": 0}) as dynamic, \
            load(bundle_dir, format="openvino", backend="openvino", options={"static_batches": 2}) as static:
        for n in (1, 3, 7, 3):
            np.testing.assert_allclose(static.predict(images[:n]), dynamic.predict(images[:n]), atol=1e-5)
        assert list(static._runner._static) == [7, 3]  # the two most recent batch sizes
        assert not dynamic._runner._static


def test_openvino_batch_that_cannot_be_static_is_compiled_once(bundle_dir, images, monkeypatch):
    from edgexfer.runtime import backends

    if not backends.is_available("openvino"):
        pytest.skip("openvino is not installed")
    with load(bundle_dir, format="openvino", backend="openvino") as model:
        calls = []
        monkeypatch.setattr(model._runner, "_compile_static", lambda n: calls.append(n))  # returns None
        first = model.predict(images[:2])
        np.testing.assert_allclose(model.predict(images[:2]), first, atol=1e-6)  # dynamic compile serves it
        assert calls == [2]


@pytest.mark.parametrize("n", [1, 5])
def test_conversion_into_engine_memory_matches_a_converted_copy(model, images, n):
    """`Runner.run` (LiteRT converts straight into the interpreter's input tensor) gives exactly what the
    plain path gives: convert into a new array, then `infer`."""
    runner, batch = model._runner, np.ascontiguousarray(images[:n])
    for x in (batch, batch.astype(np.float32)):
        fused = runner.run(x, model._engine_input)
        plain = runner.infer(model._engine_input(x))
        assert fused.dtype == plain.dtype and np.array_equal(fused, plain)

"""Labels travel inside every artifact, read back with each engine's own API.

The unit tests of the TFLITE_METADATA writer and reader need no conversion. The artifact tests read
the session's shared bundle (tests/conftest.py `shared_bundle`: the tiny model exported once by
edgexfer.export), so they add no export of their own.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from edgexfer.errors import ConversionError, IntegrityError
from edgexfer.export import list_formats, tflite_metadata
from edgexfer.export.formats import FORMATS
from edgexfer.export.openvino import model_api_label, model_info
from edgexfer.manifest import Manifest

INSTALLED = list_formats(installed_only=True)
JOB_METADATA = {"labels": ["golden retriever", "cat"], "version": "9.9.9",
                "preprocessing": {"in_graph": "Rescaling(1/255)", "caller": "raw RGB 0..255, NHWC"},
                "input": {"shape": [24, 40, 3], "layout": "NHWC", "range": [0, 255]}}


def _family(family: str) -> list[str]:
    return [name for name in INSTALLED if FORMATS[name].family == family]


@pytest.fixture(scope="module")
def manifest(shared_bundle) -> Manifest:
    return Manifest.load(shared_bundle)


def _artifact_path(shared_bundle, manifest: Manifest, name: str):
    if name not in manifest.artifacts:
        pytest.skip(f"{name} is not in the shared bundle")
    return shared_bundle / manifest.artifacts[name].main_file


# -- TFLITE_METADATA writer and reader (no conversion) ---------------------------------------------------
def test_tflite_metadata_round_trip():
    meta = tflite_metadata.classifier_metadata(JOB_METADATA, "images", "probs")
    buffer = tflite_metadata.build(meta)
    assert buffer[4:8] == tflite_metadata.METADATA_IDENTIFIER
    assert tflite_metadata.parse(buffer) == meta


def test_tflite_metadata_describes_the_input_contract():
    """Raw 0..255 in, normalisation inside the graph: identity NormalizationOptions, Stats 0..255."""
    meta = tflite_metadata.parse(tflite_metadata.build(
        tflite_metadata.classifier_metadata(JOB_METADATA, "images", "probs")))
    assert (meta.mean, meta.std, meta.input_min, meta.input_max) == ((0.0,), (1.0,), (0.0,), (255.0,))
    assert meta.color_space == tflite_metadata.RGB and meta.image_size == (40, 24)  # (width, height)
    assert "inside the graph" in meta.description and "Rescaling(1/255)" in meta.description
    assert (meta.labels_file, meta.labels_file_type) == ("labels.txt", tflite_metadata.TENSOR_AXIS_LABELS)
    assert (meta.author, meta.version, meta.min_parser_version) == ("edgexfer", "9.9.9", "1.0.0")
    assert (meta.input_name, meta.output_name) == ("images", "probs")
    gray = {**JOB_METADATA, "input": {"shape": [24, 40, 1]}}
    assert tflite_metadata.classifier_metadata(gray, "images", "probs").color_space == tflite_metadata.GRAYSCALE


def test_parse_rejects_a_buffer_without_the_identifier():
    with pytest.raises(IntegrityError, match="Expected a TFLite metadata flatbuffer"):
        tflite_metadata.parse(b"\x00" * 16)
    with pytest.raises(IntegrityError, match="Expected a TFLite model"):
        tflite_metadata.metadata_buffer(b"not a model at all")


def test_labels_text_one_per_line_and_rejects_line_breaks():
    assert tflite_metadata.labels_text(["golden retriever", "cat"]) == b"golden retriever\ncat\n"
    for bad in (["a\nb"], ["ok", ""], []):
        with pytest.raises(ConversionError, match="Expected non-empty labels"):
            tflite_metadata.labels_text(bad)


def test_appended_files_are_a_deterministic_zip():
    """The file stays a flatbuffer at its start and is also a zip; the same input gives the same bytes."""
    head = b"\x1c\x00\x00\x00TFL3" + bytes(64)
    first = tflite_metadata._append_files(head, {"labels.txt": b"a\nb\n"})
    assert first.startswith(head) and first == tflite_metadata._append_files(head, {"labels.txt": b"a\nb\n"})
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        assert archive.namelist() == ["labels.txt"] and archive.read("labels.txt") == b"a\nb\n"
    assert tflite_metadata.associated_file(first) == b"a\nb\n"
    with pytest.raises(IntegrityError, match="Expected vocab.txt"):
        tflite_metadata.associated_file(first, "vocab.txt")


def test_openvino_model_info_for_the_model_api():
    """Space-separated labels: whitespace inside a label becomes one underscore."""
    info = model_info(JOB_METADATA)
    assert info["labels"] == "golden_retriever cat" and info["model_type"] == "Classification"
    assert (info["multilabel"], info["hierarchical"], info["reverse_input_channels"]) == ("False",) * 3
    assert model_api_label(" a \t b ") == "a_b"


# -- the exported artifacts, read with each engine's own API ---------------------------------------------
@pytest.mark.parametrize("name", _family("onnx"))
def test_onnx_artifact_labels(shared_bundle, manifest, name):
    ort = pytest.importorskip("onnxruntime")
    path = _artifact_path(shared_bundle, manifest, name)
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(meta["edgexfer.labels"]) == manifest.labels
    assert json.loads(meta["edgexfer.input"])["range"] == [0, 255] and "edgexfer.preprocessing" in meta


@pytest.mark.parametrize("name", _family("openvino"))
def test_openvino_artifact_labels(shared_bundle, manifest, name):
    ov = pytest.importorskip("openvino")
    model = ov.Core().read_model(str(_artifact_path(shared_bundle, manifest, name)))
    assert model.get_rt_info(["model_info", "labels"]).astype(str).split() == [
        model_api_label(v) for v in manifest.labels]
    assert model.get_rt_info(["model_info", "model_type"]).astype(str) == "Classification"
    assert json.loads(model.get_rt_info(["edgexfer", "labels"]).astype(str)) == manifest.labels


@pytest.mark.parametrize("name", _family("tflite"))
def test_tflite_artifact_labels(shared_bundle, manifest, name):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    path = _artifact_path(shared_bundle, manifest, name)
    content = path.read_bytes()
    with zipfile.ZipFile(path) as archive:  # the .tflite is also a zip archive
        assert archive.read("labels.txt").decode("utf-8").splitlines() == manifest.labels
    meta = tflite_metadata.parse(tflite_metadata.metadata_buffer(content))
    assert (meta.labels_file, meta.labels_file_type) == ("labels.txt", tflite_metadata.TENSOR_AXIS_LABELS)
    assert (meta.mean, meta.std, meta.input_min, meta.input_max) == ((0.0,), (1.0,), (0.0,), (255.0,))
    assert tflite_metadata.read_labels(content) == manifest.labels
    assert manifest.artifacts[name].details["metadata"]["associated_files"] == ["labels.txt"]
    interp = litert.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert (inp["name"], out["name"]) == ("images", "probs") == (meta.input_name, meta.output_name)
    assert interp.get_signature_list()["serving_default"] == {"inputs": ["images"], "outputs": ["probs"]}
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
    interp.invoke()
    assert interp.get_tensor(out["index"]).shape == (1, len(manifest.labels))

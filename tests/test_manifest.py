"""The bundle manifest: round trip, schema guard, checksum verification."""
from __future__ import annotations

import contextlib
import copy
import json
import random

import pytest

from edgexfer.errors import IntegrityError, ManifestError, UnsafeBundleError, UserError
from edgexfer.manifest import (
    SCHEMA_VERSION, Artifact, InputSpec, Manifest, QuantParams, describe_files, verify_artifact, verify_bundle,
)

pytestmark = pytest.mark.runtime  # standard library only: runs in the runtime-only install too


def _bundle(tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"fake onnx bytes")
    sums, size = describe_files(tmp_path, ["onnx/model.onnx"])
    art = Artifact(name="onnx", format="onnx", files=["onnx/model.onnx"], precision="fp32", sha256=sums,
                   size_bytes=size, status="passed",
                   input_quant=QuantParams(dtype="int8", scale=1.0, zero_point=-128))
    manifest = Manifest(name="m", labels=["a", "b"], input=InputSpec(32, 32), preprocessing={"in_graph": "x"},
                        artifacts={"onnx": art})
    manifest.save(tmp_path)
    return manifest


def test_round_trip_preserves_every_field(tmp_path):
    manifest = _bundle(tmp_path)
    loaded = Manifest.load(tmp_path)
    assert loaded == manifest
    assert loaded.artifacts["onnx"].input_quant == QuantParams("int8", 1.0, -128)
    assert loaded.input.shape == (32, 32, 3)
    assert [a.name for a in loaded.passed_artifacts()] == ["onnx"]


def test_verify_catches_a_tampered_file_and_names_it(tmp_path):
    manifest = _bundle(tmp_path)
    assert verify_bundle(tmp_path) == []
    (tmp_path / "onnx" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(IntegrityError, match="onnx/model.onnx"):
        verify_artifact(tmp_path, manifest.artifacts["onnx"])
    assert len(verify_bundle(tmp_path)) == 1


def test_missing_file_is_reported(tmp_path):
    _bundle(tmp_path)
    (tmp_path / "onnx" / "model.onnx").unlink()
    assert "missing" in verify_bundle(tmp_path)[0]


def test_newer_schema_is_refused_with_a_fix(tmp_path):
    _bundle(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match="Upgrade edgexfer"):
        Manifest.load(tmp_path)


def test_not_a_bundle_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="edgexfer export"):
        Manifest.load(tmp_path)


def test_unknown_artifact_lists_the_known_ones(tmp_path):
    manifest = _bundle(tmp_path)
    with pytest.raises(UserError, match=r"\['onnx'\]"):
        manifest.artifact("tflite")


# -- schema: one clear error naming the field (issue 15) ---------------------------------------------
def _raw(tmp_path) -> dict:
    _bundle(tmp_path)
    return json.loads((tmp_path / "manifest.json").read_text())


def _set(path: str, value):
    """An edit of the raw manifest: set the dotted `path` ("artifacts.onnx.files") to `value`."""
    def edit(raw):
        *parents, last = path.split(".")
        for key in parents:
            raw = raw[key]
        raw[last] = value
    return edit


def _drop(path: str):
    def edit(raw):
        *parents, last = path.split(".")
        for key in parents:
            raw = raw[key]
        del raw[last]
    return edit


BAD_FIELDS = {  # case -> (edit of the raw manifest, words the message must hold)
    "labels_string": (_set("labels", "abc"), ["`labels`", "list of strings", '"abc" (a string)']),
    "labels_empty": (_set("labels", []), ["`labels`"]),
    "labels_numbers": (_set("labels", [1, 2]), ["`labels`"]),
    "name_missing": (_drop("name"), ["`name`", "missing"]),
    "version_missing": (_drop("schema_version"), ["`schema_version`"]),
    "version_string": (_set("schema_version", "1"), ["`schema_version`"]),
    "version_bool": (_set("schema_version", True), ["`schema_version`"]),
    "input_missing": (_drop("input"), ["`input`"]),
    "input_height_string": (_set("input.height", "32"), ["`input.height`", "positive integer"]),
    "input_channels_zero": (_set("input.channels", 0), ["`input.channels`"]),
    "input_unknown_key": (_set("input.colour", "rgb"), ["`input`", "'colour'"]),
    "input_range_reversed": (_set("input.value_range", [255, 0]), ["`input.value_range`"]),
    "input_layout": (_set("input.layout", "NCHW"), ["`input.layout`", "NHWC"]),
    "artifacts_list": (_set("artifacts", []), ["`artifacts`", "an object"]),
    "artifact_null": (_set("artifacts.onnx", None), ["`artifacts.onnx`", "null"]),
    "files_empty": (_set("artifacts.onnx.files", []), ["`artifacts.onnx.files`", "non-empty"]),
    "files_string": (_set("artifacts.onnx.files", "onnx/model.onnx"), ["`artifacts.onnx.files`"]),
    "files_repeated": (_set("artifacts.onnx.files", ["onnx/model.onnx"] * 2), ["repeated"]),
    "sha256_null": (_set("artifacts.onnx.sha256", None), ["`artifacts.onnx.sha256`", "null"]),
    "sha256_missing": (_drop("artifacts.onnx.sha256"), ["`artifacts.onnx.sha256`", "missing"]),
    "sha256_not_hex": (_set("artifacts.onnx.sha256", {"onnx/model.onnx": "xyz"}), ["sha256.onnx/model.onnx"]),
    "size_negative": (_set("artifacts.onnx.size_bytes", -1), ["`artifacts.onnx.size_bytes`"]),
    "precision_number": (_set("artifacts.onnx.precision", 32), ["`artifacts.onnx.precision`"]),
    "quant_scale_zero": (_set("artifacts.onnx.input_quant.scale", 0), ["`artifacts.onnx.input_quant.scale`"]),
    "quant_dtype": (_set("artifacts.onnx.input_quant.dtype", "float32"), ["input_quant.dtype"]),
    "quant_list": (_set("artifacts.onnx.output_quant", [1, 0]), ["`artifacts.onnx.output_quant`"]),
    "artifact_unknown_key": (_set("artifacts.onnx.weights", "x"), ["`artifacts.onnx`", "'weights'"]),
    "parity_list": (_set("artifacts.onnx.parity", []), ["`artifacts.onnx.parity`"]),
    "parity_metric_string": (_set("artifacts.onnx.parity", {"metrics": {"accuracy": "high"}}),
                             ["`artifacts.onnx.parity.metrics.accuracy`", "a number"]),
    "parity_failures": (_set("artifacts.onnx.parity", {"failures": [1]}), ["`artifacts.onnx.parity.failures`"]),
    "tuning_string": (_set("tuning", "fast"), ["`tuning`"]),
    "tuning_entry_string": (_set("tuning", {"abc": {"1": "onnx"}}), ["`tuning.abc.1`"]),
    "tuning_threads": (_set("tuning", {"abc": {"1": {"artifact": "onnx", "threads": "2"}}}), ["threads"]),
    "provenance_data": (_set("provenance", {"data": ["x"]}), ["`provenance.data`"]),
}


@pytest.mark.parametrize("case", sorted(BAD_FIELDS))
def test_malformed_field_is_one_error_naming_it(tmp_path, case):
    edit, words = BAD_FIELDS[case]
    raw = _raw(tmp_path)
    edit(raw)
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError) as info:
        Manifest.load(tmp_path)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "manifest.json")) and "Expected" in message and "Re-export" in message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("top", ["[]", '"a string"', "null", "42"])
def test_manifest_that_is_not_an_object(tmp_path, top):
    (tmp_path / "manifest.json").write_text(top)
    with pytest.raises(ManifestError, match="JSON object"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("path", ["../../outside/model.onnx", "/etc/passwd", "C:/model.onnx", "onnx\\model.onnx",
                                  "onnx/../../model.onnx", "", "onnx/\x00.onnx"])
def test_paths_outside_the_bundle_are_refused_when_read(tmp_path, path):
    def edit(raw):
        raw["artifacts"]["onnx"]["files"] = [path]
        raw["artifacts"]["onnx"]["sha256"] = {path: "0" * 64}
    raw = _raw(tmp_path)
    edit(raw)
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(UnsafeBundleError, match=r"artifacts\.onnx\.files\[0\].*inside the bundle"):
        Manifest.load(tmp_path)


def test_sha256_keys_must_be_the_files(tmp_path):
    raw = _raw(tmp_path)
    raw["artifacts"]["onnx"]["sha256"]["../x"] = "0" * 64
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="each of `files`"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32"])
def test_utf16_and_utf32_are_refused_with_the_fix(tmp_path, encoding):
    text = json.dumps(_raw(tmp_path))
    (tmp_path / "manifest.json").write_bytes(text.encode(encoding))
    with pytest.raises(ManifestError, match="encoded as UTF-8.*Save it as UTF-8"):
        Manifest.load(tmp_path)


def test_other_encodings_are_refused_and_a_utf8_bom_is_accepted(tmp_path):
    raw = _raw(tmp_path)
    raw["name"] = "café"
    (tmp_path / "manifest.json").write_bytes(json.dumps(raw, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8 at offset"):
        Manifest.load(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(raw, ensure_ascii=False).encode())
    assert Manifest.load(tmp_path).name == "café"


@pytest.mark.parametrize("text, words", [("{", "valid JSON"), ('{"schema_version": NaN}', "schema_version"),
                                         ("[" * 100_000 + "]" * 100_000, "nested")])
def test_broken_json(tmp_path, text, words):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(ManifestError, match=words):
        Manifest.load(tmp_path)


def test_huge_manifest_is_not_parsed(tmp_path, monkeypatch):
    import edgexfer.manifest as manifest_module

    _bundle(tmp_path)
    monkeypatch.setattr(manifest_module, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ManifestError, match="at most 100 bytes"):
        Manifest.load(tmp_path)


def test_verify_refuses_a_link_out_of_the_bundle(tmp_path):
    bundle, outside = tmp_path / "bundle", tmp_path / "outside"
    bundle.mkdir()
    outside.mkdir()
    manifest = _bundle(bundle)
    (outside / "model.onnx").write_bytes((bundle / "onnx" / "model.onnx").read_bytes())  # same sha256
    (bundle / "onnx" / "model.onnx").unlink()
    (bundle / "onnx" / "model.onnx").symlink_to(outside / "model.onnx")
    with pytest.raises(UnsafeBundleError, match="outside"):
        verify_artifact(bundle, manifest.artifacts["onnx"])
    assert "outside" in verify_bundle(bundle)[0]


def _paths(obj, prefix=()):
    """Every key path in a parsed JSON value."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield prefix + (key,)
            yield from _paths(value, prefix + (key,))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield prefix + (i,)
            yield from _paths(value, prefix + (i,))


def test_any_field_of_a_wrong_type_is_a_manifest_error_never_a_crash(tmp_path):
    """Each field of a real manifest replaced by each JSON type: loading works or raises ManifestError."""
    raw = _raw(tmp_path)
    raw["artifacts"]["onnx"]["parity"] = {"passed": True, "metrics": {"accuracy": 0.9, "agreement_ci": [0.8, 1.0]},
                                          "gate": {"max_abs_diff": 1e-4}, "failures": [], "checks": [{"reason": "ok"}]}
    for path in list(_paths(raw)):
        for value in (None, "abc", -1, 1.5, True, [], {}, [1], {"a": 1}):
            edited = copy.deepcopy(raw)
            node = edited
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            (tmp_path / "manifest.json").write_text(json.dumps(edited))
            with contextlib.suppress(ManifestError, UnsafeBundleError):  # any other exception fails the test
                Manifest.load(tmp_path)


def test_damaged_manifest_bytes_are_a_manifest_error(tmp_path):
    _bundle(tmp_path)
    data = (tmp_path / "manifest.json").read_bytes()
    rng = random.Random(0)
    for _ in range(300):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        (tmp_path / "manifest.json").write_bytes(bytes(damaged))
        with contextlib.suppress(ManifestError, UnsafeBundleError):  # any other exception fails the test
            Manifest.load(tmp_path)


def test_a_failed_artifacts_nan_metrics_round_trip(tmp_path):
    """`save` writes NaN for an artifact that produced NaN outputs; reading it back must work."""
    manifest = _bundle(tmp_path)
    from edgexfer.parity import Gate, ParityResult

    metrics = {"max_abs_diff": float("nan"), "finite": False, "agreement_ci": [0.0, 1.0]}
    manifest.artifacts["onnx"].parity = ParityResult(metrics, Gate(max_abs_diff=1e-4), False, ["NaN outputs"])
    manifest.save(tmp_path)
    parity = Manifest.load(tmp_path).artifacts["onnx"].parity
    assert parity.metrics["finite"] is False and parity.gate == Gate(max_abs_diff=1e-4)
    assert parity.reason == "NaN outputs" and not parity


def test_an_unchecked_artifact_reads_as_failed_with_its_reason_everywhere():
    """parity None (an export that stopped before checking it): one record for every reader."""
    from edgexfer.runtime.select import check_status

    art = Artifact(name="onnx", format="onnx", files=["onnx/model.onnx"], precision="fp32")
    assert art.parity is None and not art.verdict.passed and art.verdict.reason == "parity was not checked"
    with pytest.raises(UserError, match="parity was not checked"):
        check_status(art, allow_failed=False)

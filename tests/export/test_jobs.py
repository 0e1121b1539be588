"""Typed converter options and jobs: one default each, JSON only as the wire format, misspellings refused."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from edgexfer.errors import UserError
from edgexfer.export.formats import FORMATS
from edgexfer.export.jobs import ConverterOptions, Job

EXPORT = Path(__file__).resolve().parents[2] / "edgexfer" / "export"


def test_a_job_survives_the_wire_as_it_was():
    job = Job("tflite-int8@16x8", "edgexfer.export.tflite:convert", "/b/x", model="/r/model.keras",
              input_shape=(32, 32, 3), options=ConverterOptions(quantize="int8", mode="16x8", calibration_factor=4),
              calibration="/w/calibration.npy", metadata={"labels": ["a", "b"]})
    wire = json.loads(json.dumps(job.to_wire()))
    assert Job.from_wire(wire) == job and wire["options"]["calibration_samples"] == 300


@pytest.mark.parametrize("raw, field", [({"name": "j", "converter": "m:f", "out_dir": ".", "optons": {}}, "optons"),
                                        ({"name": "j", "converter": "m:f", "out_dir": ".",
                                          "options": {"calibration_sample": 5}}, "calibration_sample")])
def test_a_misspelt_field_or_option_is_refused_not_defaulted(raw, field):
    with pytest.raises(UserError, match=field):
        Job.from_wire(raw)


@pytest.mark.parametrize("changes", [{"quantize": "int4"}, {"int8_io": "int16"}, {"calibration_samples": 0},
                                     {"mode": "8x8"}, {"preset": "fast"}])
def test_a_bad_value_is_refused_with_what_was_expected(changes):
    with pytest.raises(UserError, match="Expected"):
        ConverterOptions().with_(changes)


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_and_rung_states_only_changes_to_known_options(name):
    spec = FORMATS[name]
    for step in (None, *spec.ladder):
        options = spec.converter_options(step)
        assert options.rung == (step.name if step else "default")
        assert set(spec.options) <= {f.name for f in dataclasses.fields(ConverterOptions)}
    assert spec.calibration_factor == max(spec.converter_options(s).calibration_factor for s in (None, *spec.ladder))


def test_converters_read_no_default_of_their_own():
    """The defaults live in ConverterOptions only: no converter falls back to a number of its own."""
    for module in ("onnx.py", "tflite.py", "openvino.py", "_keras.py"):
        text = (EXPORT / module).read_text()
        assert '["options"]' not in text and "options.get(" not in text and "opts.get(" not in text, module

"""run.json: the record a training run leaves for export and evaluation."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgexfer.errors import UserError
from edgexfer.record import RUN_SCHEMA_VERSION, RunRecord


def _record() -> RunRecord:
    return RunRecord(labels=["0", "1"], input_shape=[32, 32, 3], preprocessing={"in_graph": "rescale"},
                     backbone={"name": "b"}, data={"source": "builtin:x"}, seed=3,
                     metrics={"val_accuracy": np.float32(0.5), "confusion": np.eye(2, dtype=int)})


def test_round_trip_with_numpy_values(tmp_path):
    _record().save(tmp_path)
    loaded = RunRecord.load(tmp_path)
    assert loaded.labels == ["0", "1"] and loaded.seed == 3
    assert loaded.metrics["confusion"] == [[1, 0], [0, 1]]


def test_unknown_keys_from_newer_minor_versions_are_ignored(tmp_path):
    _record().save(tmp_path)
    raw = json.loads((tmp_path / "run.json").read_text())
    raw["future_field"] = 1
    (tmp_path / "run.json").write_text(json.dumps(raw))
    assert RunRecord.load(tmp_path).seed == 3


def test_newer_schema_is_refused(tmp_path):
    _record().save(tmp_path)
    raw = json.loads((tmp_path / "run.json").read_text())
    raw["schema_version"] = RUN_SCHEMA_VERSION + 1
    (tmp_path / "run.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="Upgrade"):
        RunRecord.load(tmp_path)


def test_missing_run_dir_says_how_to_make_one(tmp_path):
    with pytest.raises(UserError, match="edgexfer train"):
        RunRecord.load(tmp_path / "nope")

"""run.json: the record a training run leaves for export, evaluation and people.

TensorFlow-free so that export, the CLI and tests can read it cheaply. `train` writes it,
`export` reads labels, input spec, preprocessing and the held-out split (for parity on real
images) from it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.errors import UserError

RUN_SCHEMA_VERSION = 1
RUN_FILE = "run.json"
MODEL_FILE = "model.keras"


@dataclass
class RunRecord:
    """Everything downstream steps need to know about a trained model.

    `data` holds the data source and the split membership (see `edgexfer.data.splits`), so the
    exact held-out images can be rebuilt by `edgexfer.data.load_split(record.data, "test", size)`.
    """

    labels: list[str]
    input_shape: list[int]  # [H, W, C]
    preprocessing: dict[str, Any]  # {"in_graph": "...", "caller": "raw RGB 0..255, NHWC"}
    backbone: dict[str, Any]  # {"name": ..., "weights": ..., "trainable_layers": ...}
    data: dict[str, Any]
    seed: int
    training: dict[str, Any] = field(default_factory=dict)  # hyper-parameters, strategy, device
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    schema_version: int = RUN_SCHEMA_VERSION
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / RUN_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=_jsonable) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunRecord":
        path = Path(run_dir) / RUN_FILE
        if not path.is_file():
            raise UserError(
                f"Expected a run directory containing {RUN_FILE}. Received: {run_dir}. "
                "Create one with `edgexfer train DATA --out RUN_DIR`."
            )
        raw = json.loads(path.read_text())
        if raw.get("schema_version", 0) > RUN_SCHEMA_VERSION:
            raise UserError(
                f"{path} has schema_version {raw['schema_version']}, newer than this edgexfer "
                f"understands ({RUN_SCHEMA_VERSION}). Upgrade edgexfer."
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})


def _jsonable(obj: Any) -> Any:
    """Make numpy scalars/arrays JSON-serialisable without importing numpy here."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")

"""The state one export shares between its steps (pipeline, parity checks, the int8 guardrail), typed.

Why a module of its own: the pipeline and the guardrail both read it, and neither imports the other's
internals; what a conversion child gets is built here (`ExportContext.job`) from the typed converter
options, so the defaults stay in `ConverterOptions`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer import _version
from edgexfer.export.formats import FormatSpec, LadderStep
from edgexfer.export.jobs import ConverterOptions, Job
from edgexfer.manifest import InputSpec
from edgexfer.parity import Gate
from edgexfer.progress import Tracker
from edgexfer.record import MODEL_FILE, RunRecord


@dataclass
class ExportSettings:
    """The export call's settings, as recorded in the manifest's provenance."""

    calibration_samples: int = ConverterOptions.calibration_samples
    int8_io: str = ConverterOptions.int8_io
    max_drop: float | None = None
    parity_samples: int | None = None
    parallel: int = 1
    strict: bool = False
    formats: list[str] = field(default_factory=list)
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration_pool: int | None = None  # calibration images prepared
    failed_conversions: dict[str, str] = field(default_factory=dict)
    children: list[dict[str, Any]] = field(default_factory=list)  # one stats record per conversion child

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataFiles:
    """The held-out arrays saved for the conversion children (paths in the work folder)."""

    test: str
    reference: str
    calibration: str | None = None
    validation: str | None = None


@dataclass
class ExportContext:
    record: RunRecord
    run_dir: Path
    root: Path  # the staging bundle
    work: Path  # scratch: npy files, job files, logs
    settings: ExportSettings
    gates: dict[str, Gate]
    name: str = ""
    files: DataFiles | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    reference: np.ndarray | None = None
    progress: Tracker = field(default_factory=Tracker)

    @property
    def input_spec(self) -> InputSpec:
        h, w, c = (int(v) for v in self.record.input_shape)
        return InputSpec(height=h, width=w, channels=c)

    def job(self, spec: FormatSpec, step: LadderStep | None = None, name: str | None = None,
            **changes: Any) -> Job:
        """The job a conversion child runs for `spec` (a ladder variant when `step` is given)."""
        record, files = self.record, self.files
        settings = {"calibration_samples": self.settings.calibration_samples, "int8_io": self.settings.int8_io,
                    "max_drop": self.settings.max_drop}
        options = spec.converter_options(step).with_(settings, **changes)  # a rung's changes win
        name = name or spec.name
        return Job(
            name=name, converter=spec.converter, model=str(self.run_dir / MODEL_FILE), out_dir=str(self.root / name),
            work_dir=str(self.work), input_shape=tuple(int(v) for v in record.input_shape), options=options,
            calibration=files.calibration if spec.calibrated and files else None,
            validation=files.validation if spec.calibrated and files else None,
            source_onnx=str(self.root / "onnx" / "model.onnx") if spec.family == "openvino" else None,
            metadata={"labels": list(record.labels), "preprocessing": dict(record.preprocessing),
                      "input": {"shape": list(record.input_shape), "layout": "NHWC", "range": [0, 255]},
                      "version": _version.__version__})

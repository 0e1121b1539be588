"""Typed conversion jobs: what the export parent asks a conversion child to do.

`ConverterOptions` holds every setting a converter reads, each with its ONE default (the format registry,
the ladder rungs and the export call only state changes from it). `Job` is one unit of work for a child.
Both are dataclasses in the parent and in the child; their JSON (`to_wire` / `from_wire`) is only the wire
format between the two processes, and reading it back refuses unknown keys, so a misspelt option fails
loudly instead of silently taking a default.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from edgexfer.errors import UserError

QUANTIZE = ("none", "fp16", "int8")
INT8_IO = ("int8", "uint8")
TFLITE_MODES = ("int8", "16x8")
PRESETS = ("performance", "mixed")


@dataclass(frozen=True)
class ConverterOptions:
    """Every converter setting, with its one default."""

    opset: int = 17  # ONNX opset (tf2onnx)
    quantize: str = "none"  # "none" | "fp16" | "int8" (TFLite, OpenVINO)
    compress_to_fp16: bool = False  # OpenVINO: FP16-compressed weights
    calibration_samples: int = 300  # calibration images for int8 (times calibration_factor)
    int8_io: str = "int8"  # TFLite int8: the input/output tensor type ("int8" | "uint8")
    max_drop: float | None = None  # OpenVINO int8: NNCF accuracy control target (points; None: off)
    rung: str = "default"  # the int8 fallback ladder rung this variant is
    calibration_factor: int = 1  # a rung may calibrate on more images
    per_channel: bool = True  # TFLite int8: per-channel weight quantization
    denylist_fraction: float = 0.0  # TFLite int8: fraction of the most sensitive ops kept in float
    mode: str = "int8"  # TFLite: "int8" or "16x8" (int16 activations, int8 weights)
    preset: str = "performance"  # OpenVINO NNCF preset: "performance" | "mixed"

    def __post_init__(self) -> None:
        for name, value, allowed in (("quantize", self.quantize, QUANTIZE), ("int8_io", self.int8_io, INT8_IO),
                                     ("mode", self.mode, TFLITE_MODES), ("preset", self.preset, PRESETS)):
            if value not in allowed:
                raise UserError(f"Expected converter option {name} among {list(allowed)}. Received: {value!r}.")
        if self.calibration_samples < 1 or self.calibration_factor < 1:
            raise UserError(f"Expected calibration_samples and calibration_factor >= 1. Received: "
                            f"{self.calibration_samples!r} and {self.calibration_factor!r}.")

    @property
    def calibration_count(self) -> int:
        """How many calibration images this variant uses."""
        return self.calibration_samples * self.calibration_factor

    def with_(self, changes: dict[str, Any] | None = None, **more: Any) -> "ConverterOptions":
        """A copy with `changes` applied; an unknown key is a UserError listing the known ones."""
        changes = {**(changes or {}), **more}
        known = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise UserError(f"Expected converter options among {known}. Received: {unknown}.")
        return replace(self, **changes)

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> "ConverterOptions":
        return cls().with_(raw)


@dataclass(frozen=True)
class Job:
    """One unit of work for a conversion child: `converter` ("module:function") is called with the Job."""

    name: str
    converter: str
    out_dir: str
    model: str = ""  # the Keras model file
    work_dir: str = ""  # scratch shared with the parent
    input_shape: tuple[int, ...] = ()
    options: ConverterOptions = field(default_factory=ConverterOptions)
    calibration: str | None = None  # .npy of calibration images (calibrated formats)
    validation: str | None = None  # .npz of validation images and labels (NNCF accuracy control)
    source_onnx: str | None = None  # OpenVINO converts this export's ONNX file when there is one
    metadata: dict[str, Any] = field(default_factory=dict)  # labels, preprocessing, input, version
    args: dict[str, str] = field(default_factory=dict)  # entry points that are not converters (reference...)

    def to_wire(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> "Job":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"Expected job fields among {sorted(known)}. Received: {unknown}.")
        values = dict(raw)
        values["options"] = ConverterOptions.from_wire(raw.get("options") or {})
        values["input_shape"] = tuple(int(v) for v in raw.get("input_shape") or ())
        return cls(**values)

"""The export format registry: every format is data (a FormatSpec), never an `if` chain.

The CLI choices, the default `--formats`, the parity gates and the test matrix all come from
`FORMATS`. Converters live in one module per family (onnx.py, tflite.py, openvino.py) and are
named by a "module:function" entry point, imported only inside the conversion subprocess.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from edgexfer._deps import available
from edgexfer.errors import UserError
from edgexfer.export.jobs import ConverterOptions
from edgexfer.parity import Gate


#: fp32: a flip needs a reference margin below twice the allowed probability difference to be a tie.
FP32_GATE = Gate(max_abs_diff=1e-4, min_agreement=99.9, tie_margin=2e-4)
#: fp16: weights rounded to 11 bits move probabilities by up to ~1e-2 on small models; flips between classes
#: the reference itself separates by less than 2 points are near ties.
FP16_GATE = Gate(min_cosine=0.999, min_agreement=99.5, tie_margin=0.02)
INT8_GATE = Gate(max_acc_drop=1.0)
#: int8 without labels (pretrained:NAME, whose "labels" are the reference's own top-1): an accuracy drop is
#: then 100 - agreement, and on a 1000-class model most int8 flips are between classes the reference gives
#: nearly the same probability (measured on Lite0: 12 of 15 flips within 0.05). So it gates agreement,
#: counting only flips the reference separates by more than 0.05.
UNLABELLED_INT8_GATE = Gate(min_agreement=95.0, tie_margin=0.05)


@dataclass(frozen=True)
class LadderStep:
    """One rung of an int8 fallback ladder: converter option changes on top of the format's own, and
    whether the variant is quantized with NNCF accuracy control (aimed by the guardrail at the gate)."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    accuracy_control: bool = False


@dataclass(frozen=True)
class FormatSpec:
    """One export format: how to convert it, what it needs, how it is checked and stored."""

    name: str  # registry name, also the artifact name and the bundle sub-folder
    family: str  # "onnx" | "tflite" | "openvino" (manifest Artifact.format)
    precision: str  # "fp32" | "fp16" | "int8"
    converter: str  # "module:function" run inside the conversion subprocess
    requires: tuple[str, ...]  # importable modules needed to convert AND to run parity
    backend: str  # runtime backend used for parity (edgexfer.runtime registry name)
    gate: Gate
    suffixes: tuple[str, ...]  # files the converter writes, main file first
    description: str
    options: dict[str, Any] = field(default_factory=dict)  # changes to ConverterOptions (quantize, opset...)
    calibrated: bool = False  # needs the calibration images
    parity_options: dict[str, Any] = field(default_factory=dict)  # runtime backend options for parity
    ladder: tuple[LadderStep, ...] = ()  # fallback variants tried when the gate is missed (guardrail)
    ladder_chunk: int = 1  # rungs built per conversion child; the walk stops after a chunk with a pass
    unlabelled_gate: Gate | None = None  # the gate when the parity images have no labels (None: `gate`)

    def __post_init__(self) -> None:
        for step in (LadderStep("default"), *self.ladder):  # a misspelt option fails at import, not in a child
            self.converter_options(step)

    def converter_options(self, step: LadderStep | None = None) -> ConverterOptions:
        """The format's converter options (one of its ladder steps applied, when given)."""
        options = ConverterOptions().with_(self.options)
        return options.with_(step.options, rung=step.name) if step is not None else options

    @property
    def calibration_factor(self) -> int:
        """The most calibration images (as a multiple of calibration_samples) any variant may need."""
        return max(self.converter_options(s).calibration_factor for s in (None, *self.ladder))

    @property
    def installed(self) -> bool:
        return all(available(m) for m in self.requires)

    def missing(self) -> list[str]:
        return [m for m in self.requires if not available(m)]


#: int8 fallback ladders (walked by edgexfer.export.guardrail; the rungs are explained in tflite.py and
#: openvino.py). Each rung is a set of converter options on top of the format's own.
TFLITE_INT8_LADDER: tuple[LadderStep, ...] = (
    LadderStep("more-calibration", {"calibration_factor": 4}),
    LadderStep("per-tensor", {"calibration_factor": 4, "per_channel": False}),
    LadderStep("denylist", {"calibration_factor": 4, "denylist_fraction": 0.2}),
    LadderStep("16x8", {"calibration_factor": 4, "mode": "16x8"}),
)
OPENVINO_INT8_LADDER: tuple[LadderStep, ...] = (
    LadderStep("mixed-preset", {"preset": "mixed"}),
    LadderStep("accuracy-control", accuracy_control=True),
)

_TF = ("tensorflow", "keras")
_TFLITE = (*_TF, "ai_edge_litert")
_OV = ("openvino",)
#: Parity runs one synchronous request in f32 (the runtime's default precision for OpenVINO).
_OV_PARITY = {"performance_hint": "latency"}

FORMATS: dict[str, FormatSpec] = {
    s.name: s
    for s in (
        FormatSpec("onnx", "onnx", "fp32", "edgexfer.export.onnx:convert", (*_TF, "tf2onnx", "onnx", "onnxruntime"),
                   "onnxruntime", FP32_GATE, (".onnx",),
                   "ONNX opset 17 via tf2onnx, NHWC, input 'images', dynamic batch 'batch'.",
                   options={"opset": 17}),
        FormatSpec("tflite", "tflite", "fp32", "edgexfer.export.tflite:convert", _TFLITE, "litert", FP32_GATE,
                   (".tflite",), "TFLite float32, builtin ops only (no Flex).", options={"quantize": "none"}),
        FormatSpec("tflite-fp16", "tflite", "fp16", "edgexfer.export.tflite:convert", _TFLITE, "litert",
                   FP16_GATE, (".tflite",), "TFLite with float16 weights (computes in float32 on CPU).",
                   options={"quantize": "fp16"}),
        FormatSpec("tflite-int8", "tflite", "int8", "edgexfer.export.tflite:convert", _TFLITE, "litert",
                   INT8_GATE, (".tflite",),
                   "TFLite full integer quantization, int8 (or uint8) input and output, fallback ladder.",
                   options={"quantize": "int8"}, calibrated=True, ladder=TFLITE_INT8_LADDER,
                   ladder_chunk=len(TFLITE_INT8_LADDER), unlabelled_gate=UNLABELLED_INT8_GATE),
        FormatSpec("openvino", "openvino", "fp32", "edgexfer.export.openvino:convert", _OV, "openvino",
                   FP32_GATE, (".xml", ".bin"), "OpenVINO IR with FP32 weights (compress_to_fp16=False).",
                   options={"compress_to_fp16": False}, parity_options=_OV_PARITY),
        FormatSpec("openvino-fp16", "openvino", "fp16", "edgexfer.export.openvino:convert", _OV, "openvino",
                   FP16_GATE, (".xml", ".bin"), "OpenVINO IR with FP16-compressed weights.",
                   options={"compress_to_fp16": True}, parity_options=_OV_PARITY),
        FormatSpec("openvino-int8", "openvino", "int8", "edgexfer.export.openvino:convert", (*_OV, "nncf"),
                   "openvino", INT8_GATE, (".xml", ".bin"),
                   "OpenVINO IR quantized to int8 by NNCF (accuracy control with --max-drop).",
                   options={"quantize": "int8"}, calibrated=True, parity_options=_OV_PARITY,
                   ladder=OPENVINO_INT8_LADDER, unlabelled_gate=UNLABELLED_INT8_GATE),
    )
}


def list_formats(installed_only: bool = False) -> list[str]:
    """Format names in registry order (optionally only those whose packages are importable)."""
    return [n for n, s in FORMATS.items() if s.installed or not installed_only]


def get_format(name: str) -> FormatSpec:
    if name not in FORMATS:
        raise UserError(f"Expected a format among {list(FORMATS)}. Received: {name!r}.")
    return FORMATS[name]


def resolve_formats(formats: str | Iterable[str] | None) -> list[FormatSpec]:
    """Validate a user's format list ("a,b" or a list); None means every installed format."""
    if formats is None:
        specs = [s for s in FORMATS.values() if s.installed]
        if not specs:
            raise UserError("No export format is installed. Install them with: pip install 'edgexfer[train,cpu]'")
        return specs
    names = [n.strip() for n in (formats.split(",") if isinstance(formats, str) else formats) if n.strip()]
    if not names:
        raise UserError(f"Expected at least one format among {list(FORMATS)}. Received: {formats!r}.")
    specs = [get_format(n) for n in dict.fromkeys(names)]
    for spec in specs:
        if spec.missing():
            from edgexfer._deps import require

            for module in spec.missing():
                require(module, purpose=f"the '{spec.name}' export")
    return specs


def gates_for(specs: Iterable[FormatSpec], overrides: dict[str, dict[str, Any]] | None = None,
              max_drop: float | None = None, labelled: bool = True) -> dict[str, Gate]:
    """The gate per format: the registry default (its unlabelled gate when the parity images have no
    labels), then `max_drop` for int8, then user overrides."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(FORMATS))
    if unknown:
        raise UserError(f"Expected gate overrides for formats among {list(FORMATS)}. Received: {unknown}.")
    gates = {}
    for spec in specs:
        gate = spec.gate if labelled or spec.unlabelled_gate is None else spec.unlabelled_gate
        if max_drop is not None and spec.precision == "int8" and labelled:
            gate = gate.override({"max_acc_drop": max_drop})
        gates[spec.name] = gate.override(overrides.get(spec.name))
    return gates

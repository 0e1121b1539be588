"""Export a training run to ONNX / TFLite / OpenVINO with parity proof, as one atomic bundle.

    from edgexfer.export import export
    result = export("runs/digits", "bundles/digits", formats=["onnx", "tflite-int8"])
    print(result.table())

Importing this package is cheap (no TensorFlow, no converter, no inference engine): the
converters run in subprocesses (edgexfer.export.worker) and import their packages there.
Modules: formats (the registry: formats, their gates and int8 ladders), jobs (typed converter options and
conversion jobs), onnx / tflite / openvino (one converter module per family), worker (subprocess
isolation), context (the state one export shares), check (parity of one artifact through the runtime's
loader layer, judged by the one comparator in edgexfer.parity), guardrail (int8 fallback ladder), data
(images from run.json), bundle (atomic staging + manifest), pipeline (the orchestration).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgexfer.export.formats import FORMATS, FormatSpec, Gate, get_format, list_formats

if TYPE_CHECKING:  # pragma: no cover
    from edgexfer.export.pipeline import ExportResult

__all__ = ["FORMATS", "FormatSpec", "Gate", "export", "get_format", "list_formats", "ExportResult"]


def export(run_dir: Any, out: Any, **kwargs: Any) -> "ExportResult":
    """Export `run_dir` (model.keras + run.json) to the bundle folder `out`.

    Keyword arguments: formats=None (every installed format) | "onnx,tflite" | list;
    calibration_samples=300 (ConverterOptions' default); int8_io="int8" | "uint8"; max_drop=None (points: NNCF accuracy
    control for openvino-int8 and the int8 gates); strict=False; force=False;
    archive=False; gates=None ({"tflite-int8": {"max_acc_drop": 2.0}}); parity_samples=None (all
    test images); parallel=None (conversion children at once; None: 2 with 2+ cores and 8 GB
    available, else 1). The bundle is written with every artifact that converted, failed ones marked
    (the runtime refuses them unless allow_failed=True); `result.failed` lists them. With strict=True a
    failure raises ParityError (exit 1) after the bundle is written.
    """
    from edgexfer.export.pipeline import export as _export

    return _export(run_dir, out, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "ExportResult":
        from edgexfer.export.pipeline import ExportResult

        return ExportResult
    raise AttributeError(f"module 'edgexfer.export' has no attribute {name!r}")


from edgexfer._api import make_callable  # noqa: E402

make_callable(__name__, "export")  # `edgexfer.export(...)` works after `import edgexfer.export` too

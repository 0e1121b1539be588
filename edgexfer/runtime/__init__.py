"""Run exported classifiers on CPU, CUDA GPU or an edge device, without TensorFlow.

    from edgexfer.runtime import load
    with load("bundle/") as model:                  # or "bundle.zip", or "bundle/onnx/model.onnx"
        probs = model.predict(images)                # float32 [N, classes]
        model.classify(["cat.jpg", "dog.png"], top_k=3)  # [[(label, score), ...], ...] one entry per image

Importing this package, `load()` and `predict()` never import TensorFlow, Keras or tf2onnx; an inference
engine is imported only by the backend that runs the model.

How `load()` picks the artifact and backend for a bundle (only artifacts whose parity passed, unless
allow_failed=True):

1. `format="..."` names the artifact ("onnx", "tflite", "tflite-fp16", "tflite-int8", "openvino",
   "openvino-fp16", "openvino-int8"); `backend="auto"` then runs it with the first installed backend for
   its family (onnx: onnxruntime, then openvino; tflite: litert; openvino: openvino).
2. `backend="..."` without a format: the most preferred artifact that backend runs (fp32 before fp16
   before int8; onnx, openvino, tflite).
3. Both "auto":
   a. CUDA: device "cuda"/"tensorrt", or device "auto" when onnxruntime lists the CUDA EP -> the ONNX
      artifact on onnxruntime's CUDA EP. Under "auto", if the session does not really run on CUDA the
      rule goes on with the CPU (no error output; one warning when an onnxruntime-gpu install cannot use
      its GPU). device="cuda" that cannot be honoured raises DeviceError (fallback=True: warn once, CPU).
   b. device "gpu"/"npu" or an upper-case OpenVINO device string ("AUTO", "GPU.1"): an OpenVINO artifact
      (openvino, openvino-fp16, then onnx) on the openvino backend.
   c. Any CPU with a tuning record for this machine (`Manifest.tuning`, written by `edgexfer bench --tune`,
      keyed by `edgexfer.machine.hardware_fingerprint()`, see `edgexfer.runtime.select`): the
      measured fastest passed artifact, backend, options and thread count for the batch size.
   d. x86 CPU otherwise: ONNX on onnxruntime; else openvino, then tflite (fp32).
   e. ARM CPU (aarch64, armv7l, ...): TFLite fp32 on litert; else ONNX on onnxruntime; else openvino.
   f. Otherwise the first passed artifact some installed backend runs.

The device really used is `Model.device`; the part of the rule that decided is `Model.details["rule"]`.

Hostile input: every path a manifest names must lie inside its bundle (checked before anything is opened,
with or without verify), manifest.json is schema-checked (ManifestError naming the field), a .zip is
extracted within limits (see `source.ArchiveLimits`). `classify` gives an `ImageFailure` entry for an image
it cannot use and still classifies the others; `predict` raises ImageError naming it. Files and PIL images
over `Model.max_pixels` (default 64 million, EDGEXFER_MAX_IMAGE_PIXELS) are refused from their header.
`close()` waits for the calls in flight; later calls raise ModelClosedError.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from edgexfer.errors import IntegrityError, UserError
from edgexfer.manifest import Artifact, InputSpec, Manifest, resolve_inside, verify_artifact
from edgexfer.runtime import backends, select
from edgexfer.runtime.backends.base import Runner
from edgexfer.runtime.model import ImageFailure, Model
from edgexfer.runtime.source import Source, open_source

__all__ = ["load", "open_artifact", "Model", "ImageFailure", "backends", "list_backends"]

list_backends = backends.list_backends
_OV_PRECISION_NAMES = {"bf16": "bf16", "f16": "fp16", "fp16": "fp16", "f32": "fp32", "fp32": "fp32"}


def load(path: str | os.PathLike, *, format: str | None = None, backend: str = "auto", device: str = "auto",
         threads: int | None = None, verify: bool = True, fallback: bool = False, allow_failed: bool = False,
         options: dict[str, Any] | None = None) -> Model:
    """Open a bundle directory, a bundle .zip or one model file (.onnx/.tflite/.xml, or a suffix a plugin
    backend declares) for inference.

    format: artifact name in the bundle (None: the rule in this module's docstring). backend: "auto" or a
    name from `list_backends()`. device: "auto", "cpu", "cuda", "tensorrt", "gpu", "npu", or an OpenVINO
    device string. threads: engine threads (None: the engine default; litert: every core). verify: check the
    artifact's sha256 sums. fallback: run on the CPU (warning once) when the device cannot be used.
    allow_failed: accept an artifact whose parity status is not "passed". options: backend options (see
    each backend module), plus "tuning_batch" for the tuning record lookup.
    """
    if backend != "auto" and backend not in backends.list_backends():
        raise UserError(f"Expected backend 'auto' or one of {backends.list_backends()}. Received: {backend!r}.")
    if not isinstance(device, str) or not device:
        raise UserError(f"Expected device as a string such as 'auto', 'cpu' or 'cuda'. Received: {device!r}.")
    options = dict(options or {})
    source = open_source(path)
    settings = dict(device=device, threads=threads, fallback=fallback)
    if source.file is not None:
        return _load_file(source, format, backend, verify, allow_failed, options, settings)
    choice = select.choose(source.manifest, format=format, backend=backend, device=device,
                           allow_failed=allow_failed, options=options)
    main_file = checked_files(source.root, choice.artifact, verify)
    if threads is None and choice.threads:
        settings["threads"] = choice.threads  # the thread count the tuning sweep measured
    runner = _open(main_file, choice.backend, {**choice.options, **options}, settings)
    if choice.rule == "cuda" and runner.device != "cuda" and device == "auto":
        runner, choice = _cpu_instead(source, runner, choice, options, settings, allow_failed, verify)
    return _model(runner, source.manifest, choice.artifact, choice.rule, options)


def open_artifact(root: str | os.PathLike, artifact: Artifact, *, labels: list[str], input_spec: InputSpec,
                  backend: str = "auto", device: str = "cpu", threads: int | None = None, verify: bool = True,
                  options: dict[str, Any] | None = None) -> Model:
    """Open one artifact described in memory (its files under `root`), whatever its parity status and with
    no manifest.json read: how export checks parity on the artifacts it is still building. Its files are
    confined to `root` exactly as `load` confines a bundle's."""
    root = Path(root)
    main_file = checked_files(root, artifact, verify)
    chosen = select.resolve_backend(artifact.format, backend, device)
    runner = _open(main_file, chosen, dict(options or {}), dict(device=device, threads=threads, fallback=False))
    return _model(runner, None, artifact, "artifact", dict(options or {}), described=(list(labels), input_spec))


def _cpu_instead(source: Source, runner: Runner, choice: select.Choice, options: dict[str, Any],
                 settings: dict[str, Any], allow_failed: bool, verify: bool) -> tuple[Runner, select.Choice]:
    """device="auto" probed CUDA and it does not work: apply the CPU part of the rule instead."""
    pool = select._candidates(source.manifest, allow_failed)
    cpu = select.cpu_choice(source.manifest, pool, options)
    if cpu.artifact.name == choice.artifact.name and cpu.backend == choice.backend and not cpu.options:
        return runner, select.Choice(choice.artifact, choice.backend, rule="cpu (cuda unavailable)")
    runner.close()
    main_file = checked_files(source.root, cpu.artifact, verify)
    return _open(main_file, cpu.backend, {**cpu.options, **options}, settings), cpu


def _load_file(source: Source, format: str | None, backend: str, verify: bool, allow_failed: bool,
               options: dict[str, Any], settings: dict[str, Any]) -> Model:
    family = source.family
    artifact = source.artifact
    name = artifact.name if artifact else family
    if format is not None and format != name:
        raise UserError(f"Expected format={format!r} to match the file given. Received: {source.file}, "
                        f"which is the '{name}' artifact. Pass the bundle folder to choose by format.")
    if artifact is not None:
        select.check_status(artifact, allow_failed)
        checked_files(source.root, artifact, verify)
    chosen = select.resolve_backend(family, backend, settings["device"])
    runner = _open(source.file, chosen, options, settings)
    return _model(runner, source.manifest, artifact, "file", options, family=family)


def checked_files(root: Path, artifact: Artifact, verify: bool) -> Path:
    """The artifact's main file, once every file it names (and the .bin an OpenVINO .xml reads) is known to
    lie inside the bundle, and, with verify, to match its sha256. Checked with or without verify: a
    manifest must never make the runtime open a file outside its bundle."""
    for rel in artifact.files:
        resolve_inside(root, rel)
    weights = PurePosixPath(artifact.main_file).with_suffix(".bin").as_posix()
    if artifact.main_file.lower().endswith(".xml") and (root / weights).exists():
        resolve_inside(root, weights)
    if verify:
        verify_artifact(root, artifact)
    return root / artifact.main_file


def _open(model_file: Any, backend: str, options: dict[str, Any], settings: dict[str, Any]) -> Runner:
    options = {k: v for k, v in options.items() if k != "tuning_batch"}
    return backends.open_runner(backend, model_file, options=options, **settings)


def _model(runner: Runner, manifest: Manifest | None, artifact: Artifact | None, rule: str,
           options: dict[str, Any], family: str = "",
           described: tuple[list[str], InputSpec] | None = None) -> Model:
    """The Model over an activated runner; labels and input spec from the manifest, from `described` (an
    artifact opened without one), else read from the engine."""
    try:
        if described is None and manifest is not None:
            described = (manifest.labels, manifest.input)
        labels, spec = described if described else (_infer_labels(runner), _infer_spec(runner))
        _check_engine(runner, spec, labels)
    except Exception:
        runner.close()
        raise
    precision = artifact.precision if artifact else ("int8" if runner.input.dtype.kind in "iu" else "fp32")
    if "inference_precision" in options:  # report what the engine really runs (bf16 needs CPU support)
        real = str(runner.details.get("inference_precision", options["inference_precision"])).lower()
        precision = _OV_PRECISION_NAMES.get(real, precision)
    return Model(runner, labels=labels, input_spec=spec, format=artifact.name if artifact else family,
                 precision=precision, input_quant=artifact.input_quant if artifact else None,
                 output_quant=artifact.output_quant if artifact else None, manifest=manifest,
                 artifact=artifact, rule=rule)


def _infer_spec(runner: Runner) -> InputSpec:
    shape = runner.input.shape
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3, 4):
        raise UserError(f"Expected a model input of shape (N, H, W, C) with fixed H, W and C (NHWC). Received: "
                        f"{shape} in {runner.path}. Put a manifest.json beside the file to describe the input.")
    dtype = "float32" if runner.input.dtype.kind == "f" else runner.input.dtype.name
    return InputSpec(height=shape[1], width=shape[2], channels=shape[3], dtype=dtype)


def _infer_labels(runner: Runner) -> list[str]:
    classes = runner.output.shape[-1] if runner.output.shape else None
    return [str(i) for i in range(classes)] if classes else []


def _check_engine(runner: Runner, spec: InputSpec, labels: list[str]) -> None:
    """The model file must agree with the manifest on the input shape and the number of classes."""
    shape = runner.input.shape
    if len(shape) == 4 and any(d is not None and d != s for d, s in zip(shape[1:], spec.shape)):
        raise IntegrityError(f"{runner.path} takes input {shape}, but the manifest says (N, *{spec.shape}). "
                             "The bundle is inconsistent; re-export it.")
    classes = runner.output.shape[-1] if runner.output.shape else None
    if labels and classes is not None and classes != len(labels):
        raise IntegrityError(f"{runner.path} outputs {classes} classes, but the manifest lists {len(labels)} "
                             "labels. The bundle is inconsistent; re-export it.")

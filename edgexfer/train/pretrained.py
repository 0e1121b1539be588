"""`pretrained:NAME`: a pretrained ImageNet classifier as a run directory, so export needs no training step.

`edgexfer export pretrained:efficientnet_lite0 --out DIR` exports the 1000-class ImageNet classifier
itself, with its class names as labels. There is no labelled held-out set for it, so its run record
points at `builtin:photos` (real photos shipped by PyPI packages) and says that the parity labels are
the reference's own top-1 (`training.label_source = "reference"`): the accuracy drop of an artifact is
then how often it disagrees with Keras, judged by the same statistical gates as any run; int8 is
calibrated on the training crops of those photos.

`materialise` runs inside a conversion subprocess (it builds a Keras model); this module's top level
imports nothing heavy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from edgexfer.errors import UserError

PRETRAINED_PREFIX = "pretrained:"
PARITY_DATA = "builtin:photos"
LABEL_SOURCE_REFERENCE = "reference"

#: name -> EfficientNet-Lite variant (the classifier comes from edgexfer.train.efficientnet_lite)
_VARIANTS = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}


def is_pretrained(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(PRETRAINED_PREFIX)


def pretrained_name(source: str) -> str:
    """The model name of a 'pretrained:NAME' source, checked against the known ones."""
    name = source[len(PRETRAINED_PREFIX):]
    if name not in _VARIANTS:
        raise UserError(f"Expected a pretrained model among {[PRETRAINED_PREFIX + n for n in _VARIANTS]}. "
                        f"Received: {source!r}.")
    return name


def list_pretrained() -> list[str]:
    return [PRETRAINED_PREFIX + n for n in _VARIANTS]


def materialise(job: Any) -> dict[str, Any]:
    """Conversion-child entry point (an edgexfer.export.jobs.Job): write model.keras and run.json for
    job.args['name'] into job.out_dir (the run directory export then reads like any other)."""
    name = job.args["name"]
    run_dir = Path(job.out_dir)
    model, labels, backbone = _classifier(name)
    from edgexfer.record import MODEL_FILE

    model.save(run_dir / MODEL_FILE)
    _record(name, labels, backbone, [int(v) for v in model.input_shape[1:]]).save(run_dir)
    return {"files": [MODEL_FILE], "details": {"labels": len(labels), "backbone": backbone}}


def _classifier(name: str) -> tuple[Any, list[str], dict[str, Any]]:
    from edgexfer.manifest import sha256_file
    from edgexfer.train import efficientnet_lite as lite

    variant = _VARIANTS[name]
    model = lite.imagenet_classifier(variant)
    weights = lite.imagenet_file(variant)
    backbone = {"name": name, "weights": "imagenet", "weights_file": str(weights.path),
                "weights_sha256": sha256_file(weights.path), "preprocessing": lite.PREPROCESSING,
                "head": "ImageNet classifier (1000 classes)", **dict(weights.info)}
    return model, lite.imagenet_class_names(), backbone


def _record(name: str, labels: list[str], backbone: dict[str, Any], input_shape: list[int]) -> Any:
    from edgexfer._version import __version__
    from edgexfer.data import open_dataset
    from edgexfer.record import RunRecord

    return RunRecord(
        labels=labels, input_shape=input_shape,
        preprocessing={"in_graph": backbone["preprocessing"], "caller": "raw RGB 0..255, NHWC"},
        backbone=backbone, data=open_dataset(PARITY_DATA).to_record(), seed=0,
        training={"status": "complete", "kind": "pretrained", "label_source": LABEL_SOURCE_REFERENCE,
                  "source": PRETRAINED_PREFIX + name},
        metrics={}, versions={"edgexfer": __version__},
    )

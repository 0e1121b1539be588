"""The bundle on disk: atomic staging, the manifest, parity reports and the optional .zip.

A bundle is built in a hidden folder beside the target and renamed into place at the very end,
so a failed or interrupted export (KeyboardInterrupt included) leaves no half bundle, and an
existing bundle is only replaced with force=True (swapped out, then deleted after the rename).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edgexfer._version import __version__
from edgexfer._versions import installed_versions
from edgexfer.errors import UserError
from edgexfer.manifest import Artifact, InputSpec, Manifest, QuantParams, describe_files

PARITY_JSON = "parity.json"
PARITY_MD = "parity.md"
_VERSIONED = ("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", "onnx", "onnxruntime", "onnxruntime-gpu",
              "openvino", "nncf", "ai-edge-litert", "numpy")


def archive_path(out: Path) -> Path:
    return out.with_name(out.name + ".zip")


def check_target(out: Path, force: bool, archive: bool) -> None:
    """Refuse to overwrite an existing bundle (or archive) unless force; refuse a file as target."""
    if out.exists() and not out.is_dir():
        raise UserError(f"Expected a directory path for the bundle. Received: {out}, which is a file.")
    taken = [p for p in (out, archive_path(out) if archive else None) if p is not None and p.exists()]
    if taken and not force:
        raise UserError(f"{taken[0]} already exists. Choose another --out or pass --force to replace it.")


def remove_abandoned(out: Path) -> list[Path]:
    """Delete staging folders of `out` left by an export that was killed outright (SIGKILL, power cut):
    their names carry the pid of the export that made them, and that process no longer exists."""
    removed = []
    for kind in ("partial", "work", "old"):
        for path in out.parent.glob(f".{out.name}.{kind}-*-*"):
            pid = path.name[len(f".{out.name}.{kind}-"):].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                if kind == "old" and (path / "bundle").is_dir() and not out.exists():
                    os.replace(path / "bundle", out)  # killed mid-swap: the previous bundle comes back
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Staging:
    """`with Staging(out, force, archive) as st:` build under st.root, scratch under st.work; st.commit()."""

    def __init__(self, out: str | Path, force: bool = False, archive: bool = False) -> None:
        self.out = Path(out).resolve()
        self.force, self.archive = force, archive
        self.committed = False
        check_target(self.out, force, archive)

    def __enter__(self) -> "Staging":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        remove_abandoned(self.out)
        pid = os.getpid()
        self.root = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-{pid}-", dir=self.out.parent))
        self.work = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.work-{pid}-", dir=self.out.parent))
        return self

    def __exit__(self, *exc: Any) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        if not self.committed:
            shutil.rmtree(self.root, ignore_errors=True)

    def commit(self, manifest: Manifest) -> Path | None:
        """Write the manifest, zip if asked, then swap the staging folder into place."""
        check_target(self.out, self.force, self.archive)
        manifest.save(self.root)
        zip_tmp = self._zip() if self.archive else None
        old = None
        if self.out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-{os.getpid()}-", dir=self.out.parent))
            os.replace(self.out, old / "bundle")
        try:
            os.replace(self.root, self.out)
        except BaseException:
            if old is not None:
                os.replace(old / "bundle", self.out)
            raise
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if zip_tmp is not None:
            os.replace(zip_tmp, archive_path(self.out))
            return archive_path(self.out)
        return None

    def _zip(self) -> Path:
        tmp = self.work / "bundle.zip"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(self.root.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(self.out.name) / path.relative_to(self.root))
        return tmp


# -- manifest -----------------------------------------------------------------------------------------
def make_artifact(spec: Any, outcome: dict[str, Any], root: Path) -> Artifact:
    """An Artifact (files relative to the bundle root, sha256, size, quant params) from a job outcome."""
    files = [f"{spec.name}/{f}" for f in outcome["files"]]
    sums, size = describe_files(root, files)
    quant = {k: QuantParams(**outcome[k]) if outcome.get(k) else None for k in ("input_quant", "output_quant")}
    details = dict(outcome.get("details", {}))
    details["convert_seconds"] = outcome.get("seconds")
    return Artifact(name=spec.name, format=spec.family, files=files, precision=spec.precision, sha256=sums,
                    size_bytes=size, status="pending", details=details, **quant)


def make_manifest(name: str, record: Any, provenance: dict[str, Any]) -> Manifest:
    h, w, c = (int(v) for v in record.input_shape)
    preprocessing = dict(record.preprocessing)
    preprocessing.setdefault("caller", "raw RGB 0..255, NHWC; uint8 is cast to float32 by the runtime")
    return Manifest(name=name, labels=list(record.labels), input=InputSpec(height=h, width=w, channels=c),
                    preprocessing=preprocessing, provenance=provenance)


def provenance(record: Any, run_dir: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Where the model came from and how it was exported (no TensorFlow import: package metadata)."""
    backbone = dict(record.backbone)
    return {
        "backbone": backbone.get("name"),
        "source_weights": backbone.get("weights"),
        "backbone_details": backbone,
        "data": {"source": record.data.get("source"), "fingerprint": record.data.get("fingerprint")},
        "test_split": held_out_record(record.data),
        "metrics": dict(record.metrics),
        "training_versions": dict(record.versions),
        "run_dir": str(run_dir),
        "run_created": record.created,
        "versions": {"edgexfer": __version__, **installed_versions(_VERSIONED)},
        "export": settings,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def held_out_record(data: dict[str, Any]) -> dict[str, Any] | None:
    """The run's data record with only its test split: what `bench --data` evaluates on, so that the
    benchmark's accuracy column never includes a training image."""
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, dict) or "test" not in splits:
        return None
    return {**data, "splits": {"test": splits["test"]}}


def write_reports(root: Path, parity: dict[str, Any], markdown: str) -> None:
    (root / PARITY_JSON).write_text(json.dumps(parity, indent=2) + "\n")
    (root / PARITY_MD).write_text(markdown)

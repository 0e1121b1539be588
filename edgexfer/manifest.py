"""The bundle manifest: the contract between export (writes it) and the runtime (reads it).

Pure standard library: the runtime on a device imports this, never TensorFlow.
A bundle is a directory (or a .zip of one) holding `manifest.json` and one sub-folder per artifact.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.errors import IntegrityError, UserError

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"


@dataclass
class InputSpec:
    """What every artifact of the bundle takes: raw images, NHWC, values in `value_range`."""

    height: int
    width: int
    channels: int = 3
    dtype: str = "float32"  # dtype of the float artifacts' input tensor; uint8 images are cast
    value_range: list[float] = field(default_factory=lambda: [0.0, 255.0])
    layout: str = "NHWC"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)


@dataclass
class QuantParams:
    """Affine quantization of an integer I/O tensor: real = scale * (q - zero_point)."""

    dtype: str  # "int8" | "uint8"
    scale: float
    zero_point: int


@dataclass
class Artifact:
    """One exported file set (for example the ONNX model, or an OpenVINO .xml + .bin pair)."""

    name: str  # registry name, e.g. "onnx", "tflite-int8", "openvino-fp16"
    format: str  # family: "onnx" | "tflite" | "openvino"
    files: list[str]  # paths relative to the bundle root; files[0] is the one a runtime opens
    precision: str  # "fp32" | "fp16" | "int8"
    sha256: dict[str, str] = field(default_factory=dict)
    size_bytes: int = 0
    input_quant: QuantParams | None = None
    output_quant: QuantParams | None = None
    status: str = "pending"  # "passed" | "failed" | "pending"
    parity: dict[str, Any] = field(default_factory=dict)  # metrics, gate, passed, tried variants
    details: dict[str, Any] = field(default_factory=dict)  # converter notes, float ops left, opset...

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def main_file(self) -> str:
        return self.files[0]


@dataclass
class Manifest:
    name: str
    labels: list[str]
    input: InputSpec
    preprocessing: dict[str, Any]
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    tuning: dict[str, Any] = field(default_factory=dict)  # measured backend choices (bench --tune)
    schema_version: int = SCHEMA_VERSION

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Manifest":
        version = raw.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise IntegrityError(
                f"Expected manifest schema_version <= {SCHEMA_VERSION}. Received: {version!r}. "
                "Upgrade edgexfer or re-export the bundle."
            )
        try:
            artifacts = {k: _artifact(v) for k, v in raw.get("artifacts", {}).items()}
            return cls(
                name=raw["name"],
                labels=list(raw["labels"]),
                input=InputSpec(**raw["input"]),
                preprocessing=dict(raw.get("preprocessing", {})),
                artifacts=artifacts,
                provenance=dict(raw.get("provenance", {})),
                tuning=dict(raw.get("tuning", {})),
                schema_version=version,
            )
        except (KeyError, TypeError) as exc:
            raise IntegrityError(f"Malformed manifest: missing or invalid field {exc}.") from exc

    def save(self, bundle_dir: str | Path) -> Path:
        """Write manifest.json atomically (write a temp file, then rename)."""
        path = Path(bundle_dir) / MANIFEST_FILE
        tmp = path.with_name(MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, bundle_dir: str | Path) -> "Manifest":
        path = Path(bundle_dir) / MANIFEST_FILE
        if not path.is_file():
            raise UserError(
                f"Expected a bundle directory containing {MANIFEST_FILE}. Received: {bundle_dir}. "
                "Create one with `edgexfer export RUN_DIR --out BUNDLE`."
            )
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise IntegrityError(f"{path} is not valid JSON: {exc}") from exc
        return cls.from_dict(raw)

    # -- queries ---------------------------------------------------------------------------------
    def artifact(self, name: str) -> Artifact:
        if name not in self.artifacts:
            raise UserError(
                f"Expected one of the bundle's artifacts {sorted(self.artifacts)}. Received: {name!r}."
            )
        return self.artifacts[name]

    def passed_artifacts(self) -> list[Artifact]:
        return [a for a in self.artifacts.values() if a.passed]


def _artifact(raw: dict[str, Any]) -> Artifact:
    raw = dict(raw)
    for key in ("input_quant", "output_quant"):
        if raw.get(key) is not None:
            raw[key] = QuantParams(**raw[key])
    return Artifact(**raw)


# -- checksums -------------------------------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_files(bundle_dir: str | Path, files: list[str]) -> tuple[dict[str, str], int]:
    """sha256 per file and their total size, for filling an Artifact."""
    root = Path(bundle_dir)
    sums = {f: sha256_file(root / f) for f in files}
    return sums, sum((root / f).stat().st_size for f in files)


def verify_artifact(bundle_dir: str | Path, artifact: Artifact) -> None:
    """Raise IntegrityError naming the first file that is missing or does not match its sha256."""
    root = Path(bundle_dir)
    for rel, expected in artifact.sha256.items():
        path = root / rel
        if not path.is_file():
            raise IntegrityError(f"Artifact '{artifact.name}': file {rel} is missing from {root}.")
        actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(
                f"Artifact '{artifact.name}': {rel} does not match the manifest "
                f"(expected sha256 {expected[:12]}…, received {actual[:12]}…). "
                "The file was modified or corrupted; re-export the bundle."
            )


def verify_bundle(bundle_dir: str | Path, manifest: Manifest | None = None) -> list[str]:
    """Verify every artifact; return the list of problems (empty when all files match)."""
    manifest = manifest or Manifest.load(bundle_dir)
    problems = []
    for artifact in manifest.artifacts.values():
        try:
            verify_artifact(bundle_dir, artifact)
        except IntegrityError as exc:
            problems.append(str(exc))
    return problems

"""The bundle manifest: the contract between export (writes it) and the runtime (reads it).

TF-free (the standard library and the parity record, edgexfer.parity): the runtime on a device imports this.
A bundle is a directory (or a .zip of one) holding `manifest.json` and one sub-folder per artifact.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgexfer.errors import IntegrityError, ManifestError, UnsafeBundleError, UserError
from edgexfer.parity import Gate, ParityResult, rejudge

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
    parity: ParityResult | None = None  # written by export (None: not checked yet); edgexfer.parity
    details: dict[str, Any] = field(default_factory=dict)  # converter notes, float ops left, opset...

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def verdict(self) -> ParityResult:
        """The parity record, or a failed one saying it was not checked: what every reader shows."""
        return self.parity if self.parity is not None else ParityResult.failed(Gate(), "parity was not checked")

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
        out = asdict(self)
        for name, artifact in self.artifacts.items():  # the typed parity record has its own wire format
            out["artifacts"][name]["parity"] = artifact.parity.to_dict() if artifact.parity is not None else {}
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "Manifest":
        """Build a Manifest from parsed JSON, after `check_manifest` (ManifestError naming a bad field)."""
        check_manifest(raw)
        return cls(
            name=raw["name"],
            labels=list(raw["labels"]),
            input=InputSpec(**raw["input"]),
            preprocessing=dict(raw.get("preprocessing", {})),
            artifacts={k: _artifact(v) for k, v in raw.get("artifacts", {}).items()},
            provenance=dict(raw.get("provenance", {})),
            tuning=dict(raw.get("tuning", {})),
            schema_version=raw["schema_version"],
        )

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
        raw = read_manifest_json(path)
        try:
            return cls.from_dict(raw)
        except (ManifestError, UnsafeBundleError) as exc:  # the same error, naming the file it is about
            raise type(exc)(f"{path}: {exc}") from None

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
    raw["parity"] = ParityResult.from_dict(raw["parity"]) if raw.get("parity") else None
    return Artifact(**raw)


# -- schema ---------------------------------------------------------------------------------------
MAX_MANIFEST_BYTES = 16 << 20  # a real manifest is a few KB; refuse to parse a huge file
_MISSING = object()
_INPUT_KEYS = tuple(f.name for f in fields(InputSpec))  # the dataclasses are the schema's field lists
_ARTIFACT_KEYS = tuple(f.name for f in fields(Artifact))
_QUANT_KEYS = tuple(f.name for f in fields(QuantParams))
_QUANT_DTYPES = ("int8", "uint8", "int16", "uint16")
_SCALAR_METRICS = ("n", "max_abs_diff", "mean_abs_diff", "cosine", "agreement", "accuracy", "reference_accuracy",
                   "accuracy_drop")  # the parity table prints these as numbers
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"^[A-Za-z]:")
_FIX = "Re-export the bundle (`edgexfer export`), or correct that field in manifest.json."


def read_manifest_json(path: Path) -> Any:
    """Parse manifest.json: UTF-8 (a UTF-8 byte-order mark is allowed), standard JSON, at most 16 MiB."""
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"Expected {path} to be at most {MAX_MANIFEST_BYTES:,} bytes. Received: {size:,} "
                            f"bytes. {_FIX}")
    text = _decode(path.read_bytes(), path)
    try:
        return json.loads(text)  # NaN / Infinity allowed: `save` writes them for a failed artifact's metrics
    except json.JSONDecodeError as exc:
        raise ManifestError(f"Expected {path} to be valid JSON. Received: {exc}. {_FIX}") from exc
    except RecursionError as exc:
        raise ManifestError(f"Expected {path} to be a bundle manifest. Received: JSON nested too deeply to "
                            f"read. {_FIX}") from exc


def _decode(data: bytes, path: Path) -> str:
    """UTF-8 text; UTF-16/32 (a BOM or NUL bytes) and other encodings are refused with the fix."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise ManifestError(f"Expected {path} encoded as UTF-8. Received: UTF-16 or UTF-32 text (a byte-order "
                            "mark or NUL bytes). Save it as UTF-8, or re-export the bundle.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"Expected {path} encoded as UTF-8. Received: a byte that is not UTF-8 at offset "
                            f"{exc.start}. Save it as UTF-8, or re-export the bundle.") from exc


def check_manifest(raw: Any) -> None:
    """Check the types and required fields of a parsed manifest; ManifestError names the first bad field.

    Why this strict: the manifest decides which files the runtime opens and how it reads their output, so a
    damaged or hostile manifest must fail here with its field named, not later as an AttributeError, as
    labels read letter by letter, or as a file opened outside the bundle.
    """
    if not isinstance(raw, dict):
        raise ManifestError(f"Expected {MANIFEST_FILE} to hold a JSON object. Received: {_show(raw)}. {_FIX}")
    _check_version(raw.get("schema_version", _MISSING))
    _expect(isinstance(raw.get("name"), str), "name", "a string", raw.get("name", _MISSING))
    labels = raw.get("labels", _MISSING)
    _expect(isinstance(labels, list) and bool(labels) and all(isinstance(x, str) for x in labels), "labels",
            "a non-empty list of strings", labels)
    _check_input(raw.get("input", _MISSING))
    for key in ("preprocessing", "provenance", "tuning", "artifacts"):
        _expect(isinstance(raw.get(key, {}), dict), key, "an object", raw.get(key))
    for key in ("data", "metrics", "versions"):  # `edgexfer info` reads into these
        value = raw.get("provenance", {}).get(key, {})
        _expect(isinstance(value, dict), f"provenance.{key}", "an object", value)
    _check_tuning(raw.get("tuning", {}))
    for name, artifact in raw.get("artifacts", {}).items():
        _check_artifact(artifact, f"artifacts.{name}")


def _check_version(version: Any) -> None:
    _expect(_is_int(version) and version >= 1, "schema_version", f"an integer from 1 to {SCHEMA_VERSION}", version)
    if version > SCHEMA_VERSION:
        raise ManifestError(f"Expected manifest schema_version <= {SCHEMA_VERSION}. Received: {version!r}. "
                            "Upgrade edgexfer or re-export the bundle.")


def _check_input(spec: Any) -> None:
    _expect(isinstance(spec, dict), "input", "an object with height, width and channels", spec)
    _check_known(spec, _INPUT_KEYS, "input")
    for key in ("height", "width"):
        _expect(_is_int(spec.get(key)) and spec[key] >= 1, f"input.{key}", "a positive integer",
                spec.get(key, _MISSING))
    channels = spec.get("channels", 3)
    _expect(_is_int(channels) and 1 <= channels <= 4, "input.channels", "an integer from 1 to 4", channels)
    _expect(isinstance(spec.get("dtype", ""), str), "input.dtype", "a string", spec.get("dtype"))
    low_high = spec.get("value_range", [0.0, 255.0])
    _expect(isinstance(low_high, list) and len(low_high) == 2 and all(_is_number(v) for v in low_high)
            and low_high[0] < low_high[1], "input.value_range", "[low, high] (two numbers, low < high)", low_high)
    _expect(spec.get("layout", "NHWC") == "NHWC", "input.layout", '"NHWC"', spec.get("layout"))


def _check_tuning(tuning: dict[str, Any]) -> None:
    for machine, per_batch in tuning.items():
        _expect(isinstance(per_batch, dict), f"tuning.{machine}", "an object of batch size -> entry", per_batch)
        for batch, entry in per_batch.items():
            where = f"tuning.{machine}.{batch}"
            _expect(isinstance(entry, dict), where, "an object", entry)
            for key in ("artifact", "backend"):
                _expect(isinstance(entry.get(key, ""), str), f"{where}.{key}", "a string", entry.get(key))
            _expect(isinstance(entry.get("options") or {}, dict), f"{where}.options", "an object",
                    entry.get("options"))
            threads = entry.get("threads")
            _expect(threads is None or _is_int(threads), f"{where}.threads", "an integer or null", threads)


def _check_artifact(art: Any, where: str) -> None:
    _expect(isinstance(art, dict), where, "an object", art)
    _check_known(art, _ARTIFACT_KEYS, where)
    for key in ("name", "format", "precision"):
        _expect(isinstance(art.get(key), str), f"{where}.{key}", "a string", art.get(key, _MISSING))
    _expect(isinstance(art.get("status", ""), str), f"{where}.status", "a string", art.get("status"))
    files = art.get("files", _MISSING)
    _expect(isinstance(files, list) and bool(files), f"{where}.files", "a non-empty list of paths", files)
    for i, rel in enumerate(files):
        check_relative_path(rel, f"{where}.files[{i}]")
    _expect(len(set(files)) == len(files), f"{where}.files", "a list without repeated paths", files)
    sums = art.get("sha256", _MISSING)
    _expect(isinstance(sums, dict) and set(sums) == set(files), f"{where}.sha256",
            "an object mapping each of `files` to its sha256", sums)
    for rel, digest in sums.items():
        _expect(isinstance(digest, str) and bool(_SHA256.fullmatch(digest)), f"{where}.sha256.{rel}",
                "64 lower-case hex digits", digest)
    size = art.get("size_bytes", 0)
    _expect(_is_int(size) and size >= 0, f"{where}.size_bytes", "a non-negative integer", size)
    for key in ("input_quant", "output_quant"):
        _check_quant(art.get(key), f"{where}.{key}")
    for key in ("parity", "details"):
        _expect(isinstance(art.get(key, {}), dict), f"{where}.{key}", "an object", art.get(key))
    _check_parity(art.get("parity", {}), f"{where}.parity")


def _check_parity(parity: dict[str, Any], where: str) -> None:
    """The parity record `edgexfer info` renders (export's ParityResult.to_dict)."""
    for key, kind, expected in (("metrics", dict, "an object"), ("gate", dict, "an object"),
                                ("failures", list, "a list"), ("tried", list, "a list"), ("checks", list, "a list")):
        _expect(isinstance(parity.get(key, kind()), kind), f"{where}.{key}", expected, parity.get(key))
    for key in _SCALAR_METRICS:  # NaN and infinity are allowed: a failed artifact's metrics can be
        value = parity.get("metrics", {}).get(key, 0)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _expect(ok, f"{where}.metrics.{key}", "a number", value)
    _expect(all(isinstance(f, str) for f in parity.get("failures", [])), f"{where}.failures", "a list of strings",
            parity.get("failures"))
    for key in ("tried", "checks"):
        _expect(all(isinstance(c, dict) for c in parity.get(key, [])), f"{where}.{key}", "a list of objects",
                parity.get(key))
    for key, value in parity.get("gate", {}).items():  # edgexfer.parity.Gate reads these as numbers
        _expect(value is None or _is_number(value), f"{where}.gate.{key}", "a number or null", value)
    for i, rung in enumerate(parity.get("tried", [])):  # edgexfer.parity.Rung
        for key, kind, expected in (("metrics", dict, "an object"), ("details", dict, "an object"),
                                    ("failures", list, "a list"), ("checks", list, "a list")):
            _expect(isinstance(rung.get(key) or kind(), kind), f"{where}.tried[{i}].{key}", expected, rung.get(key))
        _expect(all(isinstance(c, dict) for c in rung.get("checks") or []), f"{where}.tried[{i}].checks",
                "a list of objects", rung.get("checks"))


def _check_quant(quant: Any, where: str) -> None:
    if quant is None:
        return
    _expect(isinstance(quant, dict), where, "null or an object with dtype, scale and zero_point", quant)
    _check_known(quant, _QUANT_KEYS, where)
    _expect(quant.get("dtype") in _QUANT_DTYPES, f"{where}.dtype", f"one of {list(_QUANT_DTYPES)}",
            quant.get("dtype", _MISSING))
    scale = quant.get("scale", _MISSING)
    _expect(_is_number(scale) and scale > 0, f"{where}.scale", "a positive number", scale)
    _expect(_is_int(quant.get("zero_point")), f"{where}.zero_point", "an integer", quant.get("zero_point", _MISSING))


def check_relative_path(rel: Any, where: str) -> None:
    """A manifest path must name a file inside the bundle: relative, '/'-separated, no '..' (UnsafeBundleError).

    Checked when the manifest is read, before anything is opened; `resolve_inside` then catches links.
    """
    ok = (isinstance(rel, str) and bool(rel) and "\\" not in rel and "\x00" not in rel and not rel.startswith("/")
          and not _DRIVE.match(rel) and ".." not in rel.split("/"))
    if not ok:
        raise UnsafeBundleError(f"Expected manifest field `{where}` to be a path inside the bundle (relative, '/' "
                                f"separators, no '..'). Received: {_show(rel)}: a manifest never points outside "
                                f"its bundle. {_FIX}")


def _check_known(obj: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = [k for k in obj if k not in known]
    if unknown:
        raise ManifestError(f"Expected manifest field `{where}` to hold only {list(known)}. Received: the unknown "
                            f"field {unknown[0]!r}. {_FIX}")


def _expect(ok: bool, where: str, expected: str, value: Any) -> None:
    if not ok:
        raise ManifestError(f"Expected manifest field `{where}` to be {expected}. Received: {_show(value)}. {_FIX}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    """A short JSON rendering of a value with its JSON type, for error messages."""
    if value is _MISSING:
        return "nothing (the field is missing)"
    if value is None:
        return "null"
    kinds = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "a list", dict: "an object"}
    text = json.dumps(value, default=str)
    return f"{text[:80] + '…' if len(text) > 80 else text} ({kinds.get(type(value), type(value).__name__)})"


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


def resolve_inside(bundle_dir: str | Path, rel: str) -> Path:
    """`bundle_dir / rel`, refused (UnsafeBundleError) when it resolves outside the bundle.

    Why resolve: a manifest's paths are checked for '..' and absolute paths when it is read, but a
    symbolic link inside the bundle can still point anywhere; nothing outside the bundle is ever opened.
    """
    root = Path(bundle_dir).resolve()
    real = (root / rel).resolve()
    if real != root and root not in real.parents:
        raise UnsafeBundleError(
            f"Expected every file the manifest names to lie inside the bundle {root}. Received: {rel!r}, "
            "which resolves outside it (a symbolic link?). Copy the real file into the bundle instead.")
    return Path(bundle_dir) / rel


def verify_artifact(bundle_dir: str | Path, artifact: Artifact) -> None:
    """Raise IntegrityError naming the first file that is missing or does not match its sha256."""
    root = Path(bundle_dir)
    for rel in artifact.files:
        resolve_inside(root, rel)  # before any file is opened
    for rel, expected in artifact.sha256.items():
        path = resolve_inside(root, rel)
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
    """Verify every artifact: its files against their sha256, and its parity record against itself (status,
    verdict, and the verdict its metrics give under its gate). The list of problems; empty when all hold."""
    manifest = manifest or Manifest.load(bundle_dir)
    problems = []
    for artifact in manifest.artifacts.values():
        try:
            verify_artifact(bundle_dir, artifact)
        except IntegrityError as exc:
            problems.append(str(exc))
        record = artifact.parity
        if record is None:
            continue
        if artifact.passed != record.passed:
            problems.append(f"Artifact '{artifact.name}': status {artifact.status!r} but its parity record says "
                            f"{'passed' if record.passed else 'failed'}. Re-export the bundle.")
        problems += [f"Artifact '{artifact.name}': parity {why}. Re-export the bundle." for why in rejudge(record)]
    return problems

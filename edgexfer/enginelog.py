"""Keep the engines' own start-up chatter off the user's screen, and nothing else.

TensorFlow's C++ core (absl's "WARNING: All log messages before absl::InitializeLog()..." and the oneDNN /
CPU-feature info lines, printed even under TF_CPP_MIN_LOG_LEVEL=2) and LiteRT ("INFO: Created TensorFlow
Lite XNNPACK delegate for CPU.") write straight to file descriptor 2, where Python's sys.stderr cannot
catch them. `engine_stderr()` points fd 2 at a pipe around such a call, drops the lines that match a known
noise pattern, and passes every other line on to the real stderr as it arrives (a real engine error, or a
crash message, still reaches the user). Standard library only: the runtime uses it on devices.
"""
from __future__ import annotations

import os
import re
import sys
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["NOISE", "engine_stderr", "import_tensorflow", "is_noise"]

#: Lines the engines print on their own that tell a user nothing (start-up info, known benign warnings).
NOISE: tuple[re.Pattern[bytes], ...] = tuple(re.compile(p) for p in (
    rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
    rb"^[IW]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ",  # absl/glog info and warning lines (oneDNN, CPU features)
    rb"^To enable the following instructions: .*rebuild TensorFlow",  # second line of the CPU-feature note
    rb"^E\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] Unable to register cu(DNN|FFT|BLAS) factory",  # GPU builds
    rb"computation placer already registered",
    rb"^INFO: (Created|Initialized) TensorFlow Lite",  # LiteRT's XNNPACK delegate / runtime notice
))

_lock = threading.RLock()  # fd 2 is one per process: one redirect at a time
_depth = 0


def is_noise(line: bytes) -> bool:
    return any(p.search(line) for p in NOISE)


@contextmanager
def engine_stderr() -> Iterator[None]:
    """Around a call into a noisy C++ library: its known noise lines are dropped, the rest go to stderr.

    Re-entrant (a nested use is a no-op) and serialised across threads. When fd 2 cannot be duplicated
    (no stderr at all) the call runs untouched.
    """
    global _depth
    with _lock:
        if _depth:
            yield
            return
        try:
            saved = os.dup(2)
        except OSError:
            yield
            return
        _depth += 1
        try:
            yield from _redirected(saved)
        finally:
            _depth -= 1


def _redirected(saved: int) -> Iterator[None]:
    read_end, write_end = os.pipe()
    reader = threading.Thread(target=_forward, args=(read_end, saved), daemon=True, name="edgexfer-stderr")
    reader.start()
    _flush_python_stderr()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        _flush_python_stderr()
        os.dup2(saved, 2)  # closes the pipe's last write end: the reader sees end of file
        reader.join(timeout=5)
        if not reader.is_alive():  # else a child kept the pipe open: leak the fd rather than let it be reused
            os.close(saved)


def _forward(read_end: int, target: int) -> None:
    """Copy whole lines from the pipe to `target`, leaving out the noise."""
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            _write(target, [line + b"\n" for line in lines])
    _write(target, [pending] if pending else [])


def _write(target: int, lines: list[bytes]) -> None:
    kept = b"".join(line for line in lines if not is_noise(line))
    if kept:
        try:
            os.write(target, kept)
        except OSError:
            pass


def _flush_python_stderr() -> None:
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):
        pass


def import_tensorflow() -> None:
    """Import TensorFlow (and Keras) once, without the start-up lines of TensorFlow's C++ core.

    The CLI calls this before a command that trains or evaluates, so the later import inside the library
    finds the module loaded; TF_CPP_MIN_LOG_LEVEL=2 is set as well, for the messages TensorFlow logs later.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    with engine_stderr():
        import tensorflow  # noqa: F401

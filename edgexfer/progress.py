"""Progress of long steps: library code reports `Step`s, the caller decides how they look.

Export, bench and the device app take an optional `progress` callback and call it with a `Step` after each
unit of work (an artifact converted, a parity check, a ladder rung, a benchmark cell). `Reporter` is the
callback the command line uses: a live click progress bar when its stream is a terminal, one plain line per
step otherwise (logs, CI, pipes), so a log never holds ANSI escapes or carriage returns.

Why click.progressbar and not tqdm or rich: click is a base dependency (the CLI is built on it), so every
install has it, the runtime-only one on a device included; tqdm arrives only through ai-edge-litert and rich
only through keras/nncf. This module imports click only when a bar is drawn, and nothing heavy at all.
"""
from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable, TextIO

__all__ = ["Step", "Callback", "Tracker", "Reporter", "is_terminal", "keras_verbose"]


@dataclass(frozen=True)
class Step:
    """One finished unit of a long task.

    done: units finished so far (this one included); total: units known so far (a task may add some, as
    the int8 ladder does); text: what happened, e.g. "onnx converted (2.1 s)"; notable: a failure or a
    decision the user should still see once a live bar has moved on (printed as a line of its own).
    """

    done: int
    total: int
    text: str
    notable: bool = False


Callback = Callable[[Step], None]


class Tracker:
    """Counts the units of one task for a callback (None: counts, reports nothing), so that library code
    only says what finished. Thread-safe: conversions report from a watcher thread."""

    def __init__(self, callback: Callback | None = None, total: int = 0) -> None:
        self.callback, self.total, self.done = callback, total, 0
        self._lock = threading.Lock()

    def add(self, units: int) -> None:
        """More units than first planned (negative: fewer, e.g. ladder rungs that were not needed)."""
        with self._lock:
            self.total = max(self.done, self.total + units)

    def step(self, text: str, notable: bool = False) -> None:
        """One unit finished."""
        with self._lock:
            self.done += 1
            self.total = max(self.total, self.done)
            step = Step(self.done, self.total, text, notable)
        self._send(step)

    def note(self, text: str) -> None:
        """A notable message that finishes no unit (e.g. "trying the int8 ladder")."""
        with self._lock:
            step = Step(self.done, self.total, text, True)
        self._send(step)

    def _send(self, step: Step) -> None:
        if self.callback is not None:
            self.callback(step)


def is_terminal(stream: Any) -> bool:
    """True when `stream` is an interactive terminal (a live bar makes sense there and nowhere else)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def keras_verbose(quiet: bool = False, stream: Any = None) -> int:
    """Keras' `verbose` for fit(): 1 (a live bar) only on a terminal; 2 (one line per epoch) otherwise, so
    a log gets no ANSI escapes. Keras writes to stdout."""
    return 1 if not quiet and is_terminal(stream if stream is not None else sys.stdout) else 2


class Reporter:
    """A `Callback` for one task: a click bar on a terminal, else "label [done/total] text" lines.

    Use it as a context manager (the bar is closed at the end); `note(text)` prints a line in both modes.
    Thread-safe, since steps may come from a watcher thread.
    """

    def __init__(self, label: str, *, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.live = is_terminal(self.stream) if live is None else live
        self._bar: Any = None
        self._lock = threading.Lock()

    def __call__(self, step: Step) -> None:
        with self._lock:
            if not self.live:
                self._line(f"{self.label} [{step.done}/{step.total}] {step.text}")
                return
            if step.notable:
                self._above_bar(step.text)
            self._update(step)

    def note(self, text: str) -> None:
        with self._lock:
            if self.live and self._bar is not None:
                self._above_bar(text)
                self._bar.current_item = _fit(text)
                self._bar.render_progress()
            else:
                self._line(f"{self.label}: {text}")

    def close(self) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.render_finish()
                self._bar = None

    def __enter__(self) -> "Reporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rendering -------------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _update(self, step: Step) -> None:
        if self._bar is None:
            import click

            self._bar = click.progressbar(length=max(step.total, 1), label=self.label, file=self.stream,
                                          show_eta=False, show_pos=True, item_show_func=lambda item: item)
            self._bar.__enter__()
        bar = self._bar
        bar.length = max(step.total, 1)
        bar.finished = bar.pos >= bar.length  # the total may have grown since the bar last filled up
        bar.current_item = _fit(step.text)
        bar.update(max(step.done - bar.pos, 0))
        bar.render_progress()  # update() draws only when the position moved

    def _above_bar(self, text: str) -> None:
        """A line that stays: clear the bar's line, print the text; the next update draws the bar below."""
        width = self._bar.max_width if self._bar is not None and self._bar.max_width else 0
        self.stream.write("\r" + text.ljust(width) + "\n")
        self.stream.flush()


def _fit(text: str, width: int = 60) -> str:
    """The bar's item text, one line and short enough to keep the bar on one terminal line."""
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= width else line[: width - 3] + "..."

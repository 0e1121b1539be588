"""edgexfer-app: a small device application that classifies images with `edgexfer.runtime`.

    python deploy/app/edgexfer_app.py BUNDLE --watch /data/incoming --move-to /data/done --out results.jsonl
    find photos -name '*.jpg' | python deploy/app/edgexfer_app.py BUNDLE --stdin --batch-size 8
    python deploy/app/edgexfer_app.py BUNDLE --camera 0 --camera-interval 1.0     # when OpenCV is installed

Sources (any together): a folder polled for new image files (stdlib only, no inotify, so it works on any
filesystem and board), image paths on stdin (one a line), and an OpenCV camera when `cv2` is importable.
Whatever is waiting when the model becomes free is classified as one batch (up to --batch-size).

Output: one JSON line per image, written and flushed as soon as its batch is done:
    {"path", "label", "score", "top_k": [{"label", "score"}], "latency_ms", "infer_ms", "batch_size",
     "backend", "device", "format", "time"}
or, for an image that cannot be read, {"path", "error", ...}: a bad file never stops the app.

SIGTERM / SIGINT: the batch already started is finished and written, then the app exits 0. A watched file
is classified once: it is remembered (in memory, and in --state FILE across restarts) and, with --move-to
DIR, moved out of the folder after its result is written (unreadable files go to DIR/failed).

Watched files are read only once complete (renamed in, or unchanged for --settle seconds), a damaged last
line of --state is skipped with a warning, and images over --max-pixels give an error line: WATCH_RULES
below, printed by --help, says exactly how.

Uses only `edgexfer.runtime`, numpy, PIL and the standard library: it runs with `pip install
'edgexfer[cpu]'` (or `[gpu]`) and never imports TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, TextIO

import numpy as np

from edgexfer import imaging
from edgexfer.errors import EdgexferError, UserError
from edgexfer.runtime import load
from edgexfer.runtime.inputs import load_image

WATCH_RULES = """\
Watched folder: a file is read once it is complete, that is when it was renamed into the folder (write it
elsewhere, or under a dot-name or a non-image suffix, then rename it: always safe), or when its size and
mtime have not changed for --settle seconds (default 2; a copy that pauses for longer can still be read
early). A file that fails to decode and changed meanwhile is not failed: it is read again once it settles.
--state FILE holds one JSON line per classified file; a damaged line (an append cut short by a power cut)
is skipped with a warning and the others are kept, so the app always starts.
Images over --max-pixels (default 64000000, from the file header, before decoding) give an error line."""
DONE = object()  # a source puts this on the queue when it will put nothing more
_TEST_DELAY_ENV = "EDGEXFER_APP_BATCH_DELAY"  # test hook: seconds to hold a started batch (signal tests)


@dataclass
class Item:
    """One image to classify: a file path, or a camera frame already decoded (RGB uint8 HWC)."""

    path: str
    source: str  # "watch" | "stdin" | "camera"
    frame: np.ndarray | None = None
    key: tuple | None = field(default=None, repr=False)  # watched files: (path, mtime_ns, size)


# -- command line ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgexfer-app", description=__doc__.split("\n\n")[0], epilog=WATCH_RULES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle folder or .zip, or one .onnx/.tflite/.xml file")
    p.add_argument("--watch", metavar="DIR", help="poll DIR for new image files")
    p.add_argument("--stdin", action="store_true", help="read image paths from stdin, one a line")
    p.add_argument("--camera", metavar="INDEX", type=int, help="OpenCV camera index (needs cv2)")
    p.add_argument("--camera-interval", type=float, default=1.0, metavar="S", help="seconds between frames")
    p.add_argument("--out", metavar="FILE", help="append JSON lines to FILE (default: stdout)")
    p.add_argument("--batch-size", type=int, default=8, help="most images classified in one call")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--format", dest="artifact", help="artifact (onnx, tflite, tflite-int8, openvino, ...)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="engine threads (default: the engine's choice)")
    p.add_argument("--poll-interval", type=float, default=0.5, metavar="S", help="seconds between scans")
    p.add_argument("--settle", type=float, default=2.0, metavar="S",
                   help="seconds a watched file's size and mtime must stay unchanged before it is read "
                        "(files renamed into the folder are read at once)")
    p.add_argument("--max-pixels", type=int, metavar="N", help="largest image decoded (width x height; "
                   "default EDGEXFER_MAX_IMAGE_PIXELS or 64000000)")
    p.add_argument("--move-to", metavar="DIR", help="move watched files here once their result is written")
    p.add_argument("--state", metavar="FILE", help="remember classified watched files across restarts "
                   "(a damaged last line is skipped with a warning)")
    p.add_argument("--once", action="store_true", help="classify what is in --watch now, then exit")
    args = p.parse_args(argv)
    if not (args.watch or args.stdin or args.camera is not None):
        p.error("give at least one source: --watch DIR, --stdin or --camera INDEX")
    if args.batch_size < 1 or args.top_k < 1 or args.poll_interval <= 0 or args.settle < 0:
        p.error("--batch-size and --top-k must be >= 1, --poll-interval > 0 and --settle >= 0")
    if args.max_pixels is not None and args.max_pixels < 1:
        p.error("--max-pixels must be >= 1")
    return args


# -- sources (each runs in its own daemon thread and feeds one queue) ----------------------------------
class Watcher:
    """Polls a folder and queues each new image file once it is complete (see WATCH_RULES).

    Why two signs of "complete": a file renamed into the folder was finished before it appeared (its ctime,
    set by the rename, is later than its mtime; the same when `cp -p` or rsync set the times at the end),
    while a file written in place can only be judged by its size and mtime staying the same for `settle`
    seconds (at least one poll). `--once` takes every file as it is (assumed complete) and scans once.
    """

    def __init__(self, folder: Path, interval: float, remembered: set[tuple], once: bool, settle: float = 2.0,
                 clock: Any = time.monotonic) -> None:
        self.folder, self.interval, self.once, self.settle = folder, interval, once, settle
        self.queued: set[tuple] = set(remembered)
        self._clock = clock
        self._seen: dict[str, tuple[tuple, float]] = {}  # path -> (key, when this key was first seen)

    def run(self, out: queue.Queue, stop: threading.Event) -> None:
        while not stop.is_set():
            for item in self.scan(stable_only=not self.once):
                out.put(item)
            if self.once:
                break
            stop.wait(self.interval)
        out.put(DONE)

    def scan(self, stable_only: bool) -> list[Item]:
        """New complete image files, oldest first (the order a camera or uploader wrote them)."""
        now, seen, ready = self._clock(), {}, []
        for path, key, renamed in self._stat_all():
            previous = self._seen.get(path)
            steady = previous is not None and previous[0] == key
            seen[path] = (key, previous[1] if steady else now)
            if key in self.queued:
                continue
            if not stable_only or renamed or (steady and now - previous[1] >= self.settle):
                ready.append((key, path))
        self._seen = seen
        ready.sort(key=lambda kp: (kp[0][1], kp[1]))
        self.queued.update(key for key, _ in ready)
        return [Item(p, "watch", key=key) for key, p in ready]

    def _stat_all(self) -> Iterable[tuple[str, tuple, bool]]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:  # the folder may be an unmounted card: keep polling, say so once per poll
            print(f"edgexfer-app: cannot scan {self.folder}: {exc}", file=sys.stderr)
            return
        for e in entries:
            if not imaging.is_image_name(e.name):  # the training scanner's extensions and hidden-file rule
                continue
            try:
                if e.is_file():
                    st = e.stat()
                    yield e.path, file_key(e.path, st), st.st_ctime_ns > st.st_mtime_ns
            except OSError:  # removed between scandir and stat
                continue


def file_key(path: str, st: os.stat_result) -> tuple:
    """What identifies one version of a watched file (also the row --state stores)."""
    return (path, st.st_mtime_ns, st.st_size)


def changed_since_queued(item: Item) -> bool:
    """True when a watched file's size or mtime changed after it was queued: it was still being written."""
    if item.source != "watch" or item.key is None:
        return False
    try:
        return file_key(item.path, os.stat(item.path)) != item.key
    except OSError:  # gone: its error stands
        return False


def read_stdin(stream: TextIO, out: queue.Queue, stop: threading.Event) -> None:
    """Every non-empty line is a path; explicit requests are never deduplicated."""
    for line in stream:
        if stop.is_set():
            break
        path = line.strip()
        if path:
            out.put(Item(path, "stdin"))
    out.put(DONE)


def read_camera(index: int, interval: float, out: queue.Queue, stop: threading.Event) -> None:
    """Frames from an OpenCV camera; only used when cv2 is importable (not on every device)."""
    import cv2  # noqa: PLC0415  (optional, guarded by camera_available())

    cap = cv2.VideoCapture(index)
    try:
        n = 0
        while not stop.is_set() and cap.isOpened():
            ok, frame = cap.read()
            if ok:
                out.put(Item(f"camera:{index}#{n}", "camera", frame=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
                n += 1
            stop.wait(interval)
    finally:
        cap.release()
        out.put(DONE)


def camera_available() -> bool:
    try:
        import cv2  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


# -- batching and classification ---------------------------------------------------------------------------
def next_batch(items: queue.Queue, size: int, stop: threading.Event, sources: list[int]) -> list[Item]:
    """Wait for one item, then take whatever else is already waiting, up to `size`.

    Why no waiting to fill a batch: on a device latency matters more than throughput; a batch forms by
    itself when images arrive faster than the model runs. `sources` counts sources still running.
    """
    batch: list[Item] = []
    while not batch and not stop.is_set() and (sources[0] > 0 or not items.empty()):
        try:
            got = items.get(timeout=0.1)
        except queue.Empty:
            continue
        _take(got, batch, sources)
    while batch and len(batch) < size:
        try:
            _take(items.get_nowait(), batch, sources)
        except queue.Empty:
            break
    return batch


def _take(got: Any, batch: list[Item], sources: list[int]) -> None:
    if got is DONE:
        sources[0] -= 1
    else:
        batch.append(got)


def classify_batch(model: Any, batch: list[Item], top_k: int, max_pixels: int | None = None) -> list[dict[str, Any]]:
    """One record per item, in order. Unreadable images get an error record; the rest run as one call."""
    start = time.perf_counter()
    images, errors = _decode(model, batch, max_pixels)
    good = [i for i in range(len(batch)) if i not in errors]
    tops: list = []
    infer_ms = 0.0
    if good:
        t = time.perf_counter()
        tops = model.classify(np.stack([images[i] for i in good]), top_k=min(top_k, len(model.labels)))
        infer_ms = (time.perf_counter() - t) * 1e3
    _test_delay()
    common = {"latency_ms": round((time.perf_counter() - start) * 1e3, 3), "infer_ms": round(infer_ms, 3),
              "batch_size": len(batch), "backend": model.backend, "device": model.device,
              "format": model.format, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    by_index = dict(zip(good, tops))
    return [_record(item, by_index.get(i), errors.get(i), common) for i, item in enumerate(batch)]


def _decode(model: Any, batch: list[Item], max_pixels: int | None
            ) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    """{index: pixels} and {index: error} for a batch, decoded across threads as training decodes them
    (`edgexfer.imaging`: the runtime's `load_image`); a frame is resized like a PIL image."""
    from PIL import Image  # noqa: PLC0415

    def one(item: Item) -> np.ndarray | str:
        try:
            source = Image.fromarray(item.frame) if item.frame is not None else item.path
            return load_image(source, model.input_spec, max_pixels)
        except EdgexferError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001  (a decoder error nobody foresaw): report it, keep running
            return f"{type(exc).__name__}: {exc}"

    results = imaging.parallel_map(one, batch)
    images = {i: r for i, r in enumerate(results) if not isinstance(r, str)}
    return images, {i: r for i, r in enumerate(results) if isinstance(r, str)}


def _record(item: Item, top: list | None, error: str | None, common: dict[str, Any]) -> dict[str, Any]:
    if error is not None:
        return {"path": item.path, "error": error, **common}
    return {"path": item.path, "label": top[0][0], "score": top[0][1],
            "top_k": [{"label": lab, "score": s} for lab, s in top], **common}


def _test_delay() -> None:
    """Hold a started batch for a while, so tests can signal the app while a batch is in flight."""
    delay = float(os.environ.get(_TEST_DELAY_ENV, "0") or 0)
    if delay > 0:
        time.sleep(delay)


# -- after a result is written ----------------------------------------------------------------------------
class Done:
    """Makes sure a watched file is not classified again: --state FILE remembers it, --move-to moves it."""

    def __init__(self, state: str | None, move_to: str | None) -> None:
        self.state = Path(state) if state else None
        self.move_to = Path(move_to) if move_to else None

    def remembered(self) -> set[tuple]:
        """The keys in --state. Why tolerant: a power cut mid-append leaves a torn last line, and refusing to
        start on it would be a crash loop under systemd; that line is skipped (its file is read again)."""
        if self.state is None or not self.state.is_file():
            return set()
        try:
            data = self.state.read_bytes()
        except OSError as exc:
            raise UserError(f"Expected a readable --state file. Received: {self.state} ({exc}). Fix its "
                            "permissions, or point --state at another file.") from exc
        lines, damaged = parse_state(data)
        if damaged:
            print(f"edgexfer-app: warning: skipped {len(damaged)} damaged line(s) of --state {self.state} "
                  f"(line {', '.join(map(str, damaged))}; a write cut short, e.g. by a power cut); kept the other "
                  f"{len(lines)}", file=sys.stderr, flush=True)
        if damaged or (data and not data.endswith(b"\n")):
            self._rewrite(lines)  # so the next append starts on a line of its own
        return {tuple(json.loads(line)) for line in lines}

    def _rewrite(self, lines: list[bytes]) -> None:
        tmp = self.state.with_name(self.state.name + ".tmp")
        try:
            tmp.write_bytes(b"".join(line + b"\n" for line in lines))
            os.replace(tmp, self.state)
        except OSError as exc:
            print(f"edgexfer-app: warning: could not repair --state {self.state}: {exc}", file=sys.stderr)

    def mark(self, item: Item, failed: bool) -> None:
        if item.source != "watch":
            return
        if self.state is not None:
            try:
                with self.state.open("a") as f:
                    f.write(json.dumps(list(item.key)) + "\n")
            except OSError as exc:  # a full or read-only card: keep classifying, say why
                print(f"edgexfer-app: warning: could not append to --state {self.state}: {exc}", file=sys.stderr)
        if self.move_to is not None:
            self._move(Path(item.path), self.move_to / "failed" if failed else self.move_to)

    @staticmethod
    def _move(path: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / path.name
        n = 1
        while target.exists():  # never overwrite an earlier image with the same name
            target = folder / f"{path.stem}.{n}{path.suffix}"
            n += 1
        try:
            shutil.move(str(path), str(target))
        except OSError as exc:
            print(f"edgexfer-app: could not move {path} to {folder}: {exc}", file=sys.stderr)


def parse_state(data: bytes) -> tuple[list[bytes], list[int]]:
    """The well-formed lines of a --state file ([path, mtime_ns, size]) and the numbers of the damaged ones."""
    good, damaged = [], []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            damaged.append(number)
            continue
        ok = (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str)
              and all(isinstance(v, int) and not isinstance(v, bool) for v in row[1:]))
        if ok:
            good.append(line.strip())
        else:
            damaged.append(number)
    return good, damaged


# -- main loop ---------------------------------------------------------------------------------------------
def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM (systemd, docker stop) and SIGINT only ask to stop: the batch in flight still completes."""
    def handler(signum: int, _frame: Any) -> None:
        print(f"edgexfer-app: {signal.Signals(signum).name}, finishing the current batch", file=sys.stderr)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def start_sources(args: argparse.Namespace, items: queue.Queue, stop: threading.Event, done: Done) -> int:
    """Starts one daemon thread per source and returns how many there are."""
    targets = []
    if args.watch:
        watcher = Watcher(Path(args.watch), args.poll_interval, done.remembered(), args.once, args.settle)
        targets.append((watcher.run, (items, stop)))
    if args.stdin:
        targets.append((read_stdin, (sys.stdin, items, stop)))
    if args.camera is not None:
        if camera_available():
            targets.append((read_camera, (args.camera, args.camera_interval, items, stop)))
        else:
            print("edgexfer-app: --camera needs OpenCV (pip install opencv-python-headless); skipped",
                  file=sys.stderr)
    for target, target_args in targets:
        threading.Thread(target=target, args=target_args, daemon=True).start()
    return len(targets)


def _quiet_pil_bomb_warning() -> None:
    """The runtime refuses images over its pixel limit from the header with an error line of its own; PIL's
    DecompressionBombWarning for the same image would only be noise on stderr (this process is ours)."""
    import warnings  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def start_up(args: argparse.Namespace, items: queue.Queue, stop: threading.Event, done: Done) -> tuple[Any, list[int]]:
    """Load the model, warm it up, start the sources: one progress step each on stderr (a bar on a terminal,
    "edgexfer-app [i/3] ..." lines in a log), then the "ready" line. Why a warm-up: the first call of an
    engine compiles or allocates, and the first real image should not pay for it."""
    from edgexfer.progress import Reporter, Tracker

    with Reporter("edgexfer-app") as reporter:
        steps = Tracker(reporter, total=3)
        started = time.perf_counter()
        model = load(args.bundle, format=args.artifact, backend=args.backend, device=args.device,
                     threads=args.threads)
        steps.step(f"loaded {model.format} ({model.precision}) on {model.backend}/{model.device} "
                   f"in {time.perf_counter() - started:.2f} s (rule: {model.details.get('rule') or 'n/a'})")
        started = time.perf_counter()
        try:
            model.predict(np.zeros((1, *model.input_spec.shape), np.uint8))
        except BaseException:
            model.close()
            raise
        steps.step(f"first inference done ({1e3 * (time.perf_counter() - started):.0f} ms)")
        sources = [start_sources(args, items, stop, done)]
        steps.step(f"{sources[0]} source(s) started: " + ", ".join(_source_names(args)))
    print(f"edgexfer-app: ready {model.format} on {model.backend}/{model.device}", file=sys.stderr, flush=True)
    return model, sources


def _source_names(args: argparse.Namespace) -> list[str]:
    return ([f"watching {args.watch}"] if args.watch else []) + (["stdin"] if args.stdin else []) + (
        [f"camera {args.camera}"] if args.camera is not None else [])


def run(args: argparse.Namespace, out: TextIO) -> int:
    _quiet_pil_bomb_warning()
    stop = threading.Event()
    install_signal_handlers(stop)
    done, items = Done(args.state, args.move_to), queue.Queue()
    model, sources = start_up(args, items, stop, done)
    with model:
        while True:
            batch = next_batch(items, args.batch_size, stop, sources)
            if not batch:
                return 0
            print(f"edgexfer-app: batch started n={len(batch)}", file=sys.stderr, flush=True)
            for item, record in zip(batch, classify_batch(model, batch, args.top_k, args.max_pixels)):
                if "error" in record and changed_since_queued(item):
                    print(f"edgexfer-app: {item.path} changed while it was read (still being written?); it is "
                          "read again once it settles", file=sys.stderr, flush=True)
                    continue
                out.write(json.dumps(record) + "\n")
                out.flush()
                done.mark(item, failed="error" in record)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.out:
            with open(args.out, "a", buffering=1, encoding="utf-8") as out:
                return run(args, out)
        return run(args, sys.stdout)
    except EdgexferError as exc:  # a bad bundle, backend or device: one line, the library's exit code
        print(f"edgexfer-app: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

"""Conversion isolation: every conversion batch runs in a fresh `python -m edgexfer.export.worker`.

Why: the TFLite converter leaks (~22 MB per convert on TF 2.21) and tf2onnx peaks at several GB
on big models; a subprocess per batch bounds both, and a crash (or an OOM kill) in a converter
becomes a ConversionError carrying the child's last log lines instead of killing the export.

Protocol: the parent writes a JSON list of jobs; the child runs them in order (each job calls a
"module:function" entry point with the job dict and returns {"files", "details", quant params}),
rewriting the results JSON after every job, with its own peak RSS. A job that raises is recorded
as {"ok": false, "error": ...} and the child goes on with the next one.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from edgexfer.errors import ConversionError, EdgexferError
from edgexfer.export.jobs import Job

LOG_TAIL_LINES = 15


# -- child side ---------------------------------------------------------------------------------------
def _call(entry: str, job: Job) -> dict[str, Any]:
    module, _, func = entry.partition(":")
    started = time.perf_counter()
    result = getattr(importlib.import_module(module), func)(job)
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def run_jobs(jobs: list[Job], results_path: Path) -> int:
    results: dict[str, Any] = {"jobs": {}, "pid": os.getpid()}
    started = time.perf_counter()
    failed = 0
    for job in jobs:
        Path(job.out_dir or ".").mkdir(parents=True, exist_ok=True)
        try:
            outcome = {"ok": True, **_call(job.converter, job)}
        except Exception as exc:  # reported to the parent, which decides what a failure means
            failed += 1
            kind = type(exc).__name__ if isinstance(exc, EdgexferError) else "ConversionError"
            traceback.print_exc()
            outcome = {"ok": False, "error_type": kind, "error": f"{type(exc).__name__}: {exc}",
                       "deliberate": isinstance(exc, EdgexferError)}  # a clear message: no log tail needed
        results["jobs"][job.name] = outcome
        results["seconds"] = round(time.perf_counter() - started, 3)
        results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        _write_json(results_path, results)
    return 1 if failed else 0


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this child when the export process dies (even by SIGKILL), so a
    killed export leaves no orphaned converter running; elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        print("usage: python -m edgexfer.export.worker JOBS.json RESULTS.json", file=sys.stderr)
        return 2
    die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return run_jobs([Job.from_wire(j) for j in json.loads(Path(args[0]).read_text())], Path(args[1]))


# -- parent side --------------------------------------------------------------------------------------
class Batch:
    """One subprocess running a list of jobs; `start()` then `wait()` -> {job name: outcome}."""

    def __init__(self, name: str, jobs: list[Job], work_dir: Path, timeout: float | None = None):
        self.name, self.jobs, self.timeout = name, jobs, timeout
        self.jobs_path = work_dir / f"{name}.jobs.json"
        self.results_path = work_dir / f"{name}.results.json"
        self.log_path = work_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.stats: dict[str, Any] = {}

    def start(self) -> "Batch":
        _write_json(self.jobs_path, [j.to_wire() for j in self.jobs])
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "wb")
        self._started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgexfer.export.worker", str(self.jobs_path), str(self.results_path)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait(self) -> dict[str, dict[str, Any]]:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ConversionError(
                f"Conversion batch '{self.name}' ran past {self.timeout:.0f} s.\n{self.log_tail()}") from None
        finally:
            self._log.close()
        results = json.loads(self.results_path.read_text()) if self.results_path.is_file() else {"jobs": {}}
        self.stats = {"seconds": round(time.perf_counter() - self._started, 2), "exit_code": code,
                      "peak_rss_mb": results.get("peak_rss_mb"), "jobs": [j.name for j in self.jobs]}
        missing = [j.name for j in self.jobs if j.name not in results["jobs"]]
        for name in missing:  # the child died (signal, OOM kill) before reporting these jobs
            results["jobs"][name] = {"ok": False, "error_type": "ConversionError",
                                     "error": f"the conversion process exited with code {code}\n{self.log_tail()}"}
        for outcome in results["jobs"].values():
            if not outcome["ok"] and not outcome.get("deliberate"):
                outcome["log_tail"] = self.log_tail()
        return results["jobs"]

    def kill(self) -> None:
        """Kill the child if it is still running (safe to call from any thread, any number of times)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def run_batches(batches: list[Batch], parallel: int = 1) -> dict[str, dict[str, Any]]:
    """Run batches one after the other (parallel=1) or each in its own chain (see run_chains)."""
    return run_chains([[b] for b in batches], parallel)


def run_chains(chains: list[list[Batch]], parallel: int = 1) -> dict[str, dict[str, Any]]:
    """Run chains of batches (each chain in order: a later batch may need an earlier one's files),
    up to `parallel` chains at once. If the parent is interrupted (KeyboardInterrupt included),
    every running child is killed and no further batch starts."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    outcomes: dict[str, dict[str, Any]] = {}
    cancelled = threading.Event()

    def run_chain(chain: list[Batch]) -> None:
        for batch in chain:
            if cancelled.is_set():
                return
            batch.start()
            outcomes.update(batch.wait())

    everything = [b for chain in chains for b in chain]
    try:
        if parallel <= 1 or len(chains) <= 1:
            for chain in chains:
                run_chain(chain)
            return outcomes
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            for future in [pool.submit(run_chain, chain) for chain in chains]:
                try:
                    future.result()
                except BaseException:
                    cancelled.set()
                    for batch in everything:
                        batch.kill()
                    raise
        return outcomes
    finally:
        cancelled.set()
        for batch in everything:
            batch.kill()


def raise_for(name: str, outcome: dict[str, Any]) -> None:
    """Turn a failed job outcome into the ConversionError (or user error) the child reported."""
    if outcome.get("ok"):
        return
    message = f"Export of '{name}' failed: {outcome['error']}"
    if outcome.get("log_tail"):
        message += f"\nLast lines of the conversion log:\n{outcome['log_tail']}"
    import edgexfer.errors as errors

    cls = getattr(errors, outcome.get("error_type", ""), ConversionError)
    if not (isinstance(cls, type) and issubclass(cls, EdgexferError)) or cls is errors.MissingDependencyError:
        cls = ConversionError
    raise cls(message)


if __name__ == "__main__":
    sys.exit(main())

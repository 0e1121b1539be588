"""The command line's output contract, checked the way a user meets it: in a subprocess, with stdout and
stderr as pipes (a log, CI) and as a pseudo-terminal (the `pty` module).

- No engine chatter (TensorFlow's absl/oneDNN start-up lines, LiteRT's XNNPACK notice) on either stream.
- `--json` writes only JSON lines to stdout; everything meant for a person goes to stderr.
- Long steps report progress: one plain line per step without a terminal, a live bar on one.
- `predict` says what it runs and why; `info` is a summary (`--json` the whole record); `bench` shows its
  options at the top level and explains skipped artifacts and noisy cells.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgexfer.cli import main
from edgexfer.progress import Reporter, Step, Tracker, keras_verbose

ENGINE_NOISE = ("XNNPACK", "absl", "oneDNN", "cpu_feature_guard", "TF_ENABLE_ONEDNN_OPTS", "InitializeLog")


def _env() -> dict[str, str]:
    """The user's environment: no TF_CPP_MIN_LOG_LEVEL (the noise must be gone without it), a wide terminal."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "COLUMNS": "120", "CUDA_VISIBLE_DEVICES": ""}


def edgexfer(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`edgexfer ARGS` with stdout and stderr as pipes (no terminal)."""
    return subprocess.run([sys.executable, "-m", "edgexfer", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def edgexfer_on_terminal(*args: str, timeout: float = 300) -> tuple[int, str, str]:
    """`edgexfer ARGS` with stderr on a pseudo-terminal and stdout a pipe: (exit code, stdout, terminal)."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "edgexfer", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave, env=_env())
    os.close(slave)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master, chunks), daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=timeout)
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def _drain(fd: int, chunks: list[bytes]) -> None:
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return
        if not chunk:
            return
        chunks.append(chunk)


def assert_no_engine_noise(*texts: str) -> None:
    for text in texts:
        found = [line for line in text.splitlines() if any(word in line for word in ENGINE_NOISE)]
        assert not found, found


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("one") / "one.png"
    Image.fromarray(np.full((40, 40, 3), (200, 30, 30), np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    for i in range(70):
        Image.fromarray(np.full((32, 32, 3), (3 * i, 100, 50), np.uint8)).save(folder / f"{i:03d}.png")
    return folder


# -- progress: the library's steps, rendered --------------------------------------------------------------
def test_plain_progress_is_one_line_per_step_without_escapes():
    stream = io.StringIO()
    with Reporter("export", stream=stream) as reporter:
        tracker = Tracker(reporter, total=3)
        tracker.step("onnx converted (1.0 s)")
        tracker.note("tflite-int8: trying the ladder")
        tracker.add(1)
        tracker.step("tflite converted (2.0 s)")
    lines = stream.getvalue().splitlines()
    assert lines == ["export [1/3] onnx converted (1.0 s)", "export [1/3] tflite-int8: trying the ladder",
                     "export [2/4] tflite converted (2.0 s)"]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_live_progress_is_a_bar_that_keeps_notable_lines():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with Reporter("bench", stream=stream) as reporter:
        tracker = Tracker(reporter, total=2)
        tracker.step("cell 1: p50 1.0 ms")
        tracker.step("cell 2: ERROR it broke", notable=True)
    text = stream.getvalue()
    assert "\r" in text and "bench" in text and "2/2" in text
    assert "cell 2: ERROR it broke" in text.split("\r")[-2]  # printed as a line of its own, above the bar


def test_tracker_without_callback_only_counts_and_is_thread_safe():
    tracker = Tracker(None, total=0)
    threads = [threading.Thread(target=lambda: [tracker.step("x") for _ in range(100)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tracker.done == tracker.total == 400
    seen: list[Step] = []
    Tracker(seen.append, total=1).step("done")
    assert seen == [Step(1, 1, "done", False)]


def test_keras_bars_only_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert keras_verbose(stream=Terminal()) == 1
    assert keras_verbose(stream=io.StringIO()) == 2
    assert keras_verbose(quiet=True, stream=Terminal()) == 2


# -- engine logging -----------------------------------------------------------------------------------------
def test_engine_stderr_drops_known_noise_and_passes_the_rest(capfd):
    from edgexfer.enginelog import engine_stderr

    with engine_stderr():
        with engine_stderr():  # nested: a no-op
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796119620.772879   25379 port.cc:153] oneDNN custom operations are on.\n"
                    b"E0000 00:00:1.0   1 real_error.cc:7] something real\n")
        os.write(2, b"python line\n")  # via fd 2 like C++ output (capfd gives sys.stderr a file of its own)
    err = capfd.readouterr().err
    assert err.splitlines() == ["E0000 00:00:1.0   1 real_error.cc:7] something real", "python line"]


# -- predict ------------------------------------------------------------------------------------------------
@pytest.mark.runtime
@pytest.mark.parametrize("artifact", ["tflite", "onnx", None])
def test_predict_json_is_pure_json_and_the_header_goes_to_stderr(shared_bundle, photo, artifact):
    args = ["--format", artifact] if artifact else []
    proc = edgexfer("predict", str(shared_bundle), str(photo), "--json", *args)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["path"] == str(photo)
    assert_no_engine_noise(proc.stdout, proc.stderr)
    header = proc.stderr.strip().splitlines()
    assert len(header) == 1 and header[0].startswith("Classifying 1 image with "), proc.stderr
    assert (f"with {artifact} (" if artifact else "Why: auto") in header[0] and "device cpu" in header[0]


@pytest.mark.runtime
def test_predict_on_a_terminal_draws_a_bar_on_stderr_and_keeps_stdout_plain(shared_bundle, many_photos):
    code, out, terminal = edgexfer_on_terminal("predict", str(shared_bundle), str(many_photos), "--format", "tflite")
    assert code == 0, terminal
    assert len(out.splitlines()) == 70 and "\r" not in out and "\x1b" not in out
    assert "Classifying" in terminal and "\r" in terminal and "3/3" in terminal
    assert_no_engine_noise(out, terminal)


@pytest.mark.runtime
def test_predict_without_a_terminal_writes_progress_lines(shared_bundle, many_photos):
    proc = edgexfer("predict", str(shared_bundle), str(many_photos))
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stderr.splitlines() if line.startswith("Classifying [")]
    assert steps == [f"Classifying [{i}/3] {min(32 * i, 70)} of 70 images" for i in (1, 2, 3)]
    assert "\r" not in proc.stderr


# -- info ---------------------------------------------------------------------------------------------------
HISTORY = {"history": {"stage1": {"loss": [0.9, 0.5, 0.4], "accuracy": [0.6, 0.8, 0.9],
                                  "val_loss": [0.8, 0.6, 0.65], "val_accuracy": [0.7, 0.85, 0.84]},
                       "stage2": {"loss": [0.3] * 40, "val_loss": [0.55] * 40}},
           "best": {"val_loss": 0.55, "stage": 2, "epoch": 1}, "val_accuracy": 0.85, "test_accuracy": 0.8,
           "val_n": 20, "test_n": 30, "per_class_split": "test", "per_class": {"red": 0.9, "green": 0.7, "blue": 0.8},
           "confusion": [[9, 1, 0], [2, 7, 1], [1, 1, 8]]}


def test_info_summarises_the_history_and_json_keeps_all(bundle_copy):
    path = bundle_copy / "manifest.json"
    raw = json.loads(path.read_text())
    raw["provenance"]["metrics"] = HISTORY
    path.write_text(json.dumps(raw))
    text = CliRunner().invoke(main, ["info", str(bundle_copy)], catch_exceptions=False).stdout
    assert "  training: stage1 3 epochs (final loss 0.4, accuracy 90.00%, val_loss 0.65, val_accuracy 84.00%); " \
           "stage2 40 epochs (final loss 0.3, val_loss 0.55)" in text
    assert "  best: val_loss 0.55 at stage 2, epoch 1" in text
    assert "  accuracy: val 85.00% on 20 images, test 80.00% on 30 images" in text
    assert "[0.3, 0.3" not in text and max(len(line) for line in text.splitlines()) < 200
    full = json.loads(CliRunner().invoke(main, ["info", str(bundle_copy), "--json"]).stdout)
    assert full["provenance"]["metrics"] == HISTORY


# -- bench --------------------------------------------------------------------------------------------------
def test_bench_help_shows_the_sweep_options_and_compare():
    text = CliRunner().invoke(main, ["bench", "--help"]).output
    assert "bench [OPTIONS] BUNDLE" in text
    for option in ("--batch-sizes", "--runs", "--seconds", "--data", "--tune", "bench compare", "./compare"):
        assert option in text, option
    assert "bench compare [OPTIONS] [RESULTS]" in CliRunner().invoke(main, ["bench", "compare", "--help"]).output


def test_bench_compare_without_results_names_both_readings(tmp_path, shared_bundle, monkeypatch):
    shutil.copytree(shared_bundle, tmp_path / "compare")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench", "compare"])
    assert result.exit_code == 2 and "edgexfer bench ./compare" in result.output


@pytest.mark.runtime
def test_bench_a_folder_named_compare_explains_skips_and_noise(tmp_path, shared_bundle):
    bundle = Path(shutil.copytree(shared_bundle, tmp_path / "compare"))
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["artifacts"]["tflite-fp16"]["status"] = "failed"
    (bundle / "manifest.json").write_text(json.dumps(raw))
    proc = subprocess.run([sys.executable, "-m", "edgexfer", "bench", "./compare", "--formats", "onnx,tflite-fp16",
                           "--backends", "onnxruntime", "--batch-sizes", "1", "--runs", "5", "--seconds", "0.05",
                           "--warmup", "1", "--out", "res"], capture_output=True, text=True, cwd=tmp_path,
                          env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("bench [1/1] onnx|onnxruntime|cpu|default|b1|t")
    assert "skipped tflite-fp16: parity failed" in proc.stdout
    assert "skipped tflite-fp16" in (tmp_path / "res" / "results.md").read_text()
    assert json.loads((tmp_path / "res" / "results.json").read_text())["skipped"][0]["artifact"] == "tflite-fp16"
    assert_no_engine_noise(proc.stdout, proc.stderr)


def test_noisy_cells_are_explained_once():
    from edgexfer.bench.report import explain

    cell = {"status": "ok", "latency": {"noisy": True}}
    lines = explain({"cells": [cell, {**cell, "latency": {"noisy": False}}, {"status": "error"}]})
    assert len(lines) == 1 and lines[0].startswith("noisy (1 of 2 cells): ")
    assert "p99/p50 > 3" in lines[0] and "--runs" in lines[0] and "--seconds" in lines[0]
    assert explain({"cells": [{**cell, "latency": {"noisy": False}}]}) == []


# -- export -------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_export_reports_each_artifact_on_a_line(shared_run, tmp_path):
    proc = edgexfer("export", str(shared_run), "--out", str(tmp_path / "b"), "--formats", "onnx,tflite",
                    "--parity-samples", "8", timeout=600)
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stderr.splitlines() if line.startswith("export [")]
    for words in ("held-out data ready", "onnx converted", "tflite converted", "onnx parity PASS",
                  "tflite parity PASS", "bundle written"):
        assert sum(words in line for line in steps) == 1, (words, proc.stderr)
    assert steps[-1].startswith("export [6/6] ") and "\r" not in proc.stderr
    assert "artifact" in proc.stdout.splitlines()[0]  # the parity table stays on stdout
    assert_no_engine_noise(proc.stdout, proc.stderr)


def test_a_warning_is_one_line_and_the_command_still_runs(shared_bundle, photo):
    """A backend module named in EDGEXFER_BACKENDS that does not import: one "Warning:" line, no file:line
    and source line from Python's default warning format, and the built-in backends still predict."""
    env = {**_env(), "EDGEXFER_BACKENDS": "no_such_backend_module"}
    proc = subprocess.run([sys.executable, "-m", "edgexfer", "predict", str(shared_bundle), str(photo), "--format",
                           "onnx"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "no_such_backend_module" in line]
    assert len(warned) == 1 and warned[0].startswith("Warning: EDGEXFER_BACKENDS"), proc.stderr
    assert "RuntimeWarning" not in proc.stderr and ".py:" not in proc.stderr, proc.stderr
    assert proc.stdout.count("\t") >= 2  # the photo's line: path, label, score

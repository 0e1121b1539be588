"""The device app end to end, as a subprocess with real files, against the session's test bundle."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import APP, app_module, json_lines, run_app, start_app

pytestmark = pytest.mark.runtime


def _wait_for(predicate, timeout: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _check_result(row: dict, labels: list[str], top_k: int) -> None:
    assert row["label"] in labels and 0.0 <= row["score"] <= 1.0
    assert len(row["top_k"]) == top_k and row["top_k"][0] == {"label": row["label"], "score": row["score"]}
    assert row["backend"] and row["device"] and row["latency_ms"] >= row["infer_ms"] >= 0


def test_stdin_gives_one_json_line_per_path(shared_bundle, image_files, labels):
    paths = "\n".join(map(str, image_files)) + "\n"
    proc = run_app(str(shared_bundle), "--stdin", "--top-k", "2", "--batch-size", "4", stdin=paths)
    assert proc.returncode == 0, proc.stderr
    rows = json_lines(proc.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in image_files]
    for row in rows:
        _check_result(row, labels, top_k=2)
        assert 1 <= row["batch_size"] <= 4


def test_unreadable_files_give_error_lines_not_a_crash(shared_bundle, image_files, labels, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    paths = [tmp_path / "notes.txt", image_files[0], tmp_path / "missing.png", tmp_path / "broken.jpg"]
    proc = run_app(str(shared_bundle), "--stdin", stdin="\n".join(map(str, paths)))
    assert proc.returncode == 0, proc.stderr
    rows = json_lines(proc.stdout)
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    assert all("error" in rows[i] and "label" not in rows[i] for i in (0, 2, 3))
    assert "cannot be decoded" in rows[0]["error"] and "not found" in rows[2]["error"]
    _check_result(rows[1], labels, top_k=3)


def test_watch_batches_and_sigterm_keeps_every_started_result(shared_bundle, image_files, labels, tmp_path):
    watch, done, out, err = tmp_path / "in", tmp_path / "done", tmp_path / "out.jsonl", tmp_path / "err.log"
    watch.mkdir()
    proc = start_app(str(shared_bundle), "--watch", str(watch), "--move-to", str(done), "--out", str(out),
                     "--batch-size", "4", "--poll-interval", "0.05", stderr_file=err,
                     EDGEXFER_APP_BATCH_DELAY="1.0")  # hold each batch, so SIGTERM lands inside one
    try:
        _wait_for(lambda: "ready" in err.read_text(), what="the app to load the model")
        staging = tmp_path / "staging"
        shutil.copytree(image_files[0].parent, staging)
        for path in sorted(staging.iterdir()):  # a rename is atomic: the files appear all at once
            path.rename(watch / path.name)
        _wait_for(lambda: "batch started" in err.read_text(), what="a batch to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
    finally:
        proc.kill()
    started = [int(line.rsplit("n=", 1)[1]) for line in err.read_text().splitlines() if "batch started" in line]
    rows = json_lines(out.read_text())
    assert len(rows) == sum(started) >= 1, err.read_text()  # the batch in flight was finished and written
    assert max(r["batch_size"] for r in rows) > 1  # the waiting files were classified together
    for row in rows:
        _check_result(row, labels, top_k=3)
    moved = {p.name for p in done.iterdir()}
    assert moved == {Path(r["path"]).name for r in rows}  # classified files left the folder...
    assert moved.isdisjoint(p.name for p in watch.iterdir())  # ...and the rest wait for the next run
    assert len(moved) + len(list(watch.iterdir())) == len(image_files)


def test_watch_classifies_each_file_once(shared_bundle, image_files, tmp_path):
    state = tmp_path / "state.jsonl"
    args = (str(shared_bundle), "--watch", str(image_files[0].parent), "--once", "--state", str(state))
    first = run_app(*args)
    assert first.returncode == 0, first.stderr
    assert sorted(r["path"] for r in json_lines(first.stdout)) == sorted(map(str, image_files))
    image_files[0].write_bytes(image_files[1].read_bytes())  # a changed file counts as a new image
    second = run_app(*args)
    assert second.returncode == 0, second.stderr
    assert [r["path"] for r in json_lines(second.stdout)] == [str(image_files[0])]


def test_bad_bundle_is_one_line_and_exit_2(tmp_path):
    proc = run_app(str(tmp_path / "no-bundle"), "--stdin")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("edgexfer-app: error:"), proc.stderr


def test_app_never_imports_tensorflow(shared_bundle, image_files):
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('edgexfer_app', {str(APP)!r})\n"
        "app = sys.modules['edgexfer_app'] = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        f"code = app.main([{str(shared_bundle)!r}, '--stdin'])\n"
        "print(json.dumps({'code': code, 'modules': sorted({m.split('.')[0] for m in sys.modules})}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], input=str(image_files[0]), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert json.loads(lines[0])["label"]  # it did classify
    report = json.loads(lines[-1])
    assert report["code"] == 0
    assert not {"tensorflow", "keras", "tf2onnx", "tensorboard"} & set(report["modules"])


# -- hostile and careless input (issue 15) -------------------------------------------------------------------
def _state_row(path: Path) -> bytes:
    st = path.stat()
    return json.dumps([str(path), st.st_mtime_ns, st.st_size]).encode() + b"\n"


def test_torn_last_line_in_state_is_skipped_not_a_crash(shared_bundle, image_files, tmp_path):
    """A power cut mid-append leaves half a line: the app warns, keeps the rest, and starts (no crash loop)."""
    state = tmp_path / "state.jsonl"
    state.write_bytes(b"".join(_state_row(p) for p in image_files[:3]) + b'["/data/in/caf\xc3')  # torn, mid-UTF-8
    proc = run_app(str(shared_bundle), "--watch", str(image_files[0].parent), "--once", "--state", str(state))
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipped 1 damaged line(s)" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(r["path"] for r in json_lines(proc.stdout)) == sorted(map(str, image_files[3:]))
    rows = [json.loads(line) for line in state.read_bytes().decode().splitlines()]  # repaired, then appended
    assert sorted(r[0] for r in rows) == sorted(map(str, image_files))
    again = run_app(str(shared_bundle), "--watch", str(image_files[0].parent), "--once", "--state", str(state))
    assert again.returncode == 0 and json_lines(again.stdout) == [] and "warning" not in again.stderr


def _wait_rows(out: Path, n: int, timeout: float = 30.0) -> list[dict]:
    _wait_for(lambda: out.is_file() and len(json_lines(out.read_text())) >= n, timeout, f"{n} result line(s)")
    return json_lines(out.read_text())


def test_a_copy_that_stalls_is_read_only_once_complete(shared_bundle, image_files, labels, tmp_path):
    watch, done, out, err = tmp_path / "in", tmp_path / "done", tmp_path / "out.jsonl", tmp_path / "err.log"
    watch.mkdir()
    proc = start_app(str(shared_bundle), "--watch", str(watch), "--move-to", str(done), "--out", str(out),
                     "--poll-interval", "0.05", "--settle", "1.5", stderr_file=err)
    try:
        _wait_for(lambda: "ready" in err.read_text(), what="the app to load the model")
        data = image_files[5].read_bytes()
        with open(watch / "slow.png", "wb") as f:  # written in place, pausing for many polls halfway
            f.write(data[: len(data) // 2])
            f.flush()
            time.sleep(0.8)
            f.write(data[len(data) // 2:])
        rows = _wait_rows(out, 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
    finally:
        proc.kill()
    assert len(rows) == 1 and "error" not in rows[0], rows
    _check_result(rows[0], labels, top_k=3)
    assert (done / "slow.png").read_bytes() == data and not (done / "failed").exists()


def test_a_file_renamed_into_the_folder_is_read_at_once(shared_bundle, image_files, tmp_path):
    watch, out, err = tmp_path / "in", tmp_path / "out.jsonl", tmp_path / "err.log"
    watch.mkdir()
    proc = start_app(str(shared_bundle), "--watch", str(watch), "--out", str(out), "--poll-interval", "0.05",
                     "--settle", "60", stderr_file=err)
    try:
        _wait_for(lambda: "ready" in err.read_text(), what="the app to load the model")
        staging = tmp_path / "staging.png"
        shutil.copy(image_files[0], staging)
        time.sleep(0.05)  # the rename's ctime is then clearly later than the content's mtime
        staging.rename(watch / "renamed.png")
        rows = _wait_rows(out, 1, timeout=30)  # far sooner than --settle 60
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, err.read_text()
    finally:
        proc.kill()
    assert rows[0]["path"] == str(watch / "renamed.png") and "label" in rows[0]


def test_watcher_settle_rules(tmp_path):
    app = app_module()
    now = [100.0]
    watcher = app.Watcher(tmp_path, 0.1, set(), once=False, settle=2.0, clock=lambda: now[0])
    (tmp_path / "a.png").write_bytes(b"partial")
    assert watcher.scan(stable_only=True) == []  # first sight
    now[0] += 1.0
    assert watcher.scan(stable_only=True) == []  # unchanged, but not for 2 s yet
    (tmp_path / "a.png").write_bytes(b"partial, more")
    now[0] += 1.5
    assert watcher.scan(stable_only=True) == []  # it changed: the clock starts again
    now[0] += 2.0
    assert [i.path for i in watcher.scan(stable_only=True)] == [str(tmp_path / "a.png")]
    assert watcher.scan(stable_only=True) == []  # queued once


def test_a_file_that_changed_while_it_was_read_is_not_failed(tmp_path):
    app = app_module()
    path = tmp_path / "a.png"
    path.write_bytes(b"half")
    st = path.stat()
    item = app.Item(str(path), "watch", key=app.file_key(str(path), st))
    assert not app.changed_since_queued(item)
    path.write_bytes(b"half and the rest")
    assert app.changed_since_queued(item)
    path.unlink()
    assert not app.changed_since_queued(item)  # gone: its error stands
    assert not app.changed_since_queued(app.Item(str(path), "stdin"))


def test_state_parser_keeps_good_lines(tmp_path):
    app = app_module()
    good, damaged = app.parse_state(b'["/a.png", 1, 2]\n\n{"not": "a row"}\n["/b.png", 3, 4]\n["/c.p')
    assert good == [b'["/a.png", 1, 2]', b'["/b.png", 3, 4]'] and damaged == [3, 5]


def test_help_documents_the_watch_rules():
    proc = subprocess.run([sys.executable, str(APP), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for words in ("--settle", "renamed into the folder", "damaged line", "--max-pixels", "before decoding"):
        assert words in text, words


def test_oversized_and_bomb_images_are_error_lines(shared_bundle, image_files, tmp_path):
    from PIL import Image

    Image.new("1", (20000, 20000)).save(tmp_path / "bomb.png")
    Image.new("1", (10000, 10000)).save(tmp_path / "big.png")
    paths = [tmp_path / "bomb.png", image_files[0], tmp_path / "big.png"]
    proc = run_app(str(shared_bundle), "--stdin", stdin="\n".join(map(str, paths)))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
    rows = json_lines(proc.stdout)
    assert "pixels" in rows[0]["error"] and "label" in rows[1] and "100,000,000 pixels" in rows[2]["error"]
    small = run_app(str(shared_bundle), "--stdin", "--max-pixels", "100", stdin=str(image_files[0]))
    assert "at most 100 pixels" in json_lines(small.stdout)[0]["error"]

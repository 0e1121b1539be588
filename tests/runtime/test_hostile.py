"""Hostile and careless input (issue 15): manifests that point outside their bundle, zip bombs and damaged
archives, malformed manifests, one bad image among good ones, close() under load, concurrent first loads.

Every case ends in one clear edgexfer error (or a per-image error entry), never a raw library exception;
the CLI cases run `python -m edgexfer` in a subprocess and check that no traceback is printed.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from edgexfer.errors import ImageError, IntegrityError, ModelClosedError, UnsafeBundleError, UserError
from edgexfer.manifest import sha256_file
from edgexfer.runtime import ImageFailure, backends, load, source
from edgexfer.runtime.backends.base import Runner, TensorInfo
from tests.factory import edit_manifest, zip_bundle

pytestmark = pytest.mark.runtime
X = np.zeros((2, 32, 32, 3), np.uint8)


# -- manifests that point outside their bundle --------------------------------------------------------------
@pytest.fixture
def spy_opens(monkeypatch) -> list[str]:
    """Every file the runtime hashes or hands to an engine, recorded."""
    import edgexfer.manifest as manifest_module

    seen: list[str] = []
    real_sha, real_activate = manifest_module.sha256_file, Runner.activate
    monkeypatch.setattr(manifest_module, "sha256_file", lambda p, *a: seen.append(str(p)) or real_sha(p, *a))
    monkeypatch.setattr(Runner, "activate", lambda self: seen.append(str(self.path)) or real_activate(self))
    return seen


def _point_at(bundle: Path, rel: str, digest: str) -> None:
    edit_manifest(bundle, lambda raw: raw["artifacts"]["onnx"].update(files=[rel], sha256={rel: digest}))


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("how", ["dotdot", "absolute"])
def test_manifest_path_outside_the_bundle_is_never_opened(bundle_copy, tmp_path, spy_opens, verify, how):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(bundle_copy / "onnx" / "model.onnx", outside / "model.onnx")  # a matching sha256
    rel = "../outside/model.onnx" if how == "dotdot" else str(outside / "model.onnx")
    _point_at(bundle_copy, rel, sha256_file(outside / "model.onnx"))
    with pytest.raises(UnsafeBundleError, match=r"artifacts\.onnx\.files\[0\].*inside the bundle"):
        load(bundle_copy, format="onnx", verify=verify)
    assert not [p for p in spy_opens if "outside" in p]


@pytest.mark.parametrize("verify", [True, False])
def test_symlink_out_of_the_bundle_is_refused(bundle_copy, tmp_path, spy_opens, verify):
    outside = tmp_path / "outside"
    outside.mkdir()
    main = bundle_copy / "onnx" / "model.onnx"
    shutil.move(main, outside / "model.onnx")
    main.symlink_to(outside / "model.onnx")  # same bytes: the checksum alone would pass
    for target in (bundle_copy, main):  # the bundle, and the file itself (its manifest is found beside it)
        with pytest.raises(UnsafeBundleError, match="resolves outside"):
            load(target, format="onnx" if target == bundle_copy else None, verify=verify)
    assert not [p for p in spy_opens if "outside" in p or p.endswith("model.onnx")]


def test_openvino_weights_linked_out_are_refused_even_when_unlisted(bundle_copy, tmp_path, manifest):
    if "openvino" not in manifest.artifacts:
        pytest.skip("the test bundle has no openvino artifact")
    xml, weights = "openvino/model.xml", bundle_copy / "openvino" / "model.bin"
    shutil.move(weights, tmp_path / "model.bin")
    weights.symlink_to(tmp_path / "model.bin")
    digest = manifest.artifacts["openvino"].sha256[xml]
    edit_manifest(bundle_copy, lambda raw: raw["artifacts"]["openvino"].update(files=[xml], sha256={xml: digest}))
    with pytest.raises(UnsafeBundleError, match="model.bin"):
        load(bundle_copy, format="openvino", verify=False)


@pytest.mark.parametrize("rel", ["/etc/passwd", "../../../../../../etc/passwd"])
def test_zip_whose_manifest_names_etc_passwd(bundle_copy, tmp_path, rel):
    _point_at(bundle_copy, rel, "0" * 64)
    archive = zip_bundle(bundle_copy, tmp_path / "evil.zip")  # every entry passes the zip-slip check
    with pytest.raises(UnsafeBundleError) as info:
        load(archive, format="onnx")
    if Path("/etc/passwd").is_file():
        assert sha256_file("/etc/passwd")[:12] not in str(info.value)


# -- archive limits and damaged archives ---------------------------------------------------------------------
def _bomb(bundle: Path, archive: Path, mib: int = 32) -> Path:
    """A real bundle plus one entry of `mib` MiB of zeros (about 1000:1 compressed)."""
    zip_bundle(bundle, archive)
    with zipfile.ZipFile(archive, "a", zipfile.ZIP_DEFLATED) as zf, zf.open("bundle/zeros.bin", "w") as out:
        for _ in range(mib):
            out.write(bytes(1 << 20))
    return archive


def _cache_entries(cache: Path) -> list[str]:
    folder = cache / "bundles"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_zip_bomb_is_refused_before_anything_is_written(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "cache"))
    archive = _bomb(bundle_dir, tmp_path / "bomb.zip")
    with pytest.raises(UnsafeBundleError, match=r"compression ratio.*'bundle/zeros.bin'.*zip bomb"):
        load(archive)
    assert _cache_entries(tmp_path / "cache") == []


@pytest.mark.parametrize("variable, value, words", [("EDGEXFER_ZIP_MAX_BYTES", "1000", "expands to at most 1,000"),
                                                    ("EDGEXFER_ZIP_MAX_ENTRIES", "2", "at most 2 entries"),
                                                    ("EDGEXFER_ZIP_MAX_RATIO", "1.01", "compression ratio")])
def test_archive_limits_are_configurable(bundle_dir, tmp_path, monkeypatch, variable, value, words):
    archive = zip_bundle(bundle_dir, tmp_path / "b.zip", compression=zipfile.ZIP_DEFLATED)
    with load(archive, format="onnx") as m:  # within the defaults
        assert m.predict(X).shape[0] == 2
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "fresh"))
    monkeypatch.setenv(variable, value)
    if variable == "EDGEXFER_ZIP_MAX_RATIO":  # only entries over 1 MiB are judged: add a compressible one
        archive = zip_bundle(bundle_dir, tmp_path / "c.zip", extra={"bundle/pad.bin": b"ab" * (1 << 20)},
                             compression=zipfile.ZIP_DEFLATED)
    with pytest.raises(UnsafeBundleError, match=words):
        load(archive, format="onnx")
    monkeypatch.setenv(variable, "lots")
    with pytest.raises(UserError, match=f"Expected {variable} to be a positive number"):
        load(archive, format="onnx")


def test_bytes_really_written_are_counted(bundle_dir, tmp_path, monkeypatch):
    """An archive directory can understate sizes: extraction counts what it writes against the same limit."""
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(source, "check_members", lambda *args: None)  # as if the directory had lied
    monkeypatch.setenv("EDGEXFER_ZIP_MAX_BYTES", "5000")
    with pytest.raises(UnsafeBundleError, match="expands to at most 5,000"):
        load(zip_bundle(bundle_dir, tmp_path / "b.zip"))
    assert _cache_entries(tmp_path / "cache") == []  # the partial extraction was removed


def _damage(archive: Path, member: str) -> Path:
    """Overwrite the start of `member`'s deflate stream with 0xFF (an invalid block type)."""
    with zipfile.ZipFile(archive) as zf:
        offset = zf.getinfo(member).header_offset
    data = bytearray(archive.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[offset + 26:offset + 30])
    start = offset + 30 + name_len + extra_len
    data[start:start + 16] = b"\xff" * 16
    archive.write_bytes(bytes(data))
    return archive


def test_damaged_deflate_stream_is_an_integrity_error(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "cache"))
    archive = _damage(zip_bundle(bundle_dir, tmp_path / "d.zip", compression=zipfile.ZIP_DEFLATED),
                      "bundle/onnx/model.onnx")
    with pytest.raises(IntegrityError, match="'bundle/onnx/model.onnx' cannot be decompressed.*damaged"):
        load(archive)
    assert _cache_entries(tmp_path / "cache") == []
    (tmp_path / "cut.zip").write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(IntegrityError, match="not a valid zip"):
        load(tmp_path / "cut.zip")


def test_encrypted_and_repeated_entries_are_refused(bundle_dir, tmp_path):
    info = zipfile.ZipInfo("bundle/secret.bin")
    info.flag_bits |= 0x1
    with pytest.raises(IntegrityError, match="encrypted"):
        source.check_member(info)
    twice = [zipfile.ZipInfo("bundle/a"), zipfile.ZipInfo("bundle/a")]
    with pytest.raises(UnsafeBundleError, match="twice"):
        source.check_members(twice, tmp_path / "x.zip", source.ArchiveLimits())


# -- concurrent first load of one archive ---------------------------------------------------------------------
def test_threads_extracting_one_archive_at_once_share_one_complete_folder(bundle_dir, tmp_path, monkeypatch):
    archive = zip_bundle(bundle_dir, tmp_path / "b.zip")
    want = sorted(p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file())
    for round_ in range(3):
        cache = tmp_path / f"cache{round_}"
        monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(cache))
        start = threading.Barrier(8)

        def first_load(_: int) -> tuple[Path, list[str]]:
            start.wait()
            root = source.extract_bundle_zip(archive)
            return root, sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(first_load, range(8)))
        assert len({root for root, _ in results}) == 1
        assert all(files == want for _, files in results)  # each saw the whole bundle when it returned
        assert [n for n in _cache_entries(cache) if n.startswith(".")] == []  # every loser removed its copy


def test_a_late_extraction_never_replaces_the_folder_in_use(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "cache"))
    archive = zip_bundle(bundle_dir, tmp_path / "b.zip")
    root = source.extract_bundle_zip(archive)
    target = root.parent
    before = (target / ".edgexfer-complete").stat().st_ino
    with open(root / "manifest.json", "rb"), zipfile.ZipFile(archive) as zf:  # a process is loading from it
        source._extract(zf, zf.infolist(), target, archive)  # what a process that finishes later does
    assert (target / ".edgexfer-complete").stat().st_ino == before
    assert [n for n in _cache_entries(tmp_path / "cache") if n.startswith(".")] == []


def test_an_unmarked_folder_left_by_an_older_version_is_replaced(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEXFER_CACHE_DIR", str(tmp_path / "cache"))
    archive = zip_bundle(bundle_dir, tmp_path / "b.zip")
    stale = source._target_dir(archive)
    (stale / "bundle").mkdir(parents=True)
    (stale / "bundle" / "junk").write_text("half an extraction")
    with load(archive, format="onnx") as m:
        assert m.predict(X).shape[0] == 2
    assert not (stale / "bundle" / "junk").exists() and (stale / ".edgexfer-complete").is_file()


def test_processes_loading_one_archive_at_once(bundle_dir, tmp_path):
    archive, go, cache = zip_bundle(bundle_dir, tmp_path / "b.zip"), tmp_path / "go", tmp_path / "cache"
    code = (
        "import os, sys, time, numpy as np\n"
        "from edgexfer.runtime import load\n"
        "open(sys.argv[1], 'w').close()\n"
        f"while not os.path.exists({str(go)!r}): time.sleep(0.002)\n"
        f"with load({str(archive)!r}, format='onnx') as m:\n"
        "    print(m.predict(np.zeros((1, 32, 32, 3), np.uint8)).shape)\n")
    env = {**os.environ, "EDGEXFER_CACHE_DIR": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / f"ready{i}")], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(6)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all start loading together
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0 and "Traceback" not in err, err[-2000:]
        assert out.strip() == "(1, 3)"


# -- one bad image among good ones ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def onnx_model(bundle_dir):
    with load(bundle_dir, format="onnx") as m:
        yield m


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, images) -> dict[str, Path]:
    """good1, good2 (PNGs), bad (not an image), missing, bomb (20000x20000 PNG of 48 KB: over PIL's own cap),
    big (10000x10000 PNG of 12 KB: under PIL's cap, over ours)."""
    folder = tmp_path_factory.mktemp("hostile-images")
    files = {name: folder / f"{name}.png" for name in ("good1", "good2", "bad", "missing", "bomb", "big")}
    Image.fromarray(images[0]).save(files["good1"])
    Image.fromarray(images[1]).resize((40, 40)).save(files["good2"])
    files["bad"].write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    Image.new("1", (20000, 20000)).save(files["bomb"])
    Image.new("1", (10000, 10000)).save(files["big"])
    return files


def test_classify_gives_per_image_entries(onnx_model, image_files):
    f = image_files
    entries = onnx_model.classify([f["good1"], f["bad"], str(f["good2"])], top_k=2)
    assert entries[0] == onnx_model.classify([f["good1"], f["good2"]], top_k=2)[0]
    assert entries[2] == onnx_model.classify(f["good2"], top_k=2)  # one image in, one entry out
    failure = entries[1]
    assert isinstance(failure, ImageFailure) and not failure and len(failure) == 0
    assert (failure.index, failure.source) == (1, str(f["bad"])) and "cannot be decoded" in failure.error
    with pytest.raises(ImageError, match=r"Image 1 \(.*bad.png\) has no result: .*cannot be decoded"):
        failure[0]
    with pytest.raises(ImageError, match="has no result"):
        list(failure)


@pytest.mark.parametrize("name, words", [("missing", "not found"), ("bomb", "larger than PIL accepts"),
                                         ("big", "10000x10000 = 100,000,000 pixels"), ("bad", "cannot be decoded")])
def test_each_kind_of_bad_file_is_an_entry_and_predict_names_it(onnx_model, image_files, name, words):
    entries = onnx_model.classify([image_files["good1"], image_files[name]])
    assert entries[0] and not entries[1] and words in entries[1].error, entries[1]
    with pytest.raises(ImageError, match=name):  # predict has no row for an error: it raises, naming the file
        onnx_model.predict([image_files["good1"], image_files[name]])


def test_an_oversized_image_is_refused_from_its_header(onnx_model, image_files, monkeypatch):
    decoded = []
    real = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or real(self))
    started = time.perf_counter()
    assert not onnx_model.classify(image_files["big"])
    assert decoded == [] and time.perf_counter() - started < 2.0


def test_pixel_limit_is_configurable(onnx_model, image_files, images, monkeypatch):
    good = image_files["good2"]  # 40 x 40 = 1600 pixels
    try:
        onnx_model.max_pixels = 1000
        assert "at most 1,000 pixels" in onnx_model.classify(good).error
        assert "at most 1,000 pixels" in onnx_model.classify(Image.fromarray(images[0]).resize((40, 40))).error
    finally:
        onnx_model.max_pixels = None
    assert onnx_model.classify(good)
    monkeypatch.setenv("EDGEXFER_MAX_IMAGE_PIXELS", "1000")
    assert not onnx_model.classify(good)
    monkeypatch.setenv("EDGEXFER_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(UserError, match="EDGEXFER_MAX_IMAGE_PIXELS"):
        onnx_model.classify(good)


def test_lists_of_arrays(onnx_model, images):
    small = np.zeros((28, 28, 3), np.uint8)
    with pytest.raises(ImageError) as info:
        onnx_model.predict([images[0], small])
    assert all(w in str(info.value) for w in ("item 1", "(28, 28, 3)", "(32, 32, 3)")), info.value
    entries = onnx_model.classify([images[0], small, images[1].astype(np.float32), images[2].astype(np.int64)])
    assert [bool(e) for e in entries] == [True, False, True, False]
    assert "dtype int64" in entries[3].error and entries[3].source == "ndarray"
    assert entries[2] == onnx_model.classify(images[1:2])[0]


def test_errors_about_the_call_itself_still_raise(onnx_model, image_files):
    with pytest.raises(UserError, match="top_k"):
        onnx_model.classify([image_files["bad"]], top_k=0)
    with pytest.raises(UserError, match="28x28"):
        onnx_model.classify(np.zeros((2, 28, 28, 3), np.uint8))  # one array batch: the caller's bug
    with pytest.raises(UserError, match="empty list"):
        onnx_model.classify([])


def test_all_bad_gives_all_entries_and_no_engine_call(onnx_model, image_files, monkeypatch):
    monkeypatch.setattr(onnx_model._runner, "run", lambda *a: pytest.fail("the engine was called"))
    entries = onnx_model.classify([image_files["bad"], image_files["missing"]])
    assert [type(e) for e in entries] == [ImageFailure, ImageFailure]


# -- close() while other threads predict ----------------------------------------------------------------------
class _SlowRunner(Runner):
    """An engine-free runner whose call blocks until released: makes the close/predict race deterministic."""

    name, families, engine_modules = "slow-test", ("onnx",), ("json",)

    def _activate_impl(self) -> None:
        self.device, self.release, self.entered = "cpu", threading.Event(), threading.Event()
        self.closed_while_busy: int | None = None
        self.input = TensorInfo("x", (None, 32, 32, 3), np.dtype(np.float32))
        self.output = TensorInfo("y", (None, 3), np.dtype(np.float32))
        self.busy = 0

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        self.busy += 1
        self.entered.set()
        self.release.wait(10)
        self.busy -= 1
        return np.zeros((len(batch), 3), np.float32)

    def _close_impl(self) -> None:
        self.closed_while_busy = self.busy


def test_close_waits_for_the_call_in_flight_and_refuses_later_ones(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    runner = _SlowRunner(tmp_path / "m.onnx").activate()
    with ThreadPoolExecutor(max_workers=2) as pool:
        call = pool.submit(runner.infer, np.zeros((1, 32, 32, 3), np.float32))
        assert runner.entered.wait(10)
        closing = pool.submit(runner.close)
        time.sleep(0.2)
        assert not closing.done()  # waits for the call in flight...
        with pytest.raises(ModelClosedError, match="closed"):  # ...while new calls are refused at once
            runner.infer(np.zeros((1, 32, 32, 3), np.float32))
        runner.release.set()
        assert call.result(10).shape == (1, 3)
        closing.result(10)
    assert runner.closed_while_busy == 0
    runner.close()  # a second close is a no-op


@pytest.mark.parametrize("backend", backends.list_backends())
def test_close_while_other_threads_predict(bundle_dir, manifest, images, backend):
    if not backends.is_available(backend):
        pytest.skip(f"{backend} is not installed")
    name = next(a.name for a in manifest.artifacts.values()
                if a.format in backends.families(backend) and a.precision == "fp32")
    model = load(bundle_dir, format=name, backend=backend, threads=1)
    runner, in_flight_at_close = model._runner, []
    real_close = runner._close_impl
    runner._close_impl = lambda: in_flight_at_close.append(runner._calls) or real_close()
    start, done = threading.Barrier(9), [0] * 8

    def hammer(i: int) -> BaseException | None:
        start.wait()
        while True:
            try:
                model.predict(images[: (1, 3, 20, 7, 33, 2, 1, 20)[i]])  # 20+: OpenVINO's throughput path
            except ModelClosedError:
                return None
            except Exception as exc:  # noqa: BLE001  (what the test looks for)
                return exc
            done[i] += 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(hammer, i) for i in range(8)]
        start.wait()
        while min(done) == 0 and not any(f.done() for f in futures):
            time.sleep(0.01)
        model.close()
        errors = [f.result(timeout=60) for f in futures]
    assert errors == [None] * 8, errors
    assert in_flight_at_close == [0]
    with pytest.raises(ModelClosedError, match="is closed; load it again"):
        model.classify(images[:1])


# -- the CLI: one line (or one line per bad image), never a traceback ------------------------------------------
def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "edgexfer", *args], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "EDGEXFER_CACHE_DIR": str(cache)})
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, image_files) -> Path:
    folder = tmp_path_factory.mktemp("mixed")
    for name in ("good1", "bad", "good2", "bomb", "big"):
        shutil.copy(image_files[name], folder / image_files[name].name)
    return folder


def test_cli_predict_reports_each_bad_file_and_classifies_the_rest(bundle_dir, mixed_folder, tmp_path):
    proc = _cli("predict", str(bundle_dir), str(mixed_folder), cache=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [Path(line.split("\t")[0]).name for line in proc.stdout.splitlines()] == ["good1.png", "good2.png"]
    header, *errors = proc.stderr.strip().splitlines()
    assert header.startswith("Classifying 5 images with "), proc.stderr  # what runs, on stderr
    assert len(errors) == 4 and all(line.startswith("Error: ") for line in errors), proc.stderr
    assert "bad.png" in errors[0] and "big.png" in errors[1] and "bomb.png" in errors[2]
    assert errors[3] == "Error: 3 of 5 images could not be classified." and "Warning" not in proc.stderr
    rows = [json.loads(line) for line in _cli("predict", str(bundle_dir), str(mixed_folder), "--json",
                                              cache=tmp_path).stdout.splitlines()]
    assert [("error" in r, Path(r["path"]).name) for r in rows] == [
        (True, "bad.png"), (True, "big.png"), (True, "bomb.png"), (False, "good1.png"), (False, "good2.png")]


MALFORMED = {  # case -> raw bytes for manifest.json (or an edit of the raw manifest)
    "list": b"[]", "string": b'"a string"', "null": b"null",
    "files_empty": lambda raw: raw["artifacts"]["onnx"].update(files=[]),
    "sha256_null": lambda raw: raw["artifacts"]["onnx"].update(sha256=None),
    "labels_string": lambda raw: raw.update(labels="abc"),
    "utf16": "utf-16",
    "outside": lambda raw: raw["artifacts"]["onnx"].update(files=["../../outside/model.onnx"],
                                                           sha256={"../../outside/model.onnx": "0" * 64}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_cli_info_and_predict_on_a_malformed_manifest_print_one_line(bundle_copy, tmp_path, mixed_folder, case):
    how, path = MALFORMED[case], bundle_copy / "manifest.json"
    if isinstance(how, bytes):
        path.write_bytes(how)
    elif how == "utf-16":
        path.write_text(path.read_text(), encoding="utf-16")
    else:
        edit_manifest(bundle_copy, how)
    for args in (["info", str(bundle_copy)], ["predict", str(bundle_copy), str(mixed_folder / "good1.png")]):
        proc = _cli(*args, cache=tmp_path)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.startswith("Error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if case not in ("list", "string", "null", "utf16"):
        assert "`artifacts.onnx.files" in proc.stderr or "`labels`" in proc.stderr or "sha256" in proc.stderr


@pytest.mark.parametrize("case", ["bomb", "damaged"])
def test_cli_predict_on_a_hostile_archive_prints_one_line(bundle_dir, tmp_path, mixed_folder, case):
    if case == "bomb":
        archive = _bomb(bundle_dir, tmp_path / "bomb.zip")
    else:
        archive = _damage(zip_bundle(bundle_dir, tmp_path / "d.zip", compression=zipfile.ZIP_DEFLATED),
                          "bundle/manifest.json")
    proc = _cli("predict", str(archive), str(mixed_folder / "good1.png"), cache=tmp_path / "cache")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ("zip bomb" if case == "bomb" else "cannot be decompressed") in proc.stderr

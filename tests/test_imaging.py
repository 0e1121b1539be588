"""One pixel path: the training loader and every serving path give IDENTICAL pixels for awkward files.

Awkward = what differs between a naive `convert("RGB")` and the decode rules of edgexfer.imaging: an
EXIF-rotated JPEG, RGBA / LA / palette-with-transparency PNGs, a CMYK JPEG, a 16-bit grey PNG, and JPEGs big
enough for draft (reduced-scale) decoding. Runs without TensorFlow (`edgexfer.data` folders need none).
"""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, JpegImagePlugin

from edgexfer import imaging
from edgexfer.cli import main
from edgexfer.data import open_dataset
from edgexfer.data.splits import SPLITS
from edgexfer.runtime import load
from edgexfer.runtime.inputs import prepare_each
from tests.deploy.conftest import app_module

pytestmark = pytest.mark.runtime
RED, BLUE = (220, 30, 30), (30, 30, 220)


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth colour gradients with mild noise: compresses like a photo, unlike uniform noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    noise = np.random.default_rng(seed).normal(0, 6, (h, w, 3))
    base = np.dstack([200 * xx + 30, 180 * yy + 40, 120 * (1 - xx) + 60]) + noise
    return np.clip(base, 0, 255).astype(np.uint8)


def _upright_two_tone(h: int, w: int) -> np.ndarray:
    """Red top half, blue bottom half: shows at once whether EXIF orientation was applied."""
    img = np.empty((h, w, 3), np.uint8)
    img[: h // 2], img[h // 2:] = RED, BLUE
    return img


def write_exif_rotated(path: Path, h: int = 240, w: int = 160) -> Path:
    """A portrait photo stored sideways with EXIF orientation 6 (display = rotate 90 degrees clockwise)."""
    stored = Image.fromarray(_upright_two_tone(h, w)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, "JPEG", quality=90, exif=exif)
    return path


def write_awkward(folder: Path) -> dict[str, Path]:
    """Two class folders, three awkward files each."""
    a, b = folder / "a", folder / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    rgba = np.dstack([_photo(48, 64, 1), np.tile(np.linspace(0, 255, 64), (48, 1)).astype(np.uint8)])
    rgba[:10, :, 3] = 0  # fully transparent rows hide a colour that must not show
    palette = Image.fromarray(_photo(40, 40, 2)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    grey16 = (np.linspace(0, 65535, 40 * 60).reshape(40, 60)).astype(np.uint16)
    la = Image.fromarray(_photo(36, 36, 3)[..., 0]).convert("LA")
    la.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 36), (36, 1)).astype(np.uint8)))
    files = {"exif": write_exif_rotated(a / "exif_rotated.jpg"), "rgba": a / "rgba.png",
             "palette": a / "palette.png", "cmyk": b / "cmyk.jpg", "grey16": b / "grey16.png", "la": b / "la.png"}
    Image.fromarray(rgba, "RGBA").save(files["rgba"])
    palette.save(files["palette"], transparency=0)
    Image.fromarray(_photo(192, 256, 4)).convert("CMYK").save(files["cmyk"], "JPEG", quality=90)
    Image.fromarray(grey16).save(files["grey16"])
    la.save(files["la"])
    return files


@pytest.fixture(scope="module")
def awkward(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("awkward")
    return root, write_awkward(root)


@pytest.fixture(scope="module")
def onnx_model(shared_bundle):
    with load(shared_bundle, format="onnx") as model:
        yield model


@pytest.fixture(scope="module")
def training_side(awkward, onnx_model) -> tuple[list[Path], np.ndarray]:
    """(paths, uint8 pixels) exactly as training and evaluation load them: Dataset.arrays, every split."""
    root, _ = awkward
    spec = onnx_model.input_spec
    ds = open_dataset(root)
    assert not ds.skipped, ds.skipped
    paths, arrays = [], []
    for split in SPLITS:
        if ds.members(split):
            paths += [root / m for m in ds.members(split)]
            arrays.append(ds.arrays(split, (spec.height, spec.width))[0])
    assert len(paths) == 6
    return paths, np.concatenate(arrays)


def test_decode_rules_on_awkward_files(awkward):
    _, f = awkward
    upright = imaging.decode(f["exif"])
    assert upright.shape == (240, 160, 3)  # turned by EXIF, not as stored (160 x 240)
    assert np.abs(upright[5, 80].astype(int) - RED).max() < 20 and np.abs(upright[-5, 80].astype(int) - BLUE).max() < 20
    small = imaging.decode(f["exif"], (24, 16))  # drafted from the sideways file, still upright
    assert small[2, 8, 0] > 180 and small[-2, 8, 2] > 180
    assert (imaging.decode(f["rgba"])[:10] == 255).all()  # transparent rows: white, not the hidden colour
    assert (imaging.decode(f["palette"]) == 255).all(axis=-1).any()  # the transparent index shows white
    grey = imaging.decode(f["grey16"])
    assert grey[0, 0].tolist() == [0, 0, 0] and grey[-1, -1].tolist() == [255, 255, 255]
    la = imaging.decode(f["la"])
    assert (la[:, 0] == 255).all() and (la[..., 0] == la[..., 2]).all()  # alpha 0 column: white; grey stays grey
    assert imaging.decode(f["cmyk"]).shape == (192, 256, 3)


def test_runtime_input_conversion_is_the_training_decode(training_side, onnx_model):
    paths, x = training_side
    batch, good, errors = prepare_each(paths, onnx_model.input_spec)
    assert not errors and good == list(range(len(paths)))
    np.testing.assert_array_equal(batch, x)
    np.testing.assert_array_equal(onnx_model.predict(paths), onnx_model.predict(x))
    np.testing.assert_array_equal(onnx_model.predict([str(p) for p in paths[:1]]), onnx_model.predict(x[:1]))


def test_device_app_decode_is_the_training_decode(training_side, onnx_model):
    app = app_module()
    paths, x = training_side
    images, errors = app._decode(onnx_model, [app.Item(str(p), "stdin") for p in paths], None)
    assert not errors
    np.testing.assert_array_equal(np.stack([images[i] for i in range(len(paths))]), x)


def test_predict_cli_classifies_the_training_pixels(awkward, training_side, onnx_model, shared_bundle):
    root, _ = awkward
    paths, x = training_side
    result = CliRunner().invoke(main, ["predict", str(shared_bundle), str(root), "--format", "onnx", "--json",
                                       "--top-k", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in map(json.loads, result.stdout.splitlines())}
    for path, top in zip(paths, onnx_model.classify(x, top_k=2)):
        assert rows[str(path)]["top_k"] == [{"label": lab, "score": round(s, 6)} for lab, s in top]


def test_jpeg_draft_decode_is_requested_and_close_to_a_full_decode(tmp_path, monkeypatch):
    path = tmp_path / "photo.jpg"
    Image.fromarray(_photo(480, 640, 5)).save(path, "JPEG", quality=90)
    requested = []
    real = JpegImagePlugin.JpegImageFile.draft
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft",
                        lambda self, mode, size: requested.append(size) or real(self, mode, size))
    drafted = imaging.decode(path, 32)
    full = imaging.resize_rgb(imaging.decode(path), 32)
    assert requested == [(64, 64)]  # DRAFT_GAP x the target; the full decode asks for no draft
    assert np.abs(drafted.astype(int) - full).mean() < 1.5
    requested.clear()
    imaging.decode(write_exif_rotated(tmp_path / "turned.jpg"), (24, 40))  # target H 24 x W 40, upright
    assert requested == [(48, 80)]  # asked in the stored (sideways) orientation


def test_decode_many_keeps_order_and_returns_errors(awkward, tmp_path):
    _, f = awkward
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    sources = [f["cmyk"], bad, f["exif"], tmp_path / "missing.jpg", f["la"]] * 3
    results = imaging.decode_many(sources, 32)
    for source, got in zip(sources, results):
        if source in (bad, tmp_path / "missing.jpg"):
            assert isinstance(got, imaging.ImageDecodeError) and str(source) in str(got)
        else:
            np.testing.assert_array_equal(got, imaging.decode(source, 32))


def _decode_in_child(paths: list[Path]) -> None:
    results = imaging.decode_many(paths, 16)
    assert all(isinstance(r, np.ndarray) for r in results)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork on this platform")
def test_decoding_threads_work_in_a_forked_child(awkward):
    _, f = awkward
    imaging.decode_many(list(f.values()), 16)  # the parent's pool exists now
    child = multiprocessing.get_context("fork").Process(target=_decode_in_child, args=(list(f.values()),))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        pytest.fail("decode_many hung in a forked child (the parent's pool threads do not exist there)")
    assert child.exitcode == 0

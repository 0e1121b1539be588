"""`edgexfer predict` through the CLI group (errors are printed by the group as one line, exit 2)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgexfer.cli import main
from tests.factory import edit_manifest

pytestmark = pytest.mark.runtime


@pytest.fixture
def image_dir(tmp_path, images):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    for i, img in enumerate(images[:5]):
        Image.fromarray(img).resize((40, 40)).save(root / ("sub" if i % 2 else "") / f"img{i}.png")
    (root / "notes.txt").write_text("not an image")
    return root


def _invoke(*args: str):
    return CliRunner().invoke(main, ["predict", *args], catch_exceptions=False)


def test_folder_json(bundle_dir, image_dir, manifest):
    result = _invoke(str(bundle_dir), str(image_dir), "--json", "--top-k", "2", "--format", "tflite")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in rows] == sorted(str(p) for p in image_dir.rglob("*.png"))
    for row in rows:
        assert row["label"] in manifest.labels and len(row["top_k"]) == 2
        assert row["top_k"][0] == {"label": row["label"], "score": row["score"]}


def test_text_output_matches_api(bundle_dir, image_dir):
    from edgexfer.runtime import load

    files = sorted(image_dir.rglob("*.png"))
    result = _invoke(str(bundle_dir), *map(str, files), "--batch-size", "2")
    assert result.exit_code == 0, result.output
    with load(bundle_dir) as model:
        want = [top[0][0] for top in model.classify(files)]
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == want


def test_progress_bar_for_large_sets(bundle_dir, tmp_path):
    img = Image.fromarray(np.full((32, 32, 3), 200, np.uint8))
    for i in range(70):
        img.save(tmp_path / f"{i:03d}.png")
    result = _invoke(str(bundle_dir), str(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 70 and "Classifying" in result.stderr


@pytest.mark.parametrize("args", [["{bundle}", "/no/such.png"], ["/no/bundle", "{img}"],
                                  ["{bundle}", "{img}", "--format", "nope"]])
def test_errors_are_one_line_exit_2(bundle_dir, image_dir, args):
    img = str(next(image_dir.rglob("*.png")))
    result = _invoke(*[a.format(bundle=bundle_dir, img=img) for a in args])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1


def test_allow_failed_runs_an_artifact_whose_parity_did_not_pass(bundle_copy, image_dir):
    edit_manifest(bundle_copy, lambda raw: raw["artifacts"]["onnx"].update(status="failed"))
    img = str(next(image_dir.rglob("*.png")))
    refused = _invoke(str(bundle_copy), img, "--format", "onnx")
    assert refused.exit_code == 2 and "--allow-failed" in refused.stderr, refused.output
    allowed = _invoke(str(bundle_copy), img, "--format", "onnx", "--allow-failed")
    assert allowed.exit_code == 0 and allowed.stdout.startswith(img), allowed.output

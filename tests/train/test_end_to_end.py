"""End to end on a real builtin dataset through the CLI: run directory, run.json, evaluate."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgexfer.cli import main
from edgexfer.record import RunRecord
from edgexfer.train import DEFAULT_BACKBONE, DIGITS_BACKBONE, evaluate

DATA = "builtin:uci_digits"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e2e") / "run"
    result = CliRunner().invoke(main, ["train", DATA, "--out", str(out), "--epochs", "3", "--quiet",
                                       "--backbone", DIGITS_BACKBONE])
    assert result.exit_code == 0, result.output
    assert "Done: val accuracy" in result.output and str(out) in result.output
    return out


@pytest.mark.slow
def test_train_writes_a_complete_run_directory(run_dir):
    for name in ("model.keras", "run.json", "history.png", "checkpoints/state.json", "checkpoints/best.weights.npz"):
        assert (run_dir / name).is_file(), name
    record = RunRecord.load(run_dir)
    assert record.labels == [str(d) for d in range(10)] and record.input_shape == [32, 32, 3]
    assert record.preprocessing["in_graph"] and "0..255" in record.preprocessing["caller"]
    assert record.backbone["name"] == DIGITS_BACKBONE and len(record.backbone["weights_sha256"]) == 64
    assert record.data["source"] == DATA and "splits" in record.data and record.data["counts"]["test"] > 0
    assert record.training["status"] == "complete" and record.training["epochs"] == 3
    assert {"strategy", "device", "mixed_precision", "batch_size", "learning_rate"} <= set(record.training)
    assert {"tensorflow", "keras", "numpy", "python"} <= set(record.versions) or "tensorflow-cpu" in record.versions
    metrics = record.metrics
    assert len(metrics["history"]["stage1"]["val_loss"]) == 1 and record.training["stage1_fit"]["converged"]
    assert 0.3 < metrics["test_accuracy"] <= 1.0 and metrics["val_accuracy"] is not None
    assert len(metrics["confusion"]) == 10 and set(metrics["per_class"]) == set(record.labels)
    assert sum(map(sum, metrics["confusion"])) == record.data["counts"]["test"]


@pytest.mark.slow
def test_saved_model_is_float32_and_reproduces_the_recorded_test_accuracy(run_dir):
    import keras

    from edgexfer.data import load_split

    model = keras.models.load_model(run_dir / "model.keras", compile=False)
    assert model.layers[-1].dtype_policy.name == "float32" and model.output_shape == (None, 10)
    assert not any("Random" in type(layer).__name__ for layer in model.layers)
    record = RunRecord.load(run_dir)
    x, y = load_split(record.data, "test", (32, 32))
    accuracy = float((model.predict(x.astype(np.float32), verbose=0).argmax(1) == y).mean())
    assert accuracy == pytest.approx(record.metrics["test_accuracy"], abs=1e-6)
    result = evaluate(run_dir, DATA)
    assert result["split"] == "test" and result["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert np.array(result["confusion"]).sum() == len(y)


@pytest.mark.slow
def test_cli_evaluate_prints_accuracy_and_confusion(run_dir):
    result = CliRunner().invoke(main, ["evaluate", str(run_dir), DATA, "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "true \\ predicted" in result.output
    as_json = CliRunner().invoke(main, ["evaluate", str(run_dir), DATA, "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.output)["n"] > 0


@pytest.mark.parametrize("args, expected", [
    (["train", "/nonexistent/folder", "--out", "{tmp}/r"], "does not exist"),
    (["train", DATA, "--out", "{tmp}/r", "--backbone", "vgg99"], "mobilenet_v2"),
    (["train", DATA, "--out", "{tmp}/r", "--epochs", "0"], "epochs"),
    (["train", DATA, "--out", "{tmp}/r", "--weights", "{tmp}/missing.h5"], "no such file"),
    (["evaluate", "{tmp}/no-run", DATA], "run.json"),
    (["pretrain", "--epochs", "0"], "epochs"),
])
def test_cli_bad_input_gives_one_line_error_and_non_zero_exit(tmp_path, args, expected):
    result = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and expected in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_cli_refuses_to_replace_a_finished_run_without_force(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"a finished run")
    result = CliRunner().invoke(main, ["train", DATA, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--force" in result.output and "Traceback" not in result.output
    assert (tmp_path / "model.keras").read_bytes() == b"a finished run"


@pytest.mark.slow
def test_default_backbone_on_real_photos(tmp_path):
    """`edgexfer train FOLDER` with no flags: the offline ImageNet EfficientNet-Lite0 at 224 px, on photos
    whose test crops come from a part of each photo that training never saw."""
    from edgexfer.data import write_image_folder

    folder = write_image_folder("builtin:textures", tmp_path / "textures")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", str(folder), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    record = RunRecord.load(out)
    assert record.backbone["name"] == DEFAULT_BACKBONE == "efficientnet_lite0"
    assert record.backbone["weights"] == "imagenet" and record.backbone["weights_package"].startswith("efficientnet")
    assert record.input_shape == [224, 224, 3] and record.labels == ["brick", "grass", "gravel"]
    assert record.metrics["test_accuracy"] >= 0.9

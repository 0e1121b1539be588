"""Ctrl-C leaves a usable checkpoint and an 'interrupted' run.json; --resume finishes the run."""
from __future__ import annotations

import json

import keras
import pytest
from click.testing import CliRunner

from edgexfer.cli import main
from edgexfer.errors import UserError
from edgexfer.record import RunRecord
from edgexfer.train import DIGITS_BACKBONE, train


class InterruptAfter(keras.callbacks.Callback):
    """Simulates Ctrl-C right after epoch `n` (after its checkpoint was written)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.n:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupt_then_resume_continues_and_finishes(tiny_data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, augment=True, epochs=4, patience=0, verbose=0,
              callbacks=[InterruptAfter(2)])
    record = RunRecord.load(tmp_path)
    assert record.training["status"] == "interrupted"
    state = json.loads((tmp_path / "checkpoints" / "state.json").read_text())
    assert state["stage"] == 1 and state["epoch"] == 2 and state["interrupted"]
    assert (tmp_path / "checkpoints" / state["last"]).is_file()
    assert not (tmp_path / "model.keras").exists()

    result = train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, augment=True, epochs=4, patience=0, verbose=0,
                   resume=True)
    assert result.record.training["status"] == "complete" and result.record.training["resumed"]
    assert len(result.record.metrics["history"]["stage1"]["loss"]) == 4
    assert (tmp_path / "model.keras").is_file()


def test_resume_without_checkpoint_is_a_user_error(tiny_data, tmp_path):
    with pytest.raises(UserError, match="Nothing to resume"):
        train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, epochs=1, verbose=0, resume=True)


@pytest.mark.parametrize("during", ["start-up", "training"])
def test_cli_ctrl_c_is_one_line_and_exit_130(monkeypatch, tmp_path, during):
    """Ctrl-C names --resume only when a checkpoint was saved; before training started nothing was."""
    import edgexfer.train.trainer as trainer

    def interrupted(*args, **kwargs):
        if during == "training":
            raise trainer.TrainingInterrupted(str(tmp_path / "checkpoints"))
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    result = CliRunner().invoke(main, ["train", "builtin:uci_digits", "--out", str(tmp_path)])
    assert result.exit_code == 130 and "Traceback" not in result.output
    if during == "training":
        assert "--resume" in result.output and "checkpoint saved" in result.output
    else:
        assert "nothing was saved" in result.output and "--resume" not in result.output


@pytest.mark.slow
def test_interrupted_force_run_leaves_no_old_model_beside_it(tiny_data, tmp_path):
    """`train --force` over a finished run, interrupted: the old model.keras must not pass for the new run."""
    (tmp_path / "model.keras").write_bytes(b"the previous run's model")
    with pytest.raises(KeyboardInterrupt):
        train(tiny_data, tmp_path, backbone=DIGITS_BACKBONE, augment=True, epochs=3, patience=0, verbose=0,
              force=True, callbacks=[InterruptAfter(1)])
    assert not (tmp_path / "model.keras").exists()
    assert RunRecord.load(tmp_path).training["status"] == "interrupted"

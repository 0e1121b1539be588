"""Per-epoch checkpoints, early stopping with best weights, resume and Ctrl-C.

Why one callback does all of it: early stopping, "best weights" and resume share state (best
validation loss, epochs without improvement, which stage and epoch finished last). Keeping that
state in checkpoints/state.json next to the weight files makes an interrupted or crashed run
resumable with the same early-stopping behaviour it would have had.

The weights saved are always those of the full classifier (`target`), even while stage 1 fits
the head alone on cached features: both models share the head layers.

Several workers: each one has a Checkpointer and writes through it (the chief into the run
directory, the others into a temporary folder), so that every worker runs the same steps; only the
chief READS checkpoint files, and `load` / `restore_best` hand its weights to every worker
(strategy.broadcast_arrays). That is what makes a restarted cluster continue the same run whether
or not the workers share a filesystem: Keras 3's BackupAndRestore has no such rule (every worker
writes the same backup_dir and restores from its own files) and would keep a second copy of the
weights per epoch beside these, with a crash window between the two.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from edgexfer.errors import UserError

CHECKPOINT_DIR = "checkpoints"
STATE_FILE = "state.json"
BEST_FILE = "best.weights.npz"
INTERRUPT_FILE = "interrupted.weights.npz"
KEEP_EPOCH_FILES = 2


@dataclass
class State:
    """What resume needs: where training stopped and the early-stopping bookkeeping."""

    config: dict[str, Any]
    stage: int = 1
    epoch: int = 0  # epochs completed in `stage`
    stage_done: bool = False
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # "stage1" -> metric -> values
    best_loss: float | None = None
    best_stage: int | None = None
    best_epoch: int | None = None
    wait: int = 0
    last: str | None = None  # weights file of the latest checkpoint
    interrupted: bool = False
    head_fit: dict[str, Any] | None = None  # how stage 1 fitted the head on cached features (stages.HeadFit)

    def start_stage(self, stage: int) -> None:
        if self.stage != stage:
            self.stage, self.epoch, self.stage_done, self.wait = stage, 0, False, 0


def has_state(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_DIR / STATE_FILE).is_file()


def read_state(run_dir: str | Path, config: dict[str, Any]) -> State:
    """checkpoints/state.json of `run_dir`; refuse if the run was made with other settings."""
    path = Path(run_dir) / CHECKPOINT_DIR / STATE_FILE
    if not path.is_file():
        raise UserError(f"Nothing to resume in {run_dir}: no {CHECKPOINT_DIR}/{STATE_FILE}. Run without "
                        "--resume to start a new run.")
    state = State(**json.loads(path.read_text()))
    changed = sorted(k for k in config if state.config.get(k) != config[k])
    if changed:
        raise UserError(f"Cannot resume {run_dir}: these settings differ from the interrupted run: "
                        f"{', '.join(changed)}. Use the same settings, or start a new run without --resume.")
    return state


def continuation(run_dir: str | Path, config: dict[str, Any], *, resume: bool, automatic: bool) -> dict[str, Any]:
    """What a run starting in `run_dir` continues, as JSON the chief can send to the other workers:
    {"state": State as a dict, or None for a new run}, plus "error" or "note" (a message).

    resume: --resume asked for it, so nothing to resume, or other settings, is an error. automatic: a
    multi-worker run restarted with the same command continues the unfinished run in its directory
    (BackupAndRestore's contract); checkpoints made with other settings then start a new run, as a
    run without --resume always does.
    """
    if not (resume or (automatic and has_state(run_dir))):
        return {"state": None}
    try:
        return {"state": asdict(read_state(run_dir, config))}
    except UserError as exc:
        if resume:
            return {"state": None, "error": str(exc)}
        return {"state": None, "note": f"{run_dir} holds the checkpoints of a run with other settings; starting a "
                                       "new run."}


class Checkpointer:
    """Owns checkpoints/: per-epoch weights (the last KEEP_EPOCH_FILES kept), best weights, state.

    `plan` (strategy.Plan) is only needed under several workers: it says whether this process is the
    chief, whose files are read and sent to the others.
    """

    def __init__(self, run_dir: str | Path, target: Any, state: State, plan: Any = None) -> None:
        self.dir = Path(run_dir) / CHECKPOINT_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.target, self.state, self.plan = target, state, plan

    def continue_run(self) -> None:
        """Load the latest weights of the state (every worker gets the chief's) and clear the interrupt mark."""
        if self.state.last:
            self.load(self.state.last)
        self.state.interrupted = False

    @property
    def _workers(self) -> int:
        return int(getattr(self.plan, "workers", 1))

    @property
    def _reads_files(self) -> bool:
        return bool(getattr(self.plan, "chief", True))

    def write_state(self) -> None:
        tmp = self.dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self.state), indent=1))
        tmp.replace(self.dir / STATE_FILE)

    def _save(self, name: str) -> None:
        """Model weights as a numpy archive: ~100x faster than Keras' HDF5 writer for many small
        variables (it matters: stage 1 epochs on cached features take well under a second)."""
        tmp = self.dir / ("tmp-" + name)
        with open(tmp, "wb") as handle:
            np.savez(handle, *self.target.get_weights())
        tmp.replace(self.dir / name)

    def end_epoch(self, stage: int, epoch: int, logs: dict[str, float], patience: int) -> bool:
        """Record one finished epoch; returns True when early stopping says stop."""
        state = self.state
        hist = state.history.setdefault(f"stage{stage}", {})
        for key, value in logs.items():
            hist.setdefault(key, []).append(float(value))
        loss = float(logs.get("val_loss", logs.get("loss", math.inf)))
        name = f"stage{stage}-epoch{epoch + 1:03d}.weights.npz"
        self._save(name)
        if state.best_loss is None or loss < state.best_loss:
            state.best_loss, state.best_stage, state.best_epoch, state.wait = loss, stage, epoch + 1, 0
            shutil.copyfile(self.dir / name, self.dir / ("tmp-" + BEST_FILE))  # one weights dump per epoch
            (self.dir / ("tmp-" + BEST_FILE)).replace(self.dir / BEST_FILE)
        else:
            state.wait += 1
        state.stage, state.epoch, state.last = stage, epoch + 1, name
        self._prune(keep=name)
        stop = 0 < patience <= state.wait
        self.write_state()
        return stop

    def _prune(self, keep: str) -> None:
        epochs = sorted(self.dir.glob("stage*-epoch*.weights.npz"))  # zero-padded: name order is time order
        for old in epochs[:-KEEP_EPOCH_FILES]:
            if old.name != keep:
                old.unlink(missing_ok=True)

    def finish_stage(self) -> None:
        self.state.stage_done = True
        self.write_state()

    def load(self, name: str) -> None:
        """Load model weights (optimizer state is not checkpointed: Adam restarts its moments on resume).

        Several workers: the chief reads the file, every worker gets its arrays (a worker's own folder
        may be empty: a fresh temporary one after a restart, or another machine's disk).
        """
        if self._reads_files:
            with np.load(self.dir / name) as archive:
                arrays = [archive[f"arr_{i}"] for i in range(len(archive.files))]
        else:
            arrays = [np.asarray(w) for w in self.target.get_weights()]  # shapes only; the chief's values come
        if self._workers > 1:
            from edgexfer.train.strategy import broadcast_arrays

            arrays = broadcast_arrays(self.plan, arrays)
        self.target.set_weights(arrays)

    def restore_best(self) -> None:
        """Load the weights with the lowest validation loss seen so far (any stage): the chief's, everywhere."""
        exists = self._reads_files and (self.dir / BEST_FILE).is_file()
        if self._workers > 1:
            from edgexfer.train.strategy import broadcast_bytes

            exists = broadcast_bytes(self.plan, b"1" if exists else b"") == b"1"
        if exists:
            self.load(BEST_FILE)

    def save_interrupt(self) -> None:
        """Ctrl-C: keep the current weights as the latest checkpoint so --resume continues from them."""
        self._save(INTERRUPT_FILE)
        self.state.last, self.state.interrupted = INTERRUPT_FILE, True
        self.write_state()


class EpochCallback(keras.callbacks.Callback):
    """Keras hook that forwards each epoch to the Checkpointer and applies early stopping."""

    def __init__(self, ckpt: Checkpointer, stage: int, patience: int) -> None:
        super().__init__()
        self.ckpt, self.stage, self.patience = ckpt, stage, patience

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if self.ckpt.end_epoch(self.stage, epoch, logs or {}, self.patience):
            self.model.stop_training = True
            self.ckpt.state.stage_done = True

"""Several workers (MultiWorkerMirroredStrategy): two processes on localhost, TF_CONFIG per process.

What is checked: stage 1 and stage 2 (through the backbone, so the distributed epoch loop) with
AdaBN; the chief alone writes the run directory, the other worker's temporary folder is gone at
the end, both workers end with the same weights and the same accuracy; a worker killed in stage 2
and a cluster restarted with the same command continue the run from the chief's last epoch.
The cheap rules (who is chief, what a restart continues) are tested in-process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgexfer.train.checkpoints import CHECKPOINT_DIR, STATE_FILE, State, continuation
from edgexfer.train.strategy import Plan, broadcast_arrays, broadcast_bytes, cluster_role
from benchmarks._common import free_ports

HERE = Path(__file__).parent
WAIT_S = 150  # per attempt; a run takes ~30 s on two idle cores


# --------------------------------------------------------------------------- in-process rules


class _Resolver:
    def __init__(self, cluster: dict, kind: str, index: int) -> None:
        self.task_type, self.task_id, self._cluster = kind, index, cluster

    def cluster_spec(self) -> SimpleNamespace:
        return SimpleNamespace(as_dict=lambda: self._cluster)


@pytest.mark.parametrize(("cluster", "kind", "index", "chief"), [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["a:1"], "worker": ["b:1"]}, "chief", 0, True),
    ({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 0, False),
])
def test_the_chief_is_the_chief_task_else_worker_0(cluster, kind, index, chief):
    strategy = SimpleNamespace(cluster_resolver=_Resolver(cluster, kind, index))
    assert cluster_role(strategy) == (2, chief, f"{kind} {index}")


def test_one_process_is_its_own_chief_and_broadcast_is_the_identity():
    assert cluster_role(SimpleNamespace(cluster_resolver=None)) == (1, True, "local")
    plan = Plan(None, "one", "CPU", 1, False, False)
    arrays = [np.arange(3.0)]
    assert broadcast_bytes(plan, b"abc") == b"abc" and broadcast_arrays(plan, arrays) is arrays


def test_an_aborted_collective_is_a_worker_lost_error_naming_the_fix():
    import tensorflow as tf

    from edgexfer.errors import UserError
    from edgexfer.train.strategy import WorkerLostError, worker_lost

    plan = Plan(None, "multiworker", "CPU", 2, False, False, workers=2, chief=True, task="worker 0")
    error = worker_lost(tf.errors.UnavailableError(None, None, "Collective ops is aborted by: task 1 unhealthy"), plan)
    assert isinstance(error, WorkerLostError) and not isinstance(error, UserError)
    assert "task 1 unhealthy" in str(error) and "Restart every worker with the same command" in str(error)
    assert worker_lost(ValueError("a bug"), plan) is None
    assert worker_lost(tf.errors.UnavailableError(None, None, "x"), Plan(None, "one", "CPU", 1, False, False)) is None


def _write_state(run_dir: Path, config: dict) -> None:
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True)
    (run_dir / CHECKPOINT_DIR / STATE_FILE).write_text(json.dumps(asdict(State(config, stage=2, epoch=1))))


def test_a_restarted_cluster_continues_an_unfinished_run_with_the_same_settings(tmp_path):
    _write_state(tmp_path, {"seed": 0})
    found = continuation(tmp_path, {"seed": 0}, resume=False, automatic=True)
    assert found["state"]["stage"] == 2 and found["state"]["epoch"] == 1
    other = continuation(tmp_path, {"seed": 1}, resume=False, automatic=True)  # other settings: a new run
    assert other["state"] is None and "other settings" in other["note"]
    assert continuation(tmp_path, {"seed": 0}, resume=False, automatic=False) == {"state": None}  # one worker
    assert "seed" in continuation(tmp_path, {"seed": 1}, resume=True, automatic=False)["error"]


# --------------------------------------------------------------------------- two worker processes




def _worker_env(ports: list[int], index: int, tmp: Path) -> dict[str, str]:
    """TF_CONFIG of worker `index`, and a TMPDIR of its own so the test sees what it leaves behind."""
    tmpdir = tmp / f"tmp-worker{index}"
    tmpdir.mkdir(exist_ok=True)
    cluster = {"cluster": {"worker": [f"localhost:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    return {**os.environ, "TF_CONFIG": json.dumps(cluster), "TMPDIR": str(tmpdir), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _start(commands: list[list[str]], tmp: Path, attempt: str) -> tuple[list[subprocess.Popen], list[Path]]:
    """One process per worker; output to files, not pipes (a full pipe would stall a worker)."""
    ports, procs, logs = free_ports(len(commands)), [], []
    for index, command in enumerate(commands):
        log = tmp / f"{attempt}-worker{index}.log"
        with open(log, "w") as out:
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True,
                                          env=_worker_env(ports, index, tmp)))
        logs.append(log)
    return procs, logs


def _finish(procs: list[subprocess.Popen], logs: list[Path]) -> list[str]:
    for proc, log in zip(procs, logs):
        try:
            code = proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise AssertionError(f"worker timed out:\n{log.read_text()[-3000:]}")
        assert code == 0, log.read_text()[-3000:]
    return [log.read_text() for log in logs]


def _shape_folder(root: Path) -> Path:
    """The tiny shapes set as an image folder (class sub-folders), for the CLI."""
    from PIL import Image

    from tests.train.conftest import shape_images  # not `conftest`: in a full run that name is another folder's

    data = shape_images()
    for i, (image, label) in enumerate(zip(data.x, data.y)):
        folder = root / data.class_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


@pytest.mark.slow
def test_two_workers_given_the_same_out_only_the_chief_writes_it(tmp_path):
    """The CLI, both workers with the same --out (one machine, or a shared filesystem)."""
    data, out = _shape_folder(tmp_path / "shapes"), tmp_path / "run"
    command = [sys.executable, "-m", "edgexfer", "train", str(data), "--out", str(out), "--strategy", "multiworker",
               "--backbone", "digits_mnv3s", "--epochs", "1", "--batch-size", "16", "--patience", "0",
               "--fine-tune-layers", "2", "--fine-tune-epochs", "2", "--fine-tune-lr", "1e-3", "--adapt-bn", "--quiet"]
    logs = _finish(*_start([command, command], tmp_path, "run"))
    done = [next(line for line in log.splitlines() if line.startswith("Done:")) for log in logs]
    assert f"Run directory: {out}" in done[0] and "kept no files" in done[1]
    assert done[0].split(". ")[0] == done[1].split(". ")[0]  # the same val and test accuracy on both workers
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "history.png", "model.keras", "run.json"]
    assert not any((tmp_path / "tmp-worker1").iterdir()), "worker 1 left its temporary folder behind"
    training = json.loads((out / "run.json").read_text())["training"]
    assert training["strategy"] == "multiworker" and training["workers"] == 2 and training["replicas"] == 2
    assert training["status"] == "complete" and training["adapt_bn"]["method"] == "AdaBN"
    # stage 1 on cached features under MultiWorkerMirroredStrategy (Keras' fit on cached features crashed
    # there once: "unsupported type PerReplica to a Tensor")
    assert training["stage1_fit"]["converged"], training["stage1_fit"]
    history = json.loads((out / "run.json").read_text())["metrics"]["history"]
    assert len(history["stage1"]["loss"]) == 1 and len(history["stage2"]["loss"]) == 2


WORKER = textwrap.dedent("""
    import hashlib, json, os, sys
    import keras
    out, marker = sys.argv[1], sys.argv[2]
    sys.path.insert(0, sys.argv[3])
    from conftest import shape_images
    from edgexfer.train import train

    class DieOnce(keras.callbacks.Callback):
        '''Worker 1 exits at the start of stage 2's second epoch, on the first attempt only, once the chief has
        checkpointed the first (else the test races the chief's write: seen failing under load).'''
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1 and json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 1 and not os.path.exists(marker):
                import time
                from edgexfer.train.checkpoints import CHECKPOINT_DIR, STATE_FILE
                state_file = os.path.join(out, CHECKPOINT_DIR, STATE_FILE)
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        with open(state_file) as fh:
                            state = json.load(fh)
                        if (state["stage"], state["epoch"]) >= (2, 1):
                            break
                    except (OSError, ValueError, KeyError):
                        pass
                    time.sleep(0.1)
                open(marker, "w").close()
                os._exit(17)

    result = train(shape_images(), out, backbone="digits_mnv3s", epochs=1, batch_size=16, strategy="multiworker",
                   fine_tune_layers=2, fine_tune_epochs=2, fine_tune_lr=1e-3, adapt_bn=True, patience=0, verbose=1,
                   callbacks=[DieOnce()])
    digest = hashlib.sha256(b"".join(w.tobytes() for w in result.model.get_weights())).hexdigest()
    print("RESULT " + json.dumps({"chief": result.chief, "weights": digest, "training": result.record.training,
                                  "metrics": result.record.metrics}))
""")


def _result(log: str) -> dict:
    return json.loads(next(line for line in log.splitlines() if line.startswith("RESULT "))[len("RESULT "):])


@pytest.mark.slow
def test_a_killed_worker_and_a_restarted_cluster_continue_the_run(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "died-once"
    command = [sys.executable, "-c", WORKER, str(out), str(marker), str(HERE)]
    procs, logs = _start([command, command], tmp_path, "first")
    try:
        assert procs[1].wait(timeout=WAIT_S) == 17, logs[1].read_text()[-3000:]
    finally:  # the survivor would wait for its peer (then fail on the missed heartbeats): stop it, as a cluster does
        procs[0].kill()
        procs[0].wait()
    state = json.loads((out / CHECKPOINT_DIR / STATE_FILE).read_text())
    assert (state["stage"], state["epoch"]) == (2, 1)  # the chief had checkpointed stage 2's first epoch

    logs = _finish(*_start([command, command], tmp_path, "second"))  # the same command on every worker
    assert "Resuming stage 2 after epoch 1" in logs[0]
    results = [_result(log) for log in logs]
    assert [r["chief"] for r in results] == [True, False]
    assert results[0]["weights"] == results[1]["weights"]  # the workers agree on the model
    assert results[0]["metrics"]["test_accuracy"] == results[1]["metrics"]["test_accuracy"] > 0.6
    history = results[0]["metrics"]["history"]
    assert len(history["stage2"]["loss"]) == 2  # epoch 1 from the first attempt, epoch 2 after the restart
    assert results[0]["training"]["resumed"] and results[0]["training"]["status"] == "complete"
    assert json.loads((out / "run.json").read_text())["metrics"]["history"] == history
    assert not (out / CHECKPOINT_DIR / "interrupted.weights.npz").exists()


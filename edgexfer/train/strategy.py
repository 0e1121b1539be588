"""Where training runs: device detection, tf.distribute strategy, mixed precision and XLA.

Why one plan object: the model must be built and compiled inside `strategy.scope()`, mixed
precision must be set before the layers are created and undone afterwards, and the run record
must say what was actually used. `plan_strategy()` decides all of it once.

GPU rules: mixed_float16 only on GPUs with compute capability >= 7.0 (the softmax stays float32
and the saved model is rebuilt in float32); XLA (`jit_compile`) only with a single device,
because Keras turns it off under distribution strategies anyway.

Several workers (MultiWorkerMirroredStrategy, TF_CONFIG): the CHIEF (task "chief", else worker 0)
owns the run; the plan says which process this is. Every worker runs the same steps, so that the
collective operations match, and the chief's files are the only truth: what a worker must know from
them (resume state, checkpoint weights) the chief sends with `broadcast_bytes` / `broadcast_arrays`,
which work whether or not the workers share a filesystem. Keras 3's `Model.fit` does not run under
this strategy (keras-team/keras#20585: it reduces the nested PerReplica batch, then the scalar logs
along axis 0), so `distributed_fit` runs the epochs with public tf.distribute calls.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from edgexfer.errors import EdgexferError, UserError

STRATEGIES = ("auto", "one", "mirrored", "multiworker")


@dataclass
class Plan:
    strategy: Any  # tf.distribute.Strategy
    name: str  # "one" | "mirrored" | "multiworker"
    device: str  # human readable, for run.json
    replicas: int
    mixed_precision: bool
    jit_compile: bool
    workers: int = 1  # processes in the cluster (TF_CONFIG chief + workers)
    chief: bool = True  # this process writes the run directory
    task: str = "local"  # "worker 1", for messages

    def record(self) -> dict[str, Any]:
        return {"strategy": self.name, "device": self.device, "replicas": self.replicas, "workers": self.workers,
                "mixed_precision": self.mixed_precision, "jit_compile": self.jit_compile}


class WorkerLostError(EdgexferError):
    """A peer of a multi-worker cluster stopped (crash, kill, preemption): not the user's input, not a bug.

    Every worker of MultiWorkerMirroredStrategy waits for every other one, so the survivors cannot go
    on; the fix is to restart all of them with the same command, and the chief's checkpoints continue.
    """


def validate(requested: str) -> str:
    if requested not in STRATEGIES:
        raise UserError(f"Expected --strategy one of {', '.join(STRATEGIES)}. Received: '{requested}'.")
    return requested


def _tf_config_workers() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except (ValueError, AttributeError) as exc:
        raise UserError(f"TF_CONFIG is not valid JSON: {exc}") from exc
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def gpu_names() -> list[str]:
    import tensorflow as tf

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def _supports_mixed_float16() -> bool:
    """All visible GPUs have tensor cores (compute capability >= 7.0)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return False
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
        if tuple(capability) < (7, 0):
            return False
    return True


def _resolve(requested: str, n_gpus: int) -> str:
    if requested != "auto":
        return requested
    if _tf_config_workers() > 1:
        return "multiworker"
    return "mirrored" if n_gpus > 1 else "one"


def _make_strategy(name: str, gpus: list[str]) -> Any:
    """The tf.distribute strategy; on a CPU-only machine Mirrored spans the logical CPU devices."""
    import tensorflow as tf

    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise UserError("--strategy multiworker needs the TF_CONFIG environment variable describing the "
                            "cluster (see tf.distribute.MultiWorkerMirroredStrategy).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = None if gpus else [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()  # the default (single-device) strategy


def plan_strategy(requested: str = "auto") -> Plan:
    """Decide strategy, device description, mixed precision and XLA for this machine."""
    name = _resolve(validate(requested), len(gpu_names()))
    gpus = gpu_names()
    strategy = _make_strategy(name, gpus)
    replicas = int(strategy.num_replicas_in_sync)
    device = f"{len(gpus)} GPU ({', '.join(gpus)})" if gpus else f"CPU ({os.cpu_count()} cores)"
    mixed = bool(gpus) and _supports_mixed_float16()
    jit = bool(gpus) and name == "one"
    return Plan(strategy, name, device, replicas, mixed, jit, *cluster_role(strategy))


def cluster_role(strategy: Any) -> tuple[int, bool, str]:
    """(workers, is this process the chief, task name) from the strategy's cluster resolver.

    The chief is the task of type "chief", or worker 0 when the cluster has no "chief" (Keras' rule).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return 1, True, "local"
    spec = resolver.cluster_spec().as_dict()
    workers = sum(len(spec.get(kind, [])) for kind in ("chief", "worker"))
    kind, index = str(resolver.task_type), int(resolver.task_id or 0)
    chief = kind == "chief" or (kind == "worker" and index == 0 and "chief" not in spec)
    return max(workers, 1), chief, f"{kind} {index}"


@contextlib.contextmanager
def precision(mixed: bool) -> Iterator[None]:
    """Set the global Keras dtype policy for model building and restore the previous one after."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


# --------------------------------------------------------------------------- the chief's data on every worker


def _sum_from_chief(plan: Plan, values: np.ndarray) -> np.ndarray:
    """All-reduce (SUM) where only the chief's first local replica contributes: the chief's values everywhere.

    Integer words, so the sum with zeros is bit-exact whatever the payload (float -0.0 + 0.0 would not be).
    """
    import tensorflow as tf

    first = [True]

    def local(_context: Any) -> Any:
        mine, first[0] = plan.chief and first[0], False
        return tf.constant(values if mine else np.zeros_like(values))

    per_replica = plan.strategy.experimental_distribute_values_from_function(local)
    return np.asarray(plan.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None))


def broadcast_bytes(plan: Plan, payload: bytes) -> bytes:
    """The chief's `payload` on every worker (the others pass anything, b"" is fine); as is on one worker."""
    if plan.workers <= 1:
        return payload
    size = int(_sum_from_chief(plan, np.array([len(payload)], np.int32))[0])
    if size == 0:
        return b""
    padded = -(-size // 4) * 4
    words = np.frombuffer(payload.ljust(padded, b"\0") if plan.chief else bytes(padded), np.int32)
    return _sum_from_chief(plan, words).tobytes()[:size]


def broadcast_arrays(plan: Plan, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The chief's arrays on every worker; each worker passes its own arrays of the same shapes and dtypes."""
    if plan.workers <= 1:
        return arrays
    arrays = [np.ascontiguousarray(a) for a in arrays]
    data = broadcast_bytes(plan, b"".join(a.tobytes() for a in arrays) if plan.chief else b"")
    if len(data) != sum(a.nbytes for a in arrays):
        from edgexfer.errors import InternalError

        raise InternalError(f"Expected {sum(a.nbytes for a in arrays)} bytes of weights from the chief. "
                            f"Received: {len(data)}. The workers built different models.")
    out, offset = [], 0
    for a in arrays:
        out.append(np.frombuffer(data, a.dtype, a.size, offset).reshape(a.shape).copy())
        offset += a.nbytes
    return out


def worker_lost(exc: BaseException, plan: Plan) -> WorkerLostError | None:
    """The WorkerLostError for a collective aborted because a peer stopped; None for any other exception."""
    if plan.workers <= 1:
        return None
    import tensorflow as tf

    if not isinstance(exc, (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)):
        return None
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WorkerLostError(f"Expected every worker of the cluster to stay up. Received on {plan.task}: {first[:300]} "
                           "Restart every worker with the same command: the run continues from the chief's last "
                           "checkpoint.")


# --------------------------------------------------------------------------- epochs under several workers


def distributed_fit(model: Any, train: Any, val: Any | None, *, plan: Plan, epochs: int, initial_epoch: int,
                    callbacks: list[Any], verbose: int) -> dict[str, float]:
    """What `model.fit` does for edgexfer's classifier (sparse cross-entropy + accuracy, the compiled
    optimizer, epoch callbacks, `stop_training`), under MultiWorkerMirroredStrategy.

    `train`/`val` yield GLOBAL batches; every worker iterates the same pipeline and keeps its part of
    each batch (`_distribute`). The logs are sums
    all-reduced over the workers, so every worker gets the same numbers and so the same early-stopping
    decisions. Returns the last epoch's logs.
    """
    import keras

    with plan.strategy.scope():
        model.optimizer.build(model.trainable_variables)
    train_data = _distribute(plan.strategy, train)
    val_data = _distribute(plan.strategy, val) if val is not None else None
    train_step = _step(model, plan.strategy, True, train_data.element_spec)
    val_step = _step(model, plan.strategy, False, val_data.element_spec) if val_data is not None else None
    hooks = keras.callbacks.CallbackList(callbacks, model=model)
    model.stop_training, logs = False, {}
    hooks.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        hooks.on_epoch_begin(epoch)
        logs = _run_epoch(train_step, train_data, "")
        if val_step is not None:
            logs.update(_run_epoch(val_step, val_data, "val_"))
        hooks.on_epoch_end(epoch, logs)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} ({plan.task}): " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()),
                  flush=True)
        if model.stop_training:
            break
    hooks.on_train_end(logs)
    return logs


def _distribute(strategy: Any, dataset: Any) -> Any:
    """Each worker iterates the whole pipeline and keeps its part of every global batch (in-memory
    pipelines have no files to shard by), so an epoch sees every example once, in the pipeline's order."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def _run_epoch(step: Any, data: Any, prefix: str) -> dict[str, float]:
    """(sum of losses, correct, examples) over the epoch -> mean loss and accuracy."""
    totals = np.zeros(3)
    for batch in data:
        totals += np.asarray(step(batch), dtype=np.float64)
    examples = max(totals[2], 1.0)
    return {f"{prefix}loss": float(totals[0] / examples), f"{prefix}accuracy": float(totals[1] / examples)}


def _step(model: Any, strategy: Any, training: bool, spec: Any) -> Any:
    """One global batch: forward (and, when training, the update) on every replica, sums all-reduced.

    Traced once for `spec` (the distributed dataset's element spec, batch dimension None): without it
    the last, partial batch of each pipeline costs a second trace of the whole backbone. The loss is
    the sum over this replica's examples divided by the examples of the WHOLE global batch
    (all-reduced), so the summed gradients are those of the batch mean, as one device would compute
    them, also for the last, partial batch.
    """
    import keras
    import tensorflow as tf

    def replica(images: Any, labels: Any) -> Any:
        labels = tf.cast(labels, tf.int32)
        local = tf.cast(tf.shape(labels)[0], tf.float32)
        total = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, local)
        with tf.GradientTape() as tape:
            probs = model(images, training=training)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
            penalty = tf.cast(tf.add_n(model.losses), tf.float32) if model.losses else tf.constant(0.0)
            loss = tf.reduce_sum(per_example) / tf.maximum(total, 1.0) + penalty / strategy.num_replicas_in_sync
            scaled = model.optimizer.scale_loss(loss) if training else loss
        if training:
            grads = tape.gradient(scaled, model.trainable_variables)
            model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, axis=-1, output_type=tf.int32), labels), tf.float32))
        return tf.stack([tf.reduce_sum(per_example) + penalty * local, correct, local])

    @tf.function(input_signature=[spec])
    def step(batch: Any) -> Any:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica, args=batch), axis=None)

    return step

"""Where training runs: device detection, tf.distribute strategy, mixed precision and XLA.

Why one plan object: the model must be built and compiled inside `strategy.scope()`, mixed
precision must be set before the layers are created and undone afterwards, and the run record
must say what was actually used. `plan_strategy()` decides all of it once.

GPU rules: mixed_float16 only on GPUs with compute capability >= 7.0 (the softmax stays float32
and the saved model is rebuilt in float32); XLA (`jit_compile`) only with a single device,
because Keras turns it off under distribution strategies anyway.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator

from edgexfer.errors import UserError

STRATEGIES = ("auto", "one", "mirrored", "multiworker")


@dataclass
class Plan:
    strategy: Any  # tf.distribute.Strategy
    name: str  # "one" | "mirrored" | "multiworker"
    device: str  # human readable, for run.json
    replicas: int
    mixed_precision: bool
    jit_compile: bool

    def record(self) -> dict[str, Any]:
        return {"strategy": self.name, "device": self.device, "replicas": self.replicas,
                "mixed_precision": self.mixed_precision, "jit_compile": self.jit_compile}


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
    return Plan(strategy, name, device, replicas, mixed, jit)


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

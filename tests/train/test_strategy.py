"""Distribution strategies: argument checks in-process, MirroredStrategy on two logical CPUs in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edgexfer.errors import UserError
from edgexfer.train.strategy import plan_strategy, validate

HERE = Path(__file__).parent


def test_unknown_strategy_is_a_user_error():
    with pytest.raises(UserError, match="mirrored"):
        validate("tpu")


def test_multiworker_without_tf_config_is_a_user_error(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="TF_CONFIG"):
        plan_strategy("multiworker")


def test_single_device_plan_on_cpu_is_float32_without_xla():
    plan = plan_strategy("auto")
    assert plan.name == "one" and plan.replicas == 1
    assert not plan.mixed_precision and not plan.jit_compile


MIRRORED = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[2])
    from conftest import shape_images
    from edgexfer.train import train
    result = train(shape_images(), sys.argv[1], backbone="digits_mnv3s", epochs=1, batch_size=16, strategy="mirrored",
                   fine_tune_layers=2, fine_tune_epochs=1, verbose=0, patience=0, adapt_bn=True)
    import keras
    model = keras.models.load_model(sys.argv[1] + "/model.keras", compile=False)
    print(json.dumps({"training": result.record.training, "dtype": model.layers[-1].dtype_policy.name,
                      "test_accuracy": result.record.metrics["test_accuracy"]}))
""")


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpu_devices(tmp_path):
    proc = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "run"), str(HERE)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["training"]["strategy"] == "mirrored" and out["training"]["replicas"] == 2
    assert out["dtype"] == "float32" and out["test_accuracy"] is not None
    adapted = out["training"]["adapt_bn"]  # AdaBN on mirrored variables, outside the replica context
    assert adapted["method"] == "AdaBN" and adapted["images"] > 0 and adapted["mean_shift"] > 0

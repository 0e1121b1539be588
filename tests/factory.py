"""The one factory for the runs and bundles the tests need (fixtures over it live in tests/conftest.py).

    tiny_run(out)                       a run directory (model.keras + run.json over a small image folder), ~2 s
    trained_run(out, data, epochs=1)    a run directory made by edgexfer.train itself (the real trainer), ~15 s
    shared_bundle()                     the session's bundle: every format, exported once (read-only)
    shared_run()                        the run directory it was exported from, when it is still there
    edit_manifest(bundle, edit), zip_bundle(bundle, archive)   helpers for tests that damage a bundle copy

The tiny model: 32x32x3 float 0..255 -> Rescaling -> conv -> GAP -> Dense(3) softmax, briefly fitted on synthetic
"which colour dominates" images so its outputs are not uniform. The session bundle is EDGEXFER_TEST_BUNDLE when
set (`make test` builds one in the full environment, then runs the runtime tests again in a runtime-only
virtualenv without TensorFlow); otherwise it is built once per process, in a subprocess
(`python -m tests.factory OUT_DIR`, also `python tests/runtime/make_bundle.py OUT_DIR`), so pytest itself
never imports TensorFlow for it. Only numpy is imported at the top: TensorFlow-side code is imported inside the
functions that need it, so this module loads in the runtime-only virtualenv.
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LABELS = ["red", "green", "blue"]
SIZE = 32
SEED = 0
_STATE: dict[str, Path] = {}


# -- images and the tiny model ------------------------------------------------------------------------------
def sample_images(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 32, 32, 3] noisy images whose dominant channel is the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    x = rng.integers(0, 110, (n, SIZE, SIZE, 3)).astype(np.int32)
    x[np.arange(n), :, :, y] += rng.integers(60, 140, (n, 1, 1))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def tiny_model(*, fit: bool = True, augment: bool = False):
    """The tiny Keras classifier; `augment` keeps a RandomFlip layer in the graph (which must not export)."""
    import keras

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    h = keras.layers.RandomFlip("horizontal")(inputs) if augment else inputs
    h = keras.layers.Rescaling(1.0 / 255)(h)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", dtype="float32")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    if fit:
        x, y = sample_images(96)
        model.fit(x.astype("float32"), y, epochs=4, batch_size=32, verbose=0)
    return model


def write_images(folder: Path, n: int = 90, seed: int = 3) -> Path:
    """An image folder (one sub-folder per label) of `n` PNG files."""
    from PIL import Image

    x, y = sample_images(n, seed=seed)
    for i, (img, label) in enumerate(zip(x, y)):
        (folder / LABELS[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / LABELS[label] / f"{i:03d}.png")
    return folder


# -- runs ---------------------------------------------------------------------------------------------------
def tiny_run(out: str | Path, *, fit: bool = True, augment: bool = False, data: str | Path | None = None) -> Path:
    """A run directory for the tiny model over an image folder (`data`, else OUT-data written here)."""
    from edgexfer.data import open_dataset
    from edgexfer.record import MODEL_FILE, RunRecord

    out = Path(out)
    data = Path(data) if data else write_images(out.with_name(out.name + "-data"))
    record = open_dataset(str(data), seed=SEED).to_record()
    out.mkdir(parents=True, exist_ok=True)
    tiny_model(fit=fit, augment=augment).save(out / MODEL_FILE)
    RunRecord(labels=LABELS, input_shape=[SIZE, SIZE, 3],
              preprocessing={"in_graph": "Rescaling(1/255)", "caller": "raw RGB 0..255, NHWC"},
              backbone={"name": "tiny-conv", "weights": None, "trainable_layers": "all"},
              data=record, seed=SEED).save(out)
    return out


def trained_run(out: str | Path, data: str = "builtin:uci_digits", *, epochs: int = 1, **kwargs: Any) -> Path:
    """A run made by edgexfer.train (the shipped digits backbone's head, `epochs` epochs), ~15 s on 2 cores."""
    from edgexfer.train.trainer import train

    options = {"verbose": 0, "patience": 0, "backbone": "digits_mnv3s", **kwargs}
    return train(data, out, epochs=epochs, **options).run_dir


# -- bundles ------------------------------------------------------------------------------------------------
def build_bundle(out: str | Path) -> Path:
    """The session bundle: a tiny run at OUT-run (images at OUT-data), exported to every format, as a user would."""
    from edgexfer.export import export

    out = Path(out)
    run = tiny_run(out.with_name(out.name + "-run"), data=write_images(out.with_name(out.name + "-data")))
    export(str(run), str(out))
    return out


def shared_bundle() -> Path:
    """The session's bundle (read-only: copy it before changing it). A function, not only a fixture, because
    parametrization reads its manifest at collection time."""
    if "bundle" not in _STATE:
        env = os.environ.get("EDGEXFER_TEST_BUNDLE")
        if env and not (Path(env) / "manifest.json").is_file():
            import pytest

            raise pytest.UsageError(f"EDGEXFER_TEST_BUNDLE={env} holds no manifest.json")
        _STATE["bundle"] = Path(env) if env else _build_in_subprocess()
    return _STATE["bundle"]


def shared_run() -> Path | None:
    """The run directory the session bundle was exported from (its manifest records it), if it still exists."""
    raw = json.loads((shared_bundle() / "manifest.json").read_text())
    run = raw.get("provenance", {}).get("run_dir")
    return Path(run) if run and (Path(run) / "run.json").is_file() else None


def _build_in_subprocess() -> Path:
    import pytest

    tmp = Path(tempfile.mkdtemp(prefix="edgexfer-test-bundle-"))
    atexit.register(shutil.rmtree, tmp, True)
    out = tmp / "bundle"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "tests.factory", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise pytest.UsageError("Could not build the test bundle (needs the full environment with TensorFlow; "
                                f"or set EDGEXFER_TEST_BUNDLE to a built bundle):\n{proc.stderr[-3000:]}")
    return out


# -- damaging copies ----------------------------------------------------------------------------------------
def edit_manifest(bundle_dir: Path, edit) -> None:
    """Apply `edit(raw_dict)` to a bundle's manifest.json."""
    path = bundle_dir / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw, indent=2))


def zip_bundle(bundle_dir: Path, archive: Path, prefix: str = "bundle/", extra: dict[str, bytes] | None = None,
               compression: int = 0) -> Path:
    """Zip a bundle folder (entries under `prefix`), plus `extra` entries {name: bytes}."""
    import zipfile

    with zipfile.ZipFile(archive, "w", compression) as zf:
        for f in sorted(bundle_dir.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(bundle_dir).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return archive


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m tests.factory OUT_DIR   (or: python tests/runtime/make_bundle.py OUT_DIR)")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(json.dumps({"bundle": str(build_bundle(argv[0]))}))


if __name__ == "__main__":
    main(sys.argv[1:])

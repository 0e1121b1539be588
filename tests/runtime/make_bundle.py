"""Build a tiny test bundle for the runtime tests (needs the full environment: TensorFlow and converters).

    python tests/runtime/make_bundle.py OUT_DIR

A tiny Keras classifier (32x32x3 float 0..255 -> Rescaling -> conv -> GAP -> Dense(3) softmax), briefly fitted
on synthetic "which colour dominates" images so its outputs are not uniform, exported to every format the
runtime reads. When `edgexfer.export.export` exists it is used (so the tests run against real export output);
until then, or with EDGEXFER_MAKE_BUNDLE=manual, the conversions below write the same bundle layout.

Every conversion runs in this process: call this script in a subprocess (the test fixture does), so the test
process itself never imports TensorFlow.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

LABELS = ["red", "green", "blue"]
SIZE = 32
SEED = 0


def sample_images(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [n, 32, 32, 3] noisy images whose dominant channel is the label."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(LABELS), n)
    x = rng.integers(0, 110, (n, SIZE, SIZE, 3)).astype(np.int32)
    x[np.arange(n), :, :, y] += rng.integers(60, 140, (n, 1, 1))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def build_keras_model():
    import keras

    keras.utils.set_random_seed(SEED)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    h = keras.layers.Rescaling(1.0 / 255)(inputs)
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", dtype="float32")(h)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x, y = sample_images(96)
    model.fit(x.astype("float32"), y, epochs=4, batch_size=32, verbose=0)
    return model


# -- manual conversions (until edgexfer.export exists) -------------------------------------------
def to_onnx(model, path: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="image"),)
    fn = tf.function(lambda x: model(x, training=False))
    tf2onnx.convert.from_function(fn, input_signature=spec, opset=17, output_path=str(path))


def to_tflite(model, path: Path, precision: str) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        calib, _ = sample_images(64, seed=1)

        def representative():
            for img in calib:
                yield [img[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())


def to_openvino(onnx_path: Path, xml_path: Path, fp16: bool) -> None:
    import openvino as ov

    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=fp16)


def tflite_quant(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    from edgexfer.manifest import QuantParams

    interp = Interpreter(model_path=str(path))

    def params(detail):
        scale, zero = detail["quantization"]
        return QuantParams(dtype=np.dtype(detail["dtype"]).name, scale=float(scale), zero_point=int(zero))

    return params(interp.get_input_details()[0]), params(interp.get_output_details()[0])


def build_manual(out: Path) -> Path:
    from edgexfer.manifest import Artifact, InputSpec, Manifest, describe_files

    out.mkdir(parents=True, exist_ok=True)
    model = build_keras_model()
    for sub in ("onnx", "tflite", "tflite-fp16", "tflite-int8", "openvino", "openvino-fp16"):
        (out / sub).mkdir(exist_ok=True)
    to_onnx(model, out / "onnx/model.onnx")
    to_tflite(model, out / "tflite/model.tflite", "fp32")
    to_tflite(model, out / "tflite-fp16/model.tflite", "fp16")
    to_tflite(model, out / "tflite-int8/model.tflite", "int8")
    to_openvino(out / "onnx/model.onnx", out / "openvino/model.xml", fp16=False)
    to_openvino(out / "onnx/model.onnx", out / "openvino-fp16/model.xml", fp16=True)

    table = [  # name, family, files, precision
        ("onnx", "onnx", ["onnx/model.onnx"], "fp32"),
        ("tflite", "tflite", ["tflite/model.tflite"], "fp32"),
        ("tflite-fp16", "tflite", ["tflite-fp16/model.tflite"], "fp16"),
        ("tflite-int8", "tflite", ["tflite-int8/model.tflite"], "int8"),
        ("openvino", "openvino", ["openvino/model.xml", "openvino/model.bin"], "fp32"),
        ("openvino-fp16", "openvino", ["openvino-fp16/model.xml", "openvino-fp16/model.bin"], "fp16"),
    ]
    manifest = Manifest(name="tiny-colours", labels=LABELS, input=InputSpec(SIZE, SIZE, 3),
                        preprocessing={"in_graph": "Rescaling(1/255)", "caller": "raw RGB 0..255, NHWC"},
                        provenance={"builder": "tests/runtime/make_bundle.py"})
    for name, family, files, precision in table:
        sums, size = describe_files(out, files)
        art = Artifact(name=name, format=family, files=files, precision=precision, sha256=sums,
                       size_bytes=size, status="passed")
        if name == "tflite-int8":
            art.input_quant, art.output_quant = tflite_quant(out / files[0])
        manifest.artifacts[name] = art
    manifest.save(out)
    return out


# -- through edgexfer.export (the lead switches to this once export exists) -----------------------
def build_with_export(out: Path, export) -> Path:
    """Write a run directory (model.keras + run.json over a small image folder) and export it like a user."""
    from PIL import Image

    from edgexfer.data import open_dataset
    from edgexfer.record import RunRecord

    run_dir = out.with_name(out.name + "-run")
    data_dir = out.with_name(out.name + "-data")
    x, y = sample_images(90, seed=3)
    for i, (img, label) in enumerate(zip(x, y)):
        (data_dir / LABELS[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(data_dir / LABELS[label] / f"{i:03d}.png")
    data = open_dataset(str(data_dir), seed=SEED).to_record()
    run_dir.mkdir(parents=True, exist_ok=True)
    build_keras_model().save(run_dir / "model.keras")
    RunRecord(labels=LABELS, input_shape=[SIZE, SIZE, 3],
              preprocessing={"in_graph": "Rescaling(1/255)", "caller": "raw RGB 0..255, NHWC"},
              backbone={"name": "tiny-conv", "weights": None, "trainable_layers": "all"},
              data=data, seed=SEED).save(run_dir)
    export(str(run_dir), str(out), allow_failures=True)
    return out


def build(out: str | Path) -> Path:
    """EDGEXFER_MAKE_BUNDLE: "auto" (default: edgexfer.export when importable, else manual; an export
    failure falls back to manual with a note on stderr), "export" (no fallback) or "manual"."""
    out = Path(out)
    mode = os.environ.get("EDGEXFER_MAKE_BUNDLE", "auto")
    if mode != "manual":
        try:
            from edgexfer.export import export
        except ImportError:
            if mode == "export":
                raise
        else:
            try:
                return build_with_export(out, export)
            except Exception as exc:  # noqa: BLE001 - auto mode: the runtime tests must not hinge on export
                if mode == "export":
                    raise
                print(f"make_bundle: edgexfer.export failed ({type(exc).__name__}: {exc}); "
                      "building the bundle manually", file=sys.stderr)
                import shutil

                shutil.rmtree(out, ignore_errors=True)
    return build_manual(out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/runtime/make_bundle.py OUT_DIR")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = build(sys.argv[1])
    print(json.dumps({"bundle": str(result)}))

"""Folder prediction: decode + predict a folder of 640x480 JPEGs with a 32 px model, side by side.

Contenders, alternating round by round on the same files and the same ONNX artifact (onnxruntime, CPU):
- `plain`: the loop people write: PIL open, convert("RGB"), resize to 32x32 bilinear, stack 32, session.run;
- `edgexfer-1-thread`: `Model.classify(paths)` in chunks of 32 (what `edgexfer predict DIR` does) with the
  decoding threads switched off: the JPEG draft decode alone;
- `edgexfer`: the same with the shared decoding threads (PIL releases the GIL while it decodes).
Throughput is images per second over the whole folder (decode + predict), the median of the rounds; the goal
is edgexfer >= 2.5x plain. Correctness: edgexfer's top-1 must equal the top-1 of the training-side decode
(`open_dataset(folder).arrays(...)`: same pixels), checked on every image; the plain loop's agreement with it
is reported too (it decodes differently: no draft, no EXIF/alpha rules). The load average before and after
is recorded: on a shared machine the numbers move with it.

    .venv/bin/python benchmarks/bench_folder.py [--bundle DIR] [--images 300] [--rounds 5]
    # writes benchmarks/results/folder.json; the bundle defaults to EDGEXFER_TEST_BUNDLE or .cache/test-bundle
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from _common import HERE, WORK, write_result

GOAL = 2.5
BATCH = 32
SIZE = (480, 640)  # H, W of every file
PHOTOS = ("astronaut", "coffee", "chelsea")  # scikit-image ships these: the class folders


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` 640x480 JPEGs (quality 90): random crops of the scikit-image photos resized to 640x480, in one
    class folder per photo (so `open_dataset` reads them as the training side would). Built once."""
    from PIL import Image
    from skimage import data

    paths = sorted(folder.rglob("*.jpg"))
    if len(paths) == n:
        return paths
    rng = np.random.default_rng(seed)
    photos = {name: getattr(data, name)() for name in PHOTOS}
    for i in range(n):
        name = PHOTOS[i % len(PHOTOS)]
        photo = photos[name]
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.5, 1.0)), int(w * rng.uniform(0.5, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((SIZE[1], SIZE[0]), Image.Resampling.BICUBIC)
        (folder / name).mkdir(parents=True, exist_ok=True)
        crop.save(folder / name / f"{i:04d}.jpg", "JPEG", quality=90)
    return sorted(folder.rglob("*.jpg"))


def plain_loop(onnx_path: Path) -> Callable[[list[Path]], np.ndarray]:
    """open -> convert RGB -> resize 32x32 -> stack -> session.run, BATCH images at a time."""
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(paths: list[Path]) -> np.ndarray:
        out = []
        for start in range(0, len(paths), BATCH):
            batch = [np.asarray(Image.open(p).convert("RGB").resize((32, 32), Image.Resampling.BILINEAR))
                     for p in paths[start:start + BATCH]]
            out.append(session.run(None, {name: np.stack(batch).astype(np.float32)})[0])
        return np.concatenate(out).argmax(axis=1)

    return run


def edgexfer_loop(model, threads: bool) -> Callable[[list[Path]], np.ndarray]:
    """Model.classify in chunks of BATCH, as `edgexfer predict DIR` runs; top-1 indices."""
    from edgexfer import imaging

    index = {label: i for i, label in enumerate(model.labels)}

    def run(paths: list[Path]) -> np.ndarray:
        saved = imaging.MAX_WORKERS
        imaging.MAX_WORKERS = saved if threads else 1
        try:
            tops = [top for s in range(0, len(paths), BATCH) for top in model.classify(paths[s:s + BATCH])]
        finally:
            imaging.MAX_WORKERS = saved
        return np.array([index[top[0][0]] for top in tops])

    return run


def training_side_top1(model, folder: Path, paths: list[Path]) -> np.ndarray:
    """Top-1 on the pixels `open_dataset(folder).arrays` gives (the training / evaluation decode), in `paths` order."""
    from edgexfer.data import open_dataset
    from edgexfer.data.splits import SPLITS

    ds = open_dataset(folder)
    pixels: dict[Path, np.ndarray] = {}
    for split in SPLITS:
        if ds.members(split):
            x, _ = ds.arrays(split, (model.input_spec.height, model.input_spec.width))
            pixels.update({folder / m: img for m, img in zip(ds.members(split), x)})
    return model.predict(np.stack([pixels[p] for p in paths])).argmax(axis=1)


def measure(contenders: dict[str, Callable], paths: list[Path], rounds: int) -> dict[str, dict]:
    """Every contender once per round, the order rotating; images/s per round and the median."""
    names, speeds, tops = list(contenders), {k: [] for k in contenders}, {}
    for r in range(rounds + 1):  # round 0 warms the page cache, the engines and the threads
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = time.perf_counter()
            tops[name] = contenders[name](paths)
            if r:
                speeds[name].append(len(paths) / (time.perf_counter() - started))
    return {k: {"images_per_s": statistics.median(v), "rounds": [round(s, 1) for s in v], "top1": tops[k]}
            for k, v in speeds.items()}


def main() -> None:
    from edgexfer import imaging
    from edgexfer.runtime import load

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = os.environ.get("EDGEXFER_TEST_BUNDLE") or str(HERE.parent / ".cache" / "test-bundle")
    p.add_argument("--bundle", default=default)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    folder = WORK / "folder_jpegs"
    paths = make_jpegs(folder, args.images)
    load_before = os.getloadavg()
    with load(args.bundle, format="onnx", backend="onnxruntime", device="cpu") as model:
        if model.input_spec.shape != (32, 32, 3):
            raise SystemExit(f"Expected a 32x32x3 model. Received: {model.input_spec.shape} ({args.bundle}).")
        contenders = {"plain": plain_loop(model.path), "edgexfer-1-thread": edgexfer_loop(model, threads=False),
                      "edgexfer": edgexfer_loop(model, threads=True)}
        rows = measure(contenders, paths, args.rounds)
        reference = training_side_top1(model, folder, paths)
    load_after = os.getloadavg()
    plain = rows["plain"]["images_per_s"]
    for name, row in rows.items():
        row["speedup_vs_plain"] = round(row["images_per_s"] / plain, 3)
        row["top1_equal_training_decode"] = float(np.mean(row.pop("top1") == reference))
        row["images_per_s"] = round(row["images_per_s"], 1)
    met = rows["edgexfer"]["speedup_vs_plain"] >= GOAL and rows["edgexfer"]["top1_equal_training_decode"] == 1.0
    path = write_result("folder", {
        "bundle": str(args.bundle), "artifact": "onnx", "backend": "onnxruntime", "images": len(paths),
        "image_size": list(SIZE), "jpeg_quality": 90, "batch": BATCH, "decode_workers": imaging.decode_workers(),
        "draft_gap": imaging.DRAFT_GAP, "cpus": os.cpu_count(), "loadavg_before": [round(v, 2) for v in load_before],
        "loadavg_after": [round(v, 2) for v in load_after], "rows": rows, "goal": {"speedup_vs_plain_min": GOAL},
        "goal_met": met})
    for name, row in rows.items():
        print(f"{name:>18}: {row['images_per_s']:8.1f} images/s  x{row['speedup_vs_plain']:.2f}  "
              f"top-1 = training decode on {row['top1_equal_training_decode']:.1%}  rounds {row['rounds']}")
    print(f"load average before {load_before}, after {load_after}; goal met: {met}; wrote {path}")


if __name__ == "__main__":
    main()

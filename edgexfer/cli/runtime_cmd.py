"""`edgexfer predict BUNDLE IMAGES...`: classify images with a bundle (no TensorFlow).

Only click and light edgexfer modules are imported here; the engine is imported by `load()`.

Output contract: results go to stdout (text: "PATH<TAB>LABEL<TAB>SCORE[<TAB>label:score ...]"; --json: one JSON
object per line and nothing else); everything meant for a person goes to stderr: a header line saying which
artifact, backend and device run and why `auto` chose them, a progress bar for large sets, and errors.

Per-file results: an image that cannot be read gets an error line (text: "Error: <reason naming the file>" on
stderr; --json: {"path", "error"} on stdout, in order) and the others are still classified. Exit status:
0 when every image was classified, 1 when any could not be (after all lines are written), 2 for a bad bundle,
option or missing path (one "Error:" line).
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgexfer.errors import UserError

_PROGRESS_MIN = 64  # show a progress bar from this many images (not with --json)


@click.command("predict")
@click.argument("bundle")
@click.argument("images", nargs=-1, required=True)
@click.option("--format", "format_", default=None, help="Artifact to run (onnx, tflite, tflite-int8, openvino...).")
@click.option("--backend", default="auto", show_default=True, help="onnxruntime, openvino, litert or auto.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, gpu, npu.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Engine threads.")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Labels per image.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--fallback", is_flag=True, help="Run on the CPU when the device cannot be used.")
@click.option("--allow-failed", is_flag=True,
              help="Also run an artifact whose parity check did not pass (its manifest status says so).")
@click.option("--max-pixels", type=click.IntRange(min=1), default=None,
              help="Largest image (width x height) decoded; default EDGEXFER_MAX_IMAGE_PIXELS or 64000000.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def predict(bundle: str, images: tuple[str, ...], format_: str | None, backend: str, device: str,
            threads: int | None, top_k: int, batch_size: int, fallback: bool, allow_failed: bool,
            max_pixels: int | None, as_json: bool) -> None:
    """Classify IMAGES (files or folders of images) with BUNDLE (a bundle folder, .zip or model file).

    An image that cannot be read gets an error line (stderr; with --json an {"path", "error"} line) and the
    rest are still classified. Exit status: 0 all classified, 1 some image failed, 2 bad bundle or arguments.
    """
    from edgexfer.runtime import load

    _quiet_pil_bomb_warning()
    paths = expand_images(images)
    with load(bundle, format=format_, backend=backend, device=device, threads=threads,
              fallback=fallback, allow_failed=allow_failed) as model:
        model.max_pixels = max_pixels
        click.echo(header(model, len(paths)), err=True)
        top_k = min(top_k, len(model.labels) or top_k)
        results = _classify_all(model, paths, top_k, batch_size, show_progress=not as_json)
    failed = 0
    for path, top in zip(paths, results):
        failed += not top
        _echo(path, top, as_json)
    if failed:
        click.echo(f"Error: {failed} of {len(paths)} images could not be classified.", err=True)
        click.get_current_context().exit(1)


#: Model.details["rule"] (edgexfer.runtime.select) -> why that artifact and backend were chosen
RULES: dict[str, str] = {
    "format=": "--format named it",
    "backend=": "the preferred artifact that --backend runs",
    "file": "the model file given",
    "tuning": "auto uses the fastest choice `edgexfer bench --tune` measured on this machine",
    "cuda": "auto runs ONNX on CUDA when onnxruntime lists the CUDA execution provider",
    "cpu (cuda unavailable)": "auto found CUDA listed but unusable, and applied the CPU rule",
    "openvino device": "auto runs an OpenVINO artifact on an OpenVINO device",
    "first runnable": "auto took the first passed artifact an installed backend runs",
}
_X86 = ("x86_64", "amd64", "i686", "i386")


def explain_rule(rule: str) -> str:
    """A person's words for the part of the selection rule that decided (see `edgexfer.runtime`)."""
    if rule in RULES:
        return RULES[rule]
    if rule.startswith("cpu "):
        machine = rule[4:]
        order = "onnx, openvino, tflite" if machine in _X86 else "tflite, onnx, openvino"
        return f"auto on an {machine} CPU takes the first passed of {order}"
    return rule or "not recorded"


def header(model, n_images: int) -> str:
    """One line on stderr before the results: what runs, where, and why."""
    threads = model.details.get("num_threads") or model.details.get("intra_op_threads")
    threads = f", {threads} threads" if isinstance(threads, int) else ""
    return (f"Classifying {n_images} image{'s' * (n_images != 1)} with {model.format} ({model.precision}) on "
            f"{model.backend}, device {model.device}{threads}. Why: {explain_rule(model.details.get('rule', ''))}.")


def _quiet_pil_bomb_warning() -> None:
    """The runtime refuses images over its own pixel limit from the header, with a clear error; PIL's
    DecompressionBombWarning for the same image would only add two lines of noise (this process is ours)."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def expand_images(items: tuple[str, ...]) -> list[Path]:
    """Files as given; folders expand (recursively) to their image files, sorted (the extensions and the
    hidden-file rule are the training scanner's: `imaging.is_image_name`)."""
    from edgexfer.imaging import IMAGE_SUFFIXES, is_image_name

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if is_image_name(f.name) and f.is_file())
            if not found:
                raise UserError(f"Expected image files ({', '.join(IMAGE_SUFFIXES)}) in {item}. Received: none.")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        else:
            raise UserError(f"Expected an image file or a folder of images. Received: {item} (not found).")
    return paths


def _classify_all(model, paths: list[Path], top_k: int, batch_size: int, show_progress: bool) -> list:
    """Every path's entry, chunk by chunk; from _PROGRESS_MIN images a step per chunk on stderr (a bar on a
    terminal, a line per chunk otherwise)."""
    from edgexfer.progress import Reporter, Tracker

    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    if not show_progress or len(paths) < _PROGRESS_MIN:
        return [top for chunk in chunks for top in model.classify(chunk, top_k=top_k)]
    results: list = []
    with Reporter("Classifying") as reporter:
        tracker = Tracker(reporter, total=len(chunks))
        for chunk in chunks:
            results.extend(model.classify(chunk, top_k=top_k))
            tracker.step(f"{len(results)} of {len(paths)} images")
    return results


def _echo(path: Path, top, as_json: bool) -> None:
    """One line per image: its result on stdout, or (an ImageFailure) its error."""
    if top:
        click.echo(_format_line(path, top, as_json))
    elif as_json:
        click.echo(json.dumps({"path": str(path), "error": top.error}))
    else:
        click.echo(f"Error: {top.error}", err=True)


def _format_line(path: Path, top: list[tuple[str, float]], as_json: bool) -> str:
    label, score = top[0]
    if as_json:
        return json.dumps({"path": str(path), "label": label, "score": round(score, 6),
                           "top_k": [{"label": lab, "score": round(s, 6)} for lab, s in top]})
    rest = "  ".join(f"{lab}:{s:.4f}" for lab, s in top[1:])
    return f"{path}\t{label}\t{score:.4f}" + (f"\t{rest}" if rest else "")

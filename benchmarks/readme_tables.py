"""Regenerate the README's result tables from benchmarks/results/*.json (never typed by hand).

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in README.md; NAME is a result
file. A missing result file leaves a line saying which script produces it.

    .venv/bin/python benchmarks/readme_tables.py [--check]
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
README = HERE.parent / "README.md"


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine") or doc["host"]
    gpus = ", ".join(g["name"] for g in m.get("gpus", [])) or "no GPU"
    feats = ", ".join(m.get("cpu_features", [])) or "-"
    return f"_Measured {doc['created'][:10]} on {m['cpu']}, {m['cores']} cores ({feats}), {gpus}._"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def _ok(flag: bool) -> str:
    return "yes" if flag else "**no**"


#: Result files measured before the demo became efficientnet_lite0 on builtin:textures call the digits model "demo".
DIGITS = "digits model (digits_mnv3s@32)"
_LEGACY_LABELS = {"demo (digits_mnv3s@32)": DIGITS}


def _label(name: str) -> str:
    return _LEGACY_LABELS.get(name, name)


def _load(doc: dict[str, Any]) -> str:
    """What else ran on the machine while a timing benchmark ran (benchmarks/_common.MachineLoad)."""
    if "load_average_1m" not in doc:
        return ""
    other = doc.get("other_cores")
    cores = (doc.get("machine") or {}).get("cores", "?")
    return (f" Load average (1 min) when it started: {doc['load_average_1m']:.2f}"
            + (f"; other processes used {other:.2f} of the {cores} cores on average while it ran." if other is not None
               else "."))


def _model(doc: dict[str, Any]) -> str:
    """One line naming the trained model a result was measured on (from its run summary)."""
    m = doc.get("run") or doc.get("model")
    if not isinstance(m, dict) or "image_size" not in m:
        return ""
    return (f"Model: `{m['backbone']}` ({m.get('weights')} weights) at {m['image_size']} px, trained on "
            f"{m['data']} ({m['train_images']} training, {m['val_images']} "
            f"validation, {m['test_images']} test images, {len(m.get('classes') or [])} classes).\n\n")


def formats(doc):
    cells = [c for c in doc["cells"] if c["status"] == "ok"]
    keys = sorted({(c["artifact"], c["backend"], c["mode"]) for c in cells}, key=lambda k: (k[0], k[1], k[2]))
    rows = []
    for art, backend, mode in keys:
        by_batch = {c["batch_size"]: c for c in cells if (c["artifact"], c["backend"], c["mode"]) == (art, backend, mode)}
        b1, big = by_batch.get(1), by_batch[max(by_batch)]
        acc = next((c["accuracy"] for c in by_batch.values() if c.get("accuracy") is not None), None)
        rows.append([art, backend, mode, f"{b1['latency']['p50_ms']:.3f}" if b1 else "-",
                     f"{big['throughput_ips']:.0f} (b{big['batch_size']})", f"{big['size_bytes'] / 1e6:.2f}",
                     f"{big['peak_rss_mb']:.0f}", f"{100 * acc:.1f}%" if acc is not None else "-"])
    table = _table(["artifact", "backend", "mode", "p50 ms (batch 1)", "images/s", "size MB", "peak RSS MB",
                    "test accuracy"], rows)
    goal = doc.get("goal")
    if goal:
        p50 = f"{goal['p50_ms']:.2f} ms" if goal.get("p50_ms") is not None else "not measured"
        table += (f"\n\nGoal: {goal['artifact']} on {goal['backend']}, batch {goal['batch_size']}, p50 <= "
                  f"{goal['p50_ms_max']:g} ms: {p50}, {_ok(goal['met'])}.{_load(doc)}")
    return _model(doc) + table


def train_cache(doc):
    rows = []
    for r in doc["rows"]:
        c, t, f = r["cached"], r["through_backbone"], r["feature_pass"]
        rows.append([f"{r['data']} @ {r['image_size']} px, `{r['backbone']}`",
                     f"{f['first_pass_images_per_s']:.0f} / {f['steady_images_per_s']:.0f} ({f['images']} images)",
                     f"{c['seconds']:.1f}", f"{t['seconds']:.1f} ({r['epochs']} epochs)", f"{r['speedup']:.1f}x",
                     f"{100 * c['test_accuracy']:.1f}% / {100 * t['test_accuracy']:.1f}%", _ok(r["goal_met"])])
    goal = doc["goal"]
    return _table(["data, backbone", "feature pass images/s (first / steady)", "stage 1 cached s",
                   "stage 1 through backbone s", "speed-up", "test accuracy cached / through",
                   f">= {goal['speedup_min']:.0f}x, accuracy at most {goal['accuracy_loss_max_points']} pt lower"],
                  rows) + ("\n\n" + _load(doc).strip() if _load(doc) else "")


def overhead(doc):
    def noise(r):  # over the goal by less than two identical engines differ in the same run
        aa = r.get("aa_ratio")
        return " (within A/A noise)" if not r["goal_met"] and aa and r["ratio"] - r["goal"] <= abs(1 - aa) else ""

    def spread(r):
        blocks = r.get("block_ratios")
        return f" ({min(blocks):.2f}-{max(blocks):.2f})" if blocks else ""

    rows = [[_label(r.get("model", DIGITS)), r["artifact"], r["backend"], r["batch"], f"{r['raw_ms']:.4f}",
             f"{r['runtime_ms']:.4f}", f"{r['ratio']:.3f}{spread(r)}",
             f"{r['aa_ratio']:.3f}" if "aa_ratio" in r else "",
             f"{1e3 * r['wrapper_ms']:.1f}" if "wrapper_ms" in r else "",
             f"<= {r['goal']}: {_ok(r['goal_met'])}{noise(r)}"] for r in doc["rows"]]
    return _table(["model", "artifact", "backend", "batch", "engine ms", "edgexfer ms", "ratio (blocks)",
                   "A/A", "wrapper us", "goal"], rows)


def cold_start(doc):
    rows = [[r["artifact"], r["backend"], f"{r['import_s']:.3f}", f"{r['load_s']:.3f}",
             f"{1e3 * r['first_predict_s']:.1f}", f"{r['total_s']:.3f}", f"{r['peak_rss_mb']:.0f}",
             "no" if not r["tensorflow_imported"] else "**yes**"] for r in doc["rows"]]
    return f"Bundle: the {_label(doc.get('model', DIGITS))}.\n\n" + _table(
        ["artifact", "backend", "import s", "load s", "first predict ms", "total s", "peak RSS MB",
         "TensorFlow imported"], rows) + f"\n\nGoal (onnxruntime <= 0.5 s, <= 150 MB): {_ok(doc['goal_met'])}."


def keras_vs_runtime(doc):
    rows = [[r["artifact"], r["backend"], f"{r['p50_ms']:.4f}", f"{r['speedup']:.0f}x"] for r in doc["rows"]]
    return (f"Model: the {_label(doc.get('model', DIGITS))}. Keras `model.predict`, batch 1: "
            f"{doc['keras_predict_ms']:.1f} ms.\n\n"
            + _table(["artifact", "backend", "p50 ms (batch 1)", "faster than Keras predict"], rows)
            + f"\n\nGoal (>= 50x): {_ok(doc['goal_met'])}.")


def auto_vs_best(doc):
    rows = [[_label(r["model"]), r["batch"], f"{r['best']['artifact']} / {r['best']['backend']} / {r['best']['mode']}",
             f"{r['best']['throughput_ips']:.0f}", f"{r['auto']['artifact']} / {r['auto']['backend']}",
             f"{(r['auto']['throughput_ips'] or 0):.0f}", f"{r['ratio']:.2f}",
             "yes" if r.get("same_choice") else "no", _ok(r["goal_met"])] for r in doc["rows"]]
    return _table(["model", "batch", "best cell", "best img/s", "auto picked", "auto img/s", "ratio",
                   "same artifact + backend", f">= {doc['goal_ratio_min']} or same"], rows)


def export(doc):
    runs = sorted(doc["runs"], key=lambda r: r["parallel"])
    summary = _table(["conversions at once", "all artifacts + parity s", "peak RSS, all processes MB",
                      "largest process MB"],
                     [[r["parallel"], f"{r['seconds']:.1f}", f"{r['peak_tree_rss_mb']:.0f}",
                       f"{r['largest_child_rss_mb']:.0f}"] for r in runs])
    best = min(runs, key=lambda r: r["seconds"])
    rows = []
    for name, a in best["artifacts"].items():
        m = a.get("metrics", {})
        rows.append([name, a["status"], f"{m.get('max_abs_diff', float('nan')):.1e}", f"{m.get('cosine', 0):.6f}",
                     f"{m.get('agreement', 0):.2f}%", f"{m.get('accuracy', 0):.2f}%", f"{m.get('accuracy_drop', 0):+.2f}",
                     f"{a['size_bytes'] / 1e6:.2f}", a.get("rung") or "-"])
    parity = _table(["artifact", "parity", "max abs diff", "cosine", "top-1 agreement", "accuracy",
                     "drop (pt)", "size MB", "int8 ladder step"], rows)
    ref = best.get("reference", {})
    return (_model(doc) + summary + f"\n\nGoal <= {doc['goal']['seconds']:.0f} s and <= {doc['goal']['peak_rss_mb']:.0f} MB"
            f" with the default {doc.get('default_parallel', '?')} conversions at once: {_ok(doc['met'])}.{_load(doc)} "
            f"Parity on the {ref.get('n', '?')} held-out test images (Keras float32 accuracy "
            f"{ref.get('accuracy', 0):.2f}%):\n\n" + parity)


TRANSFER_COLUMNS = ("frozen", "frozen+adabn", "adabn+stage2", "scratch", "raw_pixels")


def transfer(doc):
    """Mean (std) test accuracy over seeds per target and k; best per row in bold; source-only rows below."""
    rows = []
    for domain in dict.fromkeys(r["domain"] for r in doc["rows"]):
        for k in dict.fromkeys(r["k"] for r in doc["rows"] if r["domain"] == domain):
            got = {r["method"]: r for r in doc["rows"] if (r["domain"], r["k"]) == (domain, k)}
            if k == "none":
                rows.append([domain, "0 (source only)", *[f"{100 * got[m]['mean']:.1f}" + (" (AdaBN)" if "adabn" in m
                             else "") for m in got], *[""] * (len(TRANSFER_COLUMNS) - len(got))])
                continue
            best = max((got[m]["mean"] for m in TRANSFER_COLUMNS if m in got), default=None)
            cells = []
            for m in TRANSFER_COLUMNS:
                if m not in got:
                    cells.append("-")
                    continue
                text = f"{100 * got[m]['mean']:.1f} ± {100 * got[m]['std']:.1f}"
                cells.append(f"**{text}**" if got[m]["mean"] == best else text)
            rows.append([domain, k, *cells])
    return _table(["target", "labels per class", *TRANSFER_COLUMNS], rows) + "\n\n" + _transfer_goals(doc["goals"])


def _transfer_goals(goals: dict) -> str:
    lines = []
    if "mnist_m_k10" in goals:
        g = goals["mnist_m_k10"]
        lines.append(f"- mnist_m, 10 labels per class: best transfer ({g['best']}) {100 * g['accuracy']:.1f}%, "
                     f"{g['margin_pts']:.1f} points above the better of scratch and raw pixels "
                     f"(goal >= {g['goal_pts']:.0f}): {_ok(g['met'])}.")
    if "mnist_m_all" in goals:
        g = goals["mnist_m_all"]
        lines.append(f"- mnist_m, all labels: best transfer ({g['best']}) {100 * g['accuracy']:.1f}% "
                     f"(goal >= {100 * g['goal']:.0f}%): {_ok(g['met'])}.")
    if "int8" in goals:
        g = goals["int8"]
        lines.append(f"- Full-int8 TFLite of that model (seed 0, exported with parity): float {100 * g['tflite']:.1f}%, "
                     f"int8 {100 * g['tflite-int8']:.1f}%, drop {g['drop_pts']:.1f} points "
                     f"(goal <= {g['goal_pts']:.0f}): {_ok(g['met'])}.")
    return "\n".join(lines)


PHOTO_COLUMNS = {"efficientnet_lite0": "efficientnet_lite0 (default)", "digits_mnv3s@32": "digits_mnv3s@32",
                 "digits_mnv3s@224": "digits_mnv3s@224", "scratch": "scratch", "raw_pixels": "raw pixels"}


def transfer_photos(doc):
    """Mean (std) test accuracy per k and method on builtin:textures; goals; the exported artifacts."""
    st = doc["settings"]
    rows = []
    for k in dict.fromkeys(r["k"] for r in doc["rows"]):
        got = {r["method"]: r for r in doc["rows"] if r["k"] == k}
        best = max(r["mean"] for r in got.values())
        cells = [("**{}**" if m in got and got[m]["mean"] == best else "{}").format(
                 f"{100 * got[m]['mean']:.1f} ± {100 * got[m]['std']:.1f}") if m in got else "-" for m in PHOTO_COLUMNS]
        rows.append([k, got[next(iter(got))]["train_images"], *cells])
    sc = st["scratch"]
    note = (f"{len(st['seeds'])} seeds, no validation split, test split: the builtin's fixed "
            f"{doc['cells'][0]['test_images']} images. scratch: the {sc['architecture']} architecture from random "
            f"weights, every layer trained at {sc['image_size']} px for {sc['steps']} Adam steps of batch "
            f"{sc['batch']} (learning rate {sc['learning_rate']:g}, cosine decay). raw pixels: logistic regression on "
            f"standardised {st['raw_pixels_size']} px pixels.")
    out = _table(["labels per class", "training images", *PHOTO_COLUMNS.values()], rows) + "\n\n" + note
    return out + "\n\n" + _photo_goals(doc["goals"]) + _photo_export(doc.get("export"))


def _photo_goals(goals: dict) -> str:
    lines = []
    if "k10" in goals:
        g = goals["k10"]
        margins = ", ".join(f"{v:+.1f} points over {PHOTO_COLUMNS[m]}" for m, v in g["margins_pts"].items())
        lines.append(f"- 10 labels per class: the default backbone {100 * g['accuracy']:.1f}% (goal >= "
                     f"{100 * g['min_accuracy']:.0f}%: {_ok(g['accuracy_met'])}), {margins} (goal >= "
                     f"{g['goal_margin_pts']:.0f} over both: {_ok(g['margins_met'])}).")
    if "int8" in goals:
        parts = [f"{name} drop {g['drop_pts']:+.2f} points (95% CI {g['drop_ci_pts'][0]:+.1f} to "
                 f"{g['drop_ci_pts'][1]:+.1f}), parity {'passed' if g['passed'] else '**failed**'}"
                 for name, g in goals["int8"].items()]
        lines.append(f"- int8 artifacts of the exported model: {'; '.join(parts)} (goal: both pass): "
                     f"{_ok(goals['int8_met'])}.")
    return "\n".join(lines)


def _photo_export(exp: dict | None) -> str:
    if not exp:
        return ""
    rows = [[name, a["status"], f"{a['accuracy']:.1f}%" if a.get("accuracy") is not None else "-",
             f"{a['accuracy_drop']:+.2f}" if a.get("accuracy_drop") is not None else "-",
             f"{a['size_bytes'] / 1e6:.2f}"] for name, a in exp["artifacts"].items()]
    return (f"\n\nExported: `efficientnet_lite0`, {exp['k']} labels per class, seed {exp['seed']}, trained with the "
            f"default validation split ({exp['val_images']} images; export needs one), float32 test accuracy "
            f"{100 * exp['test_accuracy']:.1f}%; every format, parity on the test split:\n\n"
            + _table(["artifact", "parity", "test accuracy", "drop (pt)", "size MB"], rows))


def demo(doc):
    rows = [[s["step"], f"`edgexfer {s['command']}`", f"{s['seconds']:.1f}"] for s in doc["steps"]]
    rows.append(["**total**", "", f"**{doc['total_seconds']:.1f}**"])
    cache = "a fresh edgexfer cache (the weights conversion included)" if doc.get("fresh_cache") else "a warm cache"
    return (_table(["step", "command", "wall s"], rows)
            + f"\n\nWith {cache}. Goal <= {doc['goal']['seconds'] / 60:.0f} minutes: {_ok(doc['goal_met'])}."
            + _load(doc))


def multiworker(doc):
    """Per seed: test accuracy of one process vs two workers, for the kept model and stage 2's last epoch."""
    rows = []
    for c in doc["comparisons"]:
        one, two = c["runs"]["one"]["chief"], c["runs"]["two_workers"]["chief"]
        rows.append([c["seed"], f"{100 * one['test_accuracy']:.2f}%", f"{100 * two['test_accuracy']:.2f}%",
                     f"{c['test_accuracy_gap_points']:+.2f}", f"{100 * one['last_epoch_test_accuracy']:.2f}%",
                     f"{100 * two['last_epoch_test_accuracy']:.2f}%", f"{c['last_epoch_test_accuracy_gap_points']:+.2f}",
                     _ok(c["runs"]["two_workers"]["workers_agree"])])
    v, goal = doc["verdict"], doc["goal"]["accuracy_gap_max_points"]
    means = "; ".join(f"{label}: one {100 * v[k]['mean']['one']:.2f}%, two workers {100 * v[k]['mean']['two_workers']:.2f}%, "
                      f"gap {v[k]['mean_gap_points']:+.2f} pts ({_ok(v[k]['within_goal'])})"
                      for k, label in (("test_accuracy", "kept model"), ("last_epoch_test_accuracy", "last epoch")))
    header = ["seed", "kept model: one process", "two workers", "gap pts", "last epoch: one process",
              "two workers", "gap pts", "workers agree"]
    return (f"`{doc['backbone']}` on {doc['data']}, stage 2: {doc['settings']['fine_tune_epochs']} epochs, "
            f"top {doc['settings']['fine_tune_layers']} layers. The kept model is the best on validation.\n\n"
            + _table(header, rows) + f"\n\nMean over seeds (goal |gap| <= {goal:g} pts): {means}.{_load(doc)}")


def arm64_check(doc):
    rows = [[name, f"{r['max_abs_diff']:.2e}", f"{r['tolerance']:.2e}" + (" (1 step)" if r.get("max_diff_in_steps") else ""),
             f"{r['top1_agreement_pct']:.1f}%", f"{r['accuracy_x86_pct']:.2f}% / {r['accuracy_arm64_pct']:.2f}%",
             _ok(r["passed"])] for name, r in doc["results"].items()]
    inside = doc.get("emulated", {})
    where = ", ".join(f"{k} {v}" for k, v in inside.get("versions", {}).items()) if isinstance(inside, dict) else ""
    return (f"{doc['images']} held-out images, aarch64 under qemu-user ({doc['what']})"
            + (f"; inside: {where}" if where else "") + ".\n\n"
            + _table(["artifact", "max abs diff vs x86", "allowed", "top-1 agreement", "accuracy x86 / arm64",
                      "passed"], rows))


RENDERERS: dict[str, tuple[Callable[[dict], str], str]] = {
    "arm64_check": (arm64_check, "make arm64-check"),
    "formats": (formats, "benchmarks/bench_formats.py"),
    "transfer": (transfer, "benchmarks/bench_transfer.py"),
    "transfer_photos": (transfer_photos, "benchmarks/bench_photos.py"),
    "demo": (demo, "benchmarks/bench_demo.py"),
    "train_cache": (train_cache, "benchmarks/bench_train_cache.py"),
    "multiworker": (multiworker, "benchmarks/bench_multiworker.py"),
    "export": (export, "benchmarks/bench_export.py"),
    "overhead": (overhead, "benchmarks/bench_overhead.py"),
    "cold_start": (cold_start, "benchmarks/bench_cold_start.py"),
    "keras_vs_runtime": (keras_vs_runtime, "benchmarks/bench_keras_vs_runtime.py"),
    "auto_vs_best": (auto_vs_best, "benchmarks/bench_auto.py"),
}


def render(name: str) -> str:
    fn, script = RENDERERS[name]
    path = HERE / "results" / f"{name}.json"
    if not path.exists():
        return f"_Not measured yet: run `{script}`._"
    doc = json.loads(path.read_text())
    try:
        return fn(doc) + "\n\n" + _machine(doc) + f" Source: `benchmarks/results/{name}.json` from `{script}`."
    except (KeyError, TypeError, ValueError) as exc:
        return f"_Result file {path.name} could not be rendered ({type(exc).__name__}: {exc}); re-run `{script}`._"


def update(text: str) -> str:
    def repl(match: re.Match) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            return match.group(0)
        return f"<!-- table:{name} -->\n{render(name)}\n<!-- /table:{name} -->"

    return re.sub(r"<!-- table:(\w+) -->.*?<!-- /table:\1 -->", repl, text, flags=re.S)


def main(argv: list[str]) -> int:
    text = README.read_text()
    new = update(text)
    if "--check" in argv:
        if new != text:
            print("README.md tables are out of date: run benchmarks/readme_tables.py")
            return 1
        return 0
    README.write_text(new)
    print("README.md tables updated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

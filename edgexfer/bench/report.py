"""Write a sweep's results as JSON, CSV, Markdown and PNG plots; merge results from several machines."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgexfer.bench.stats import NOISY_CV, NOISY_TAIL
from edgexfer.bench.sweep import RESULTS_SCHEMA_VERSION
from edgexfer.errors import UserError

#: (header, function of a cell) for the tables; the CSV holds these plus every raw field.
COLUMNS: list[tuple[str, Any]] = [
    ("artifact", lambda c: c["artifact"] + (f"+{c['variant']}" if c.get("variant") else "")),
    ("backend", lambda c: c["backend"]),
    ("device", lambda c: c.get("device_used", c["device"])),
    ("mode", lambda c: c["mode"]),
    ("batch", lambda c: c["batch_size"]),
    ("threads", lambda c: c["threads"]),
    ("p50 ms", lambda c: _f(c, "latency", "p50_ms")),
    ("p90 ms", lambda c: _f(c, "latency", "p90_ms")),
    ("p99 ms", lambda c: _f(c, "latency", "p99_ms")),
    ("img/s", lambda c: f"{c['throughput_ips']:.0f}" if c.get("status") == "ok" else "-"),
    ("load s", lambda c: f"{c['load_s']:.3f}" if c.get("status") == "ok" else "-"),
    ("first ms", lambda c: f"{c['first_inference_s'] * 1e3:.1f}" if c.get("status") == "ok" else "-"),
    ("peak MB", lambda c: f"{c['peak_rss_mb']:.0f}" if c.get("status") == "ok" else "-"),
    ("size MB", lambda c: f"{c['size_bytes'] / 1e6:.2f}" if c.get("size_bytes") else "-"),
    ("accuracy", lambda c: f"{100 * c['accuracy']:.1f}%" if c.get("accuracy") is not None else "-"),
    ("note", lambda c: _note(c)),
]


def _f(cell: dict, group: str, key: str) -> str:
    if cell.get("status") != "ok":
        return "-"
    value = cell[group][key]
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _note(cell: dict) -> str:
    if cell.get("status") != "ok":
        return "ERROR: " + cell.get("error", "")[:80]
    return "noisy" if cell["latency"]["noisy"] else ""


def explain(results: dict[str, Any]) -> list[str]:
    """One line per artifact the sweep skipped (with why), and one line saying what "noisy" means and what
    to do about it when any cell is noisy: printed under the table and written into results.md."""
    skipped = results.get("skipped", [])
    lines = [f"skipped {s.get('_hardware_short', '')}{s['artifact']}: {s['reason']}" for s in skipped]
    ok = [c for c in results["cells"] if c.get("status") == "ok"]
    noisy = sum(bool(c["latency"].get("noisy")) for c in ok)
    if noisy:
        lines.append(f"noisy ({noisy} of {len(ok)} cells): the timed runs spread too widely to trust the median "
                     f"(std/mean > {NOISY_CV:.2f} or p99/p50 > {NOISY_TAIL:g}); re-run on a quiet machine (nothing "
                     "else running, on mains power) with more --runs and --seconds, or fewer --threads than cores.")
    return lines


def machine_label(machine: dict[str, Any]) -> str:
    gpus = ", ".join(g["name"] for g in machine.get("gpus", []))
    return f"{machine['cpu']} ({machine['cores']} cores{', ' + gpus if gpus else ''})"


def rows(results: dict[str, Any], hardware: bool = False) -> tuple[list[str], list[list[str]]]:
    header = (["hardware"] if hardware else []) + [name for name, _ in COLUMNS]
    body = []
    for cell in results["cells"]:
        prefix = [cell.get("_hardware", machine_label(results["machine"]))] if hardware else []
        body.append(prefix + [str(fn(cell)) for _, fn in COLUMNS])
    return header, body


def markdown(results: dict[str, Any], hardware: bool = False) -> str:
    header, body = rows(results, hardware)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def text_table(results: dict[str, Any], hardware: bool = False) -> str:
    header, body = rows(results, hardware)
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in body])


def write_csv(results: dict[str, Any], path: Path) -> None:
    flat = []
    for cell in results["cells"]:
        row = {k: v for k, v in cell.items() if not isinstance(v, dict)}
        row.update({f"latency_{k}": v for k, v in (cell.get("latency") or {}).items()})
        row["machine"] = cell.get("_hardware", machine_label(results["machine"]))
        flat.append(row)
    keys = sorted({k for row in flat for k in row})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(flat)


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """latency.png (p50 against batch size per artifact/backend/mode) and throughput.png (bars)."""
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in results["cells"] if c.get("status") == "ok"]
    if not ok:
        return []
    series: dict[str, list[tuple[int, float]]] = {}
    for cell in ok:
        label = f"{cell.get('_hardware_short', '')}{COLUMNS[0][1](cell)} / {cell['backend']} / {cell['mode']}"
        series.setdefault(label, []).append((cell["batch_size"], cell["latency"]["p50_ms"]))
    fig, ax = plt.subplots(figsize=(9, 5))
    for i, (label, points) in enumerate(sorted(series.items())):
        xs, ys = zip(*sorted(points))  # the colour cycle has 10 entries: change the line style after it
        ax.plot(xs, ys, marker="os^D"[i // 10 % 4], linestyle=("-", "--", ":", "-.")[i // 10 % 4], label=label)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="p50 latency (ms)", title="Latency by batch size")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [out_dir / "latency.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    paths.append(_throughput_plot(ok, out_dir / "throughput.png", plt))
    return paths


def _throughput_plot(ok: list[dict], path: Path, plt) -> Path:
    biggest = max(c["batch_size"] for c in ok)
    cells = sorted((c for c in ok if c["batch_size"] == biggest), key=lambda c: c["throughput_ips"])
    labels = [f"{c.get('_hardware_short', '')}{COLUMNS[0][1](c)} / {c['backend']} / {c['mode']}" for c in cells]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(cells) + 1.5))
    ax.barh(labels, [c["throughput_ips"] for c in cells])
    ax.set(xlabel="images / s", title=f"Throughput at batch {biggest}")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results: dict[str, Any], out_dir: str | Path, hardware: bool = False) -> dict[str, Path]:
    """results.json, results.csv, results.md and the plots, in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    write_csv(results, paths["csv"])
    title = f"# Benchmark: {results['model']}\n\n"
    machines = results.get("machines") or [results["machine"]]
    header = title + "\n".join(f"- machine: {machine_label(m)}, {m['os']}, Python {m['python']}" for m in machines)
    notes = "".join(f"\n- {line}" for line in explain(results))
    paths["md"].write_text(header + "\n\n" + markdown(results, hardware) + "\n" + (notes + "\n" if notes else ""))
    for i, p in enumerate(plot(results, out)):
        paths[f"plot{i}"] = p
    return paths


def load_results(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise UserError(f"Expected a results.json from `edgexfer bench`. Received: {path} (not found).")
    raw = json.loads(path.read_text())
    if raw.get("kind") != "bench" or raw.get("schema_version", 99) > RESULTS_SCHEMA_VERSION:
        raise UserError(f"Expected a bench results file with schema_version <= {RESULTS_SCHEMA_VERSION}. "
                        f"Received: {path} (kind={raw.get('kind')!r}, schema_version={raw.get('schema_version')!r}).")
    return raw


def compare(paths: list[str | Path]) -> dict[str, Any]:
    """Merge results from several machines (or runs) into one document with hardware as a column."""
    if len(paths) < 1:
        raise UserError("Expected at least one results file to compare. Received: none.")
    docs = [load_results(p) for p in paths]
    cells, skipped = [], []
    for i, doc in enumerate(docs):
        label = machine_label(doc["machine"])
        for cell in doc["cells"]:
            cells.append({**cell, "_hardware": label, "_hardware_short": f"[{i + 1}] ", "model": doc["model"]})
        skipped += [{**s, "_hardware_short": f"[{i + 1}] "} for s in doc.get("skipped", [])]
    models = sorted({d["model"] for d in docs})
    return {"schema_version": RESULTS_SCHEMA_VERSION, "kind": "bench", "model": " + ".join(models),
            "machine": docs[0]["machine"], "machines": [d["machine"] for d in docs],
            "sources": [str(p) for p in paths], "cells": cells, "skipped": skipped}

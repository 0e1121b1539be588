"""ONE parity comparator for every artifact (export, `info --verify`, the benchmark accuracy column).

Input: the reference probabilities (the float32 Keras model on real held-out images), the
artifact's probabilities on the same images, and the true labels. Output: a ParityResult that is
truthy when the artifact passes its gate and carries every statistic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgexfer.errors import UserError
from edgexfer.export.formats import Gate

#: (metric, gate field, "max" when the metric must stay at or below the threshold)
_CHECKS = (
    ("max_abs_diff", "max_abs_diff", "max"),
    ("cosine", "min_cosine", "min"),
    ("agreement", "min_agreement", "min"),
    ("accuracy_drop", "max_acc_drop", "max"),
)


@dataclass
class ParityResult:
    """Statistics of one artifact against the reference, its gate, and the verdict."""

    metrics: dict[str, float]
    gate: dict[str, float]
    passed: bool
    failures: list[str] = field(default_factory=list)  # human-readable reasons, empty on pass
    tried: list[dict[str, Any]] = field(default_factory=list)  # int8 fallback ladder, when walked

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        out = {"passed": self.passed, "metrics": self.metrics, "gate": self.gate, "failures": self.failures}
        if self.tried:
            out["tried"] = self.tried
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "ParityResult":
        return cls(dict(raw.get("metrics", {})), dict(raw.get("gate", {})), bool(raw.get("passed")),
                   list(raw.get("failures", [])), list(raw.get("tried", [])))


def parity_metrics(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """max/mean |diff|, mean row cosine, top-1 agreement (%), accuracies (%) and the drop (points)."""
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if ref.shape != out.shape or ref.ndim != 2 or len(labels) != len(ref) or len(ref) == 0:
        raise UserError(
            f"Expected reference and artifact probabilities of one shape [N, classes] and N labels. "
            f"Received: {ref.shape}, {out.shape} and {labels.shape}."
        )
    diff = np.abs(ref - out)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = np.sum(ref * out, axis=1) / np.maximum(norms, 1e-12)
    ref_top, out_top = ref.argmax(1), out.argmax(1)
    ref_acc, acc = 100.0 * np.mean(ref_top == labels), 100.0 * np.mean(out_top == labels)
    return {
        "n": int(len(ref)),
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cosine": float(cosine.mean()),
        "agreement": float(100.0 * np.mean(ref_top == out_top)),
        "accuracy": float(acc),
        "reference_accuracy": float(ref_acc),
        "accuracy_drop": float(ref_acc - acc),
    }


def check_gate(metrics: dict[str, float], gate: Gate) -> list[str]:
    """The reasons the metrics miss the gate (empty when they pass). NaN always fails."""
    failures = []
    for metric, key, kind in _CHECKS:
        limit = getattr(gate, key)
        if limit is None:
            continue
        value = metrics[metric]
        ok = value <= limit if kind == "max" else value >= limit
        if not ok:  # also catches NaN, for which every comparison is False
            sign = "<=" if kind == "max" else ">="
            failures.append(f"{metric} {value:.6g} (gate {sign} {limit:g})")
    return failures


def compare(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, gate: Gate) -> ParityResult:
    """Compare an artifact's probabilities with the reference on the same images, against `gate`."""
    metrics = parity_metrics(reference, probs, labels)
    failures = check_gate(metrics, gate)
    return ParityResult(metrics=metrics, gate=gate.to_dict(), passed=not failures, failures=failures)


# -- reports ----------------------------------------------------------------------------------------
_COLUMNS = ("artifact", "status", "max|diff|", "mean|diff|", "cosine", "agree%", "acc%", "keras%", "drop",
            "size")


def table_rows(results: dict[str, ParityResult], sizes: dict[str, int] | None = None) -> list[list[str]]:
    sizes = sizes or {}
    rows = []
    for name, res in results.items():
        m = res.metrics
        size = sizes.get(name)
        rows.append([
            name, "PASS" if res else "FAIL",
            f"{m.get('max_abs_diff', float('nan')):.2e}", f"{m.get('mean_abs_diff', float('nan')):.2e}",
            f"{m.get('cosine', float('nan')):.6f}", f"{m.get('agreement', float('nan')):.2f}",
            f"{m.get('accuracy', float('nan')):.2f}", f"{m.get('reference_accuracy', float('nan')):.2f}",
            f"{m.get('accuracy_drop', float('nan')):+.2f}", _human(size) if size is not None else "-",
        ])
    return rows


def format_table(results: dict[str, ParityResult], sizes: dict[str, int] | None = None) -> str:
    """A fixed-width terminal table, one row per artifact, failures listed underneath."""
    rows = [list(_COLUMNS)] + table_rows(results, sizes)
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{n}: {'; '.join(r.failures)}" for n, r in results.items() if r.failures]
    return "\n".join(lines)


def format_markdown(results: dict[str, ParityResult], sizes: dict[str, int] | None = None,
                    n: int | None = None) -> str:
    """parity.md: the same table in Markdown, the gates, failures and the int8 ladder."""
    head = "| " + " | ".join(c.replace("|", "\\|") for c in _COLUMNS) + " |\n|" + "---|" * len(_COLUMNS) + "\n"
    body = "".join("| " + " | ".join(r) + " |\n" for r in table_rows(results, sizes))
    parts = ["# Parity report\n\n", f"Reference: the float32 Keras model on {n or '?'} held-out test images.\n\n",
             head + body, "\n## Gates\n\n"]
    parts += [f"- {name}: {res.gate} — {'passed' if res else 'FAILED: ' + '; '.join(res.failures)}\n"
              for name, res in results.items()]
    for name, res in results.items():
        if res.tried:
            parts.append(f"\n## {name}: int8 fallback ladder\n\n")
            parts += [f"- {t.get('rung')}: {t.get('status')} {t.get('summary', '')}\n" for t in res.tried]
    return "".join(parts)


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)

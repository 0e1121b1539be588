"""The parity record and its ONE comparator: shared by export (writes it), the runtime (refuses a failed
artifact with its reason), bench (the accuracy column), `edgexfer info` and the ARM64 check.

TF-free (numpy and the standard library): the runtime on a device reads the same record export wrote.

Input: the reference probabilities (the float32 Keras model on real held-out images), the artifact's
probabilities on the same images, and the true labels. Output: a `ParityResult` that is truthy when the
artifact passes its `Gate`, carries every statistic and every `Check` with its reason, and is stored in
the manifest (`Artifact.parity`) and parity.json through `to_dict` / `from_dict` (the wire format).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from edgexfer.errors import UserError


@dataclass(frozen=True)
class Gate:
    """Parity thresholds; a None threshold is not checked. Percentages and points are 0..100."""

    max_abs_diff: float | None = None  # max |p_artifact - p_keras| over all probabilities
    min_cosine: float | None = None  # mean row-wise cosine similarity of the probability vectors
    min_agreement: float | None = None  # top-1 agreement with Keras, percent
    max_acc_drop: float | None = None  # Keras accuracy minus artifact accuracy, points
    #: A top-1 flip where the reference's own probabilities of the two classes differ by less than this
    #: is a near tie (any change of precision may round it either way) and is not counted as a disagreement.
    tie_margin: float = 0.0
    #: Confidence of the interval every statistical check is decided on (see edgexfer.parity).
    confidence: float = 0.95

    def override(self, changes: dict[str, Any] | None) -> "Gate":
        """A copy with `changes` applied; unknown keys are a UserError listing the known ones."""
        if not changes:
            return self
        known = [f.name for f in fields(self)]
        unknown = sorted(set(changes) - set(known))
        if unknown:
            raise UserError(f"Expected gate keys among {known}. Received: {unknown}.")
        return replace(self, **{k: (None if v is None else float(v)) for k, v in changes.items()})

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Gate":
        return cls().override({k: v for k, v in raw.items() if k in {f.name for f in fields(cls)}})


@dataclass
class Check:
    """One gate check: the value, its confidence interval where it is a statistic, the limit and why."""

    metric: str
    value: float
    limit: float
    kind: str  # "max": the metric must stay at or below the limit; "min": at or above
    passed: bool
    reason: str
    interval: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"metric": self.metric, "value": self.value, "limit": self.limit, "kind": self.kind,
               "passed": self.passed, "reason": self.reason}
        if self.interval is not None:
            out["interval"] = [float(self.interval[0]), float(self.interval[1])]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Check":
        interval = raw.get("interval")
        return cls(str(raw.get("metric", "")), _number(raw.get("value")), _number(raw.get("limit")),
                   str(raw.get("kind", "")), bool(raw.get("passed")), str(raw.get("reason", "")),
                   (float(interval[0]), float(interval[1])) if isinstance(interval, list) and len(interval) == 2
                   else None)


@dataclass
class Rung:
    """One rung of an int8 fallback ladder as it was tried: its verdict, numbers and converter details.
    status "error" means the variant did not convert (summary says why)."""

    rung: str
    status: str  # "passed" | "failed" | "error"
    summary: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "status": self.status, "summary": self.summary, "metrics": dict(self.metrics),
                "failures": list(self.failures), "checks": [c.to_dict() for c in self.checks],
                "details": dict(self.details)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "Rung":
        return cls(str(raw.get("rung", "")), str(raw.get("status", "")), str(raw.get("summary", "")),
                   dict(raw.get("metrics") or {}), [str(f) for f in raw.get("failures") or []],
                   [Check.from_dict(c) for c in raw.get("checks") or []], dict(raw.get("details") or {}))


@dataclass
class ParityResult:
    """The parity record of one artifact: statistics against the reference, its gate, every check, the
    verdict and (int8) the ladder rungs tried. Export writes it; everything else reads it."""

    metrics: dict[str, Any]  # parity_metrics(): n, max_abs_diff, cosine, agreement(+_ci), accuracy_drop(+_ci)...
    gate: Gate
    passed: bool
    failures: list[str] = field(default_factory=list)  # human-readable reasons, empty on pass
    tried: list[Rung] = field(default_factory=list)  # int8 fallback ladder, when walked
    checks: list[Check] = field(default_factory=list)  # every check with its reason

    def __bool__(self) -> bool:
        return self.passed

    @property
    def reason(self) -> str:
        """One line: why it failed, or why it passed."""
        if self.failures:
            return "; ".join(self.failures)
        return "; ".join(c.reason for c in self.checks)

    @classmethod
    def failed(cls, gate: Gate, why: str) -> "ParityResult":
        """The record of an artifact that could not be measured (conversion failed, the runtime refused it)."""
        return cls(metrics={}, gate=gate, passed=False, failures=[why])

    def to_dict(self) -> dict[str, Any]:
        out = {"passed": self.passed, "metrics": dict(self.metrics), "gate": self.gate.to_dict(),
               "failures": list(self.failures), "checks": [c.to_dict() for c in self.checks], "reason": self.reason}
        if self.tried:
            out["tried"] = [t.to_dict() for t in self.tried]
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> "ParityResult":
        """Read the wire format (manifest.json / parity.json; checked by edgexfer.manifest first).
        An empty record (an artifact not checked yet) reads as not passed, with no reason."""
        raw = raw or {}
        return cls(dict(raw.get("metrics") or {}), Gate.from_dict(raw.get("gate") or {}), bool(raw.get("passed")),
                   [str(f) for f in raw.get("failures") or []], [Rung.from_dict(t) for t in raw.get("tried") or []],
                   [Check.from_dict(c) for c in raw.get("checks") or []])


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


# -- statistics -------------------------------------------------------------------------------------
def z_value(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (0.95 -> 1.96)."""
    from statistics import NormalDist

    if not 0 < confidence < 1:
        raise UserError(f"Expected a gate confidence between 0 and 1. Received: {confidence!r}.")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_interval(k: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n: sound at 0 or n successes and for small n."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference_interval(a: int, b: int, c: int, d: int, z: float) -> tuple[float, float]:
    """Interval of p1 - p2 for paired proportions (Newcombe 1998, method 10: Wilson + correlation).

    a: both right, b: only the first right, c: only the second right, d: both wrong. The width comes
    from the discordant pairs b and c: two models that agree image by image give a narrow interval.
    """
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / np.sqrt(margins) if margins > 0 else 0.0
    phi = max(phi, 0.0)  # Newcombe: a negative correlation is truncated at 0
    delta = np.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    eps = np.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, p1 - p2 - delta), min(1.0, p1 - p2 + eps)


def near_ties(reference: np.ndarray, probs: np.ndarray, margin: float) -> np.ndarray:
    """Images whose top-1 flipped between two classes the reference itself separates by <= margin."""
    ref_top, out_top = reference.argmax(1), probs.argmax(1)
    rows = np.arange(len(reference))
    gap = reference[rows, ref_top] - reference[rows, out_top]
    return (ref_top != out_top) & (gap <= margin)


def top1_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction 0..1 of rows whose argmax is the label: the one accuracy bench and parity report."""
    probs, labels = np.asarray(probs), np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or len(probs) != len(labels) or len(labels) == 0:
        raise UserError(f"Expected probabilities [N, classes] and N labels. Received: {probs.shape} and "
                        f"{labels.shape}.")
    return float(np.mean(probs.argmax(1) == labels))


def parity_metrics(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, tie_margin: float = 0.0,
                   confidence: float = 0.95) -> dict[str, Any]:
    """Differences, cosine, top-1 agreement and accuracy drop, with counts and confidence intervals.

    Percentages and points are 0..100. `agreement` counts every flip; `agreement_ci` is the interval
    of the agreement that counts a flip only when it is not a near tie (`tie_margin`).
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if ref.shape != out.shape or ref.ndim != 2 or len(labels) != len(ref) or len(ref) == 0:
        raise UserError(
            f"Expected reference and artifact probabilities of one shape [N, classes] and N labels. "
            f"Received: {ref.shape}, {out.shape} and {labels.shape}."
        )
    z, n = z_value(confidence), int(len(ref))
    diff = np.abs(ref - out)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(out, axis=1)
    cosine = np.sum(ref * out, axis=1) / np.maximum(norms, 1e-12)
    ref_top, out_top, finite = ref.argmax(1), out.argmax(1), bool(np.isfinite(out).all())
    ref_right, out_right = ref_top == labels, out_top == labels  # top1_accuracy's rule, argmaxes taken once
    flips = int(np.sum(ref_top != out_top))
    ties = int(np.sum(near_ties(ref, out, tie_margin))) if finite else 0
    lo, hi = wilson_interval(flips - ties, n, z)
    cells = [int(np.sum(r & o)) for r, o in ((ref_right, out_right), (ref_right, ~out_right),
                                              (~ref_right, out_right), (~ref_right, ~out_right))]
    drop_lo, drop_hi = paired_difference_interval(*cells, z)
    return {
        "n": n,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "cosine": float(cosine.mean()),
        "agreement": float(100.0 * (n - flips) / n),
        "flips": flips,
        "near_ties": ties,
        "agreement_ci": [float(100.0 * (1 - hi)), float(100.0 * (1 - lo))],
        "accuracy": 100.0 * float(out_right.mean()),
        "reference_accuracy": 100.0 * float(ref_right.mean()),
        "accuracy_drop": float(100.0 * (cells[1] - cells[2]) / n),
        "lost": cells[1],
        "gained": cells[2],
        "accuracy_drop_ci": [float(100.0 * drop_lo), float(100.0 * drop_hi)],
        "confidence": float(confidence),
        "finite": finite,
    }


# -- gates ------------------------------------------------------------------------------------------
def _plain_check(metrics: dict[str, Any], metric: str, limit: float, kind: str) -> Check:
    """A measured quantity against its limit (no sampling question: the difference is what it is)."""
    value = float(metrics[metric])
    ok = value <= limit if kind == "max" else value >= limit  # NaN compares False: fails
    sign = "<=" if kind == "max" else ">="
    return Check(metric, value, limit, kind, bool(ok), f"{metric} {value:.6g} (gate {sign} {limit:g})")


def _agreement_check(m: dict[str, Any], limit: float) -> Check:
    """Fails only when even the top of the interval is below the limit: the data show too many flips."""
    lo, hi = m["agreement_ci"]
    ok = hi >= limit and m["finite"]
    counted = m["flips"] - m["near_ties"]
    why = ("the data show agreement below the gate" if not ok else
           "within the gate" if 100.0 * (m["n"] - counted) / m["n"] >= limit else
           "below the gate as observed, but within what n images can show")
    reason = (f"agreement {m['agreement']:.2f}% on n={m['n']} ({counted} flips counted, {m['near_ties']} near ties "
              f"not counted), {m['confidence']:.0%} CI [{lo:.2f}, {hi:.2f}] vs gate >= {limit:g}: {why}")
    return Check("agreement", m["agreement"], limit, "min", bool(ok), reason, (lo, hi))


def _drop_check(m: dict[str, Any], limit: float) -> Check:
    """Fails only when even the bottom of the interval is above the limit: the data show a real drop."""
    lo, hi = m["accuracy_drop_ci"]
    ok = lo <= limit and m["finite"]
    why = ("the data show a drop above the gate" if not ok else "within the gate" if m["accuracy_drop"] <= limit
           else "above the gate as observed, but within what n images can show")
    reason = (f"accuracy drop {m['accuracy_drop']:+.2f} pts on n={m['n']} ({m['lost']} lost, {m['gained']} gained), "
              f"{m['confidence']:.0%} CI [{lo:+.2f}, {hi:+.2f}] vs gate <= {limit:g}: {why}")
    return Check("accuracy_drop", m["accuracy_drop"], limit, "max", bool(ok), reason, (lo, hi))


def gate_checks(metrics: dict[str, Any], gate: Gate) -> list[Check]:
    """Every check the gate asks for, each with its verdict and reason."""
    checks = []
    if gate.max_abs_diff is not None:
        checks.append(_plain_check(metrics, "max_abs_diff", gate.max_abs_diff, "max"))
    if gate.min_cosine is not None:
        checks.append(_plain_check(metrics, "cosine", gate.min_cosine, "min"))
    if gate.min_agreement is not None:
        checks.append(_agreement_check(metrics, gate.min_agreement))
    if gate.max_acc_drop is not None:
        checks.append(_drop_check(metrics, gate.max_acc_drop))
    if not metrics["finite"]:
        checks.append(Check("finite", 0.0, 1.0, "min", False, "the artifact produced NaN or infinite outputs"))
    return checks


def compare(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, gate: Gate) -> ParityResult:
    """Compare an artifact's probabilities with the reference on the same images, against `gate`."""
    metrics = parity_metrics(reference, probs, labels, gate.tie_margin, gate.confidence)
    checks = gate_checks(metrics, gate)
    failures = [c.reason for c in checks if not c.passed]
    return ParityResult(metrics=metrics, gate=gate, passed=not failures, failures=failures, checks=checks)


def rejudge(record: ParityResult) -> list[str]:
    """Where a stored record disagrees with itself: its verdict against what its own metrics give under its
    own gate (the one comparator, run again). Empty for a consistent record; `edgexfer info --verify` and
    `verify_bundle` report the rest, so a hand-edited "passed" cannot hide a failing artifact."""
    if not record.metrics:
        return ["passed with no measurements"] if record.passed else []
    try:
        checks = gate_checks(record.metrics, record.gate)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"its metrics cannot be judged by its gate ({type(exc).__name__}: {exc})"]
    passed = all(c.passed for c in checks)
    if passed == record.passed:
        return []
    verdict = "passed" if passed else "failed: " + "; ".join(c.reason for c in checks if not c.passed)
    return [f"recorded as {'passed' if record.passed else 'failed'}, but its own metrics and gate give {verdict}"]


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
    parts.append("A statistical check (agreement, accuracy drop) fails only when its confidence interval lies "
                 "wholly on the wrong side of the gate: a handful of flipped images on a small test set is not "
                 "evidence of a worse model. Near ties (top-1 flips between classes the reference itself "
                 "separates by less than the gate's tie margin) are not counted as disagreements.\n\n")
    for name, res in results.items():
        parts.append(f"- **{name}** {'passed' if res else 'FAILED'} (gate {res.gate.to_dict()})\n")
        parts += [f"  - {c.reason}\n" for c in res.checks]
        parts += [f"  - {f}\n" for f in res.failures if not any(f == c.reason for c in res.checks)]
    for name, res in results.items():
        if res.tried:
            parts.append(f"\n## {name}: int8 fallback ladder\n\n")
            parts += [f"- {t.rung}: {t.status} {t.summary}\n" for t in res.tried]
    return "".join(parts)


def _human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)

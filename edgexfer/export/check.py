"""Parity of one artifact: run it through the runtime's loader layer on the held-out images and compare it
with the Keras reference using the one comparator (edgexfer.parity).

The artifact is opened from its record in memory (`edgexfer.runtime.open_artifact`), so no manifest.json is
written or read while the bundle is still being built.
"""
from __future__ import annotations

import numpy as np

from edgexfer.export.context import ExportContext
from edgexfer.export.formats import FormatSpec
from edgexfer.manifest import Artifact
from edgexfer.parity import Gate, ParityResult, compare


def predict(ctx: ExportContext, artifact: Artifact, spec: FormatSpec, x: np.ndarray) -> np.ndarray:
    """The artifact's probabilities on x, through the runtime (the only inference path)."""
    from edgexfer.runtime import open_artifact

    model = open_artifact(ctx.root, artifact, labels=list(ctx.record.labels), input_spec=ctx.input_spec,
                          backend=spec.backend, device="cpu", verify=False,
                          options=dict(spec.parity_options) or None)
    try:
        return np.asarray(model.predict(x), dtype=np.float32)
    finally:
        model.close()


def check_parity(ctx: ExportContext, artifact: Artifact, spec: FormatSpec, gate: Gate) -> ParityResult:
    """The artifact against the reference on the held-out images, judged by `gate`."""
    try:
        probs = predict(ctx, artifact, spec, ctx.x_test)
    except Exception as exc:  # an artifact the runtime cannot run fails its parity, with the reason
        return ParityResult.failed(gate, f"runtime could not run it: {type(exc).__name__}: {exc}")
    return compare(ctx.reference, probs, ctx.y_test, gate)


def parity_text(name: str, result: ParityResult) -> str:
    """One line for a parity check: the verdict and the numbers a person looks at first."""
    m = result.metrics
    if not m:
        return f"{name} parity FAIL: {'; '.join(result.failures)[:200]}"
    numbers = f"max|diff| {m['max_abs_diff']:.2e}, agreement {m['agreement']:.2f}%, drop {m['accuracy_drop']:+.2f} pts"
    if result:
        return f"{name} parity PASS ({numbers})"
    return f"{name} parity FAIL ({numbers}): {'; '.join(result.failures)[:200]}"

"""When a run blew up: the first non-finite loss or weight, and what grew first."""

from __future__ import annotations

import math

import numpy as np

from lossview.core.run import Run


def _first_nonfinite_step(run: Run) -> tuple[int | None, str | None]:
    best: tuple[int | None, str | None] = (None, None)
    names = [n for n in run.metrics if "loss" in n.lower()] or list(run.metrics)
    for name in names:
        s = run.metrics[name]
        bad = ~np.isfinite(s.values)
        if bad.any():
            step = int(s.steps[np.argmax(bad)])
            if best[0] is None or step < best[0]:
                best = (step, name)
    return best


def _tensor_norms(run: Run, i: int) -> dict[str, float]:
    with np.errstate(over="ignore", invalid="ignore"):
        return {n: float(np.linalg.norm(np.asarray(a, dtype=np.float64)))
                for n, a in run.params(i).items()}


def divergence(run: Run, nonfinite_snapshots: list[int]) -> dict:
    """``{"step": int | None, ...}``: the earliest of the first non-finite loss, the first
    snapshot with non-finite weights, and the trainer's recorded ``divergence_step``."""
    loss_step, loss_name = _first_nonfinite_step(run)
    w_idx = nonfinite_snapshots[0] if nonfinite_snapshots else None
    w_step = int(run.snapshots[w_idx].step) if w_idx is not None else None
    spec_step = run.spec.get("divergence_step")
    spec_step = int(spec_step) if isinstance(spec_step, (int, float)) and math.isfinite(spec_step) else None
    diverged_status = run.spec.get("status") == "diverged"
    candidates = [s for s in (loss_step, w_step, spec_step) if s is not None]
    out: dict = {"step": min(candidates) if candidates else None,
                 "loss_step": loss_step, "loss_metric": loss_name,
                 "weights_step": w_step, "trainer_step": spec_step,
                 "trainer_status": run.spec.get("status")}
    if out["step"] is None:
        if diverged_status:
            out["reason"] = "the trainer marked the run diverged but recorded no step"
        return {**out, "diverged": diverged_status}
    out["diverged"] = True
    steps = run.steps
    # last finite snapshot: before the first non-finite one and not after the divergence
    last = (w_idx if w_idx is not None else len(run)) - 1
    while last >= 0 and steps[last] > out["step"]:
        last -= 1
    out["last_finite_snapshot"] = ({"index": last, "step": int(steps[last])} if last >= 0 else None)
    if w_idx is not None:
        bad = [n for n, a in run.params(w_idx).items() if not np.isfinite(a).all()]
        out["first_nonfinite_tensors"] = bad
    if last >= 1:
        now, before = _tensor_norms(run, last), _tensor_norms(run, last - 1)
        growth = {n: now[n] / before[n] if before[n] > 0 else math.inf for n in now}
        name = max(growth, key=lambda n: growth[n])
        out["fastest_growing_tensor"] = {"name": name, "norm_ratio": growth[name],
                                         "between_steps": [int(steps[last - 1]), int(steps[last])]}
    return out

"""Sharpness against the stability limit 2/lr, and the quadratic model of one step.

- Gradient descent on a quadratic diverges iff ``lr * lambda_max > 2``; with heavy-ball
  (PyTorch) momentum ``beta`` the limit is ``lr * lambda_max > 2 + 2 beta`` (docs/science.md §5;
  Cohen et al. 2021 call hovering at it the edge of stability). The limit is stated for
  SGD only: adaptive optimisers (Adam...) precondition the step, so raw sharpness against
  ``2/lr`` does not apply and is reported as such.
- Second-order model of a step ``dw``: ``dL ~ g'dw + 1/2 dw'H dw``; for a gradient step
  ``dw = -lr g`` this is ``-lr g'g + lr^2/2 g'Hg`` (exact on quadratics).

Sharpness is the top Hessian eigenvalue of the full training loss in eval mode.

``device``: the data go to it once (:func:`placed_data`), and every snapshot's check
(finite loss) and Hessian-vector products run there.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from lossview.core.errors import LossviewError
from lossview.core.run import Run
from lossview.core.surface import SHARPNESS_POINTS
from lossview.core.surface.batches import as_batches
from lossview.core.surface.curvature import HessianOperator, NonFiniteCurvature, top_eigenvalues
from lossview.core.surface.finite import (
    evaluation_error,
    finite_prefix,
    loss_problem,
    weights_problem,
)
from lossview.core.surface.loop import resolve_device, to_device
from lossview.core.surface.usermodel import ModelSource, model_source, snapshot_tensors

#: Snapshots at which :func:`sharpness_report` measures sharpness (the app's number too).
REPORT_POINTS = SHARPNESS_POINTS


def stability_threshold(lr: float, momentum: float = 0.0) -> float:
    """Largest stable sharpness for (heavy-ball) gradient descent: ``(2 + 2 beta) / lr``."""
    if lr <= 0:
        raise LossviewError(f"learning rate must be positive, not {lr}")
    return (2.0 + 2.0 * float(momentum)) / float(lr)


def optimizer_info(run: Run) -> dict[str, Any]:
    """``{"name", "lr", "momentum"}`` from run.spec (None where unknown)."""
    opt = run.spec.get("optimizer")
    if isinstance(opt, dict):
        return {"name": opt.get("name"), "lr": opt.get("lr"), "momentum": opt.get("momentum") or 0.0}
    return {"name": None, "lr": run.spec.get("lr"), "momentum": run.spec.get("momentum") or 0.0}


def lr_at(run: Run, step: int) -> float | None:
    """The learning rate at ``step``: the logged ``lr`` metric, else run.spec's optimizer lr."""
    s = run.metric("lr", "learning_rate")
    if s is not None:
        v = s.at(step)
        if np.isfinite(v):
            return float(v)
    lr = optimizer_info(run)["lr"]
    return float(lr) if lr is not None else None


def predicted_change(g: torch.Tensor, hg: torch.Tensor, lr: float) -> float:
    """``-lr g'g + lr^2/2 g'Hg``: the quadratic model's loss change for a step ``-lr g``."""
    g, hg = g.double(), hg.double()
    return float(-lr * (g @ g) + 0.5 * lr * lr * (g @ hg))


def placed_data(src: ModelSource, device: Any) -> tuple[torch.device, list]:
    """``device`` resolved (None: the model's) and ``src``'s batches moved there, once."""
    first = next(src.model.parameters(), None)
    dev = resolve_device(device, first.device if first is not None else torch.device("cpu"))
    return dev, [(to_device(x, dev), to_device(y, dev)) for x, y in as_batches(src.data)]


def gd_step_check(op: HessianOperator, lr: float) -> dict[str, float]:
    """Predicted vs actual loss change of one full-batch gradient step from ``op``'s weights
    (on ``op``'s device and its batches already there)."""
    loss0, g = op.loss_and_grad()
    hg = op.matvec(g)
    after = HessianOperator(op.model, op.loss_fn, op.batches,
                            _unflatten(op, op.theta - lr * g), op.buffers, op.train,
                            device=op.device)
    loss1, _ = after.loss_and_grad()
    return {"lr": lr, "loss": loss0, "predicted": predicted_change(g, hg, lr),
            "actual": loss1 - loss0, "gTg": float(g.double() @ g.double()),
            "gTHg": float(g.double() @ hg.double())}


def step_check(run: Run, i: int, source: ModelSource | None = None,
               device: Any = None) -> dict[str, float]:
    """Second-order prediction ``g'dw + 1/2 dw'H dw`` of the loss change between snapshots
    ``i`` and ``i+1`` (the actual displacement; any optimizer) against the actual change."""
    src = source or model_source(run)
    dev, data = placed_data(src, device)
    p0, b0 = snapshot_tensors(run, i, src.model)
    p1, _ = snapshot_tensors(run, i + 1, src.model)
    op = HessianOperator(src.model, src.loss_fn, data, p0, b0, device=dev)
    loss0, g = op.loss_and_grad()
    dw = torch.cat([(p1[n] - p0[n]).reshape(-1) for n in op.names]).to(dev, op.dtype)
    hdw = op.matvec(dw)
    pred = float(g.double() @ dw.double() + 0.5 * dw.double() @ hdw.double())
    loss1, _ = HessianOperator(src.model, src.loss_fn, data, p1, b0, device=dev).loss_and_grad()
    return {"step": int(run.steps[i]), "next_step": int(run.steps[i + 1]), "predicted": pred,
            "actual": loss1 - loss0}


def _unflatten(op: HessianOperator, v: torch.Tensor) -> dict[str, torch.Tensor]:
    from lossview.core.surface.directions import flat_to_dict

    return flat_to_dict(v, op.names, op.shapes)


def iter_sharpness(run: Run, indices: Sequence[int] | None = None, model_file: str | None = None,
                   source: ModelSource | None = None, k: int = 1, tol: float = 1e-3,
                   points: int = SHARPNESS_POINTS, device: Any = None,
                   ) -> Generator[float, None, dict[str, Any]]:
    """Sharpness at the given snapshots (default ``points`` evenly spaced over the finite
    prefix, its last always included); yields the fraction done, returns the table (see
    docs/surface.md). ``device``: where the Hessian-vector products run (None: the model's;
    ``"auto"``, ``"cpu"``, ``"cuda[:i]"``).

    A snapshot with non-finite weights or loss, or whose Hessian-vector products overflow,
    is never computed: it goes to ``"skipped"`` as ``{"step", "reason"}``. With no usable
    snapshot the table has no rows and ``"reason"`` says why.
    """
    src = source or model_source(run, model_file)
    dev, data = placed_data(src, device)
    t = len(run)
    skipped: list[dict[str, Any]] = []
    if indices is None:
        fp = finite_prefix(run, replace(src, data=data), device=dev)  # data already there
        skipped += fp.skipped
        n = 0 if fp.last is None else fp.last + 1
        idx = sorted({round(x) for x in np.linspace(0, n - 1, min(int(points), n))})
    else:
        idx = [range(t)[int(i)] for i in indices]
    info = optimizer_info(run)
    rows = []
    for n, i in enumerate(idx):
        step = int(run.steps[i])
        why = weights_problem(run, i)
        if why is None:
            p, b = snapshot_tensors(run, i, src.model)
            op = HessianOperator(src.model, src.loss_fn, data, p, b, device=dev)
            why = _loss_problem(op, src, step)
        if why is None:
            try:
                w, _ = top_eigenvalues(op, k, tol=tol)
            except NonFiniteCurvature as e:
                why = str(e)
            else:
                if not np.all(np.isfinite(w)):
                    why = "the top Hessian eigenvalue is not finite at these weights"
        if why is not None:
            skipped.append({"step": step, "reason": why})
        else:
            rows.append({"index": i, "step": step, "sharpness": float(w[0]),
                         "top": [float(x) for x in w], "lr": lr_at(run, step)})
        yield (n + 1) / len(idx)
    skipped.sort(key=lambda d: d["step"])
    if not rows:
        reason = ("no snapshot to measure" if not t else
                  f"no snapshot has finite weights, loss and curvature ({len(skipped)} skipped; "
                  f"the first: {skipped[0]['reason']})" if skipped else "no snapshots were asked for")
        table = _table_empty(info, reason)
    else:
        table = _table(rows, info)
        table["reason"] = None
    table["skipped"] = skipped
    table["suspicious"] = (
        "sharpness is exactly 0 at every snapshot: the loss does not curve in any direction "
        "(a loss_fn that ignores the outputs, or targets that do not fit it?)"
        if rows and all(r["sharpness"] == 0.0 for r in rows) else None)
    table["loss_note"] = src.loss_note
    return table


def _loss_problem(op: HessianOperator, src: ModelSource, step: int) -> str | None:
    """Why the full-data loss at ``op``'s weights rules the snapshot out (not finite), on
    ``op``'s device (as :func:`~lossview.core.surface.finite.snapshot_problem` says it)."""
    try:
        loss = op.loss()
    except LossviewError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model or loss_fn: one line
        raise evaluation_error(src, step, e) from None
    return loss_problem(loss)


def _table_empty(info: dict[str, Any], reason: str) -> dict[str, Any]:
    """The table with no rows: every key present, ``"reason"`` (and the verdict) says why."""
    return {"steps": [], "sharpness": [], "lr": [], "momentum": float(info.get("momentum") or 0.0),
            "optimizer": info.get("name"), "threshold": [], "ratio": [],
            "first_unstable_step": None, "verdict": f"not measured: {reason}", "reason": reason,
            "mode": "eval", "method": "lanczos"}


def _limit(beta: float) -> str:
    """The stability limit as a formula: ``2/lr``, or ``(2+2*0.9)/lr`` with momentum."""
    return "2/lr" if beta == 0 else f"(2+2*{beta:g})/lr"


def _table(rows: list[dict], info: dict[str, Any]) -> dict[str, Any]:
    name = (info.get("name") or "").lower()
    beta = float(info.get("momentum") or 0.0)
    applies = name in ("", "sgd") and all(r["lr"] for r in rows)
    for r in rows:
        r["threshold"] = stability_threshold(r["lr"], beta) if applies else None
        r["ratio"] = r["sharpness"] / r["threshold"] if applies else None
    crossed = [r["step"] for r in rows if r["ratio"] is not None and r["ratio"] > 1.0]
    if not applies:
        verdict = (f"sharpness {rows[-1]['sharpness']:.4g} at step {rows[-1]['step']}; the 2/lr "
                   f"limit applies to SGD, not to {name or 'an unknown optimizer'}")
    elif crossed:
        verdict = (f"unstable: sharpness exceeds the limit {_limit(beta)} from step "
                   f"{crossed[0]} (lr*lambda_max above {2 + 2 * beta:g})")
    else:
        top = max(rows, key=lambda r: r["ratio"])
        edge = " (at the edge of stability)" if top["ratio"] > 0.9 else ""
        verdict = (f"stable: sharpness at most {top['ratio']:.0%} of the limit "
                   f"{top['threshold']:.4g} = {_limit(beta)}{edge}")
    return {"steps": [r["step"] for r in rows], "sharpness": [r["sharpness"] for r in rows],
            "lr": [r["lr"] for r in rows], "momentum": beta, "optimizer": info.get("name"),
            "threshold": [r["threshold"] for r in rows], "ratio": [r["ratio"] for r in rows],
            "first_unstable_step": crossed[0] if crossed else None, "verdict": verdict,
            "mode": "eval", "method": "lanczos"}


def sharpness_report(run: Run, model_file: str | None = None) -> dict[str, Any] | None:
    """Sharpness at :data:`SHARPNESS_POINTS` snapshots of the finite prefix vs 2/lr, for
    ``lossview analyze --json`` ("sharpness").

    None when the run carries no model (a foreign folder without ``model_file``); a
    LossviewError when a given model file is unusable. A diverged run gives the rows of
    its finite snapshots and ``"skipped"`` for the rest; no usable snapshot gives no rows
    and a ``"reason"`` (never an exception).
    """
    if model_file is None and not run.spec.get("problem"):
        return None
    gen = iter_sharpness(run, model_file=model_file)
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value

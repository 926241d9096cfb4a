"""Is the learning rate inside the stability limit? ``answers.stability`` (docs/analysis.md).

Gradient descent on a quadratic diverges iff ``lr * lambda_max > 2``; with heavy-ball
momentum ``beta`` iff ``lr * lambda_max > 2 + 2 beta`` (docs/science.md §5). Per measured
snapshot the ratio ``rho = lr * lambda_max / (2 + 2 beta)`` is 1 at the limit. Verdicts:

- ``diverged``: the run has non-finite loss or weights (the sentence still compares the
  lr with the last finite snapshot's limit where curvature is known);
- ``unstable``: ``rho > 1 + EDGE_BAND`` at the last :data:`~verdicts.SUSTAINED` measured
  snapshots;
- ``edge``: ``rho`` within ``1 +- EDGE_BAND`` at the last SUSTAINED or more snapshots
  (Edge of Stability, Cohen et al. 2021);
- ``stable``: ``rho < 1 - EDGE_BAND`` at the end; earlier snapshots above the limit
  followed by recovery are a catapult (Lewkowycz et al. 2020), said in the sentence;
- ``unknown``: no curvature measured, no learning rate known, an adaptive optimizer (its
  steps are preconditioned, so the raw ``lambda_max`` is not compared with ``2/lr``), or a
  last snapshot that disagrees with the one before it.
"""

from __future__ import annotations

from typing import Any

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.verdicts import limit_formula, num, unit_word


def _rows(table: dict) -> list[dict]:
    rows = []
    steps = table.get("steps") or []
    lam = table.get("sharpness") or []
    lrs = table.get("lr") or [None] * len(steps)
    for s, l, lr in zip(steps, lam, lrs):
        if l is None or lr is None or not lr > 0:
            continue
        rows.append({"step": int(s), "sharpness": float(l), "lr": float(lr)})
    return rows


def _optimizer(r: dict, table: dict) -> tuple[str | None, float]:
    opt = r.get("optimizer") or {}
    name = (table.get("optimizer") or opt.get("name") or None)
    beta = table.get("momentum")
    if beta is None:
        beta = opt.get("momentum")
    return (str(name).lower() if name else None), float(beta or 0.0)


def _lrs_sentence(rows: list[dict], beta: float, unit: str | None) -> str:
    """Which side of the limit each learning rate the run used lies (schedules, sweeps)."""
    by_lr: dict[float, list[dict]] = {}
    for row in rows:
        by_lr.setdefault(row["lr"], []).append(row)
    if len(by_lr) < 2:
        return ""
    parts = []
    for lr, rs in by_lr.items():
        worst = max(V.stability_ratio(x["sharpness"], lr, beta) for x in rs)
        parts.append(f"lr {num(lr)} ({unit_word(unit, 2)} {rs[0]['step']:,}-{rs[-1]['step']:,}): "
                     f"{V.band_of(worst)} the limit (lr·λ_max/{2 + 2 * beta:g} up to {worst:.2f})")
    return " Learning rates used: " + "; ".join(parts) + "."


def stability_answer(r: dict) -> dict[str, Any]:
    table = r.get("sharpness") or {}
    dv = r.get("divergence") or {}
    unit = r.get("step_unit")
    name, beta = _optimizer(r, table)
    opt_lr = (r.get("optimizer") or {}).get("lr")
    out: dict[str, Any] = {"lr": opt_lr, "momentum": beta, "optimizer": name,
                           "sharpness": None, "lr_limit": None, "sharpness_step": None}
    diverged = bool(dv.get("diverged"))
    at_div = f"{unit_word(unit)} {dv['step']:,}" if dv.get("step") is not None else "an unknown step"

    def done(verdict: str, sentence: str, **extra: Any) -> dict[str, Any]:
        return {**out, **extra, "verdict": verdict, "sentence": sentence}

    if name in V.ADAPTIVE:
        why = (f"{name} preconditions its steps, so the raw λ_max is not compared with 2/lr "
               "(the limit holds for SGD and heavy-ball momentum)")
        return done("diverged" if diverged else "unknown",
                    (f"The run diverged at {at_div}; " if diverged else "Stability: ") + why + ".",
                    reason=why)
    rows = _rows(table)
    if not rows:
        why = (table.get("reason") or ("no learning rate is known" if table.get("steps") else
               "the curvature was not measured (it needs the model: lossview's own runs carry it; "
               "for other folders give a model file: --model FILE.py, or File > Attach model "
               "file... in the app)"))
        lr_txt = f" with lr = {num(opt_lr)}" if opt_lr else ""
        return done("diverged" if diverged else "unknown",
                    (f"The run diverged at {at_div}{lr_txt}; whether lr exceeded 2/λ_max is unknown: "
                     if diverged else "Stability: unknown: ") + why + ".", reason=why)
    assumed = "" if name == "sgd" else (" (assuming plain SGD: the optimizer is not recorded)"
                                        if name is None else f" (treating {name} as SGD)")
    ratios = [V.stability_ratio(x["sharpness"], x["lr"], beta) for x in rows]
    bands = [V.band_of(x) for x in ratios]
    # the snapshot the limit is quoted at: the last one, except in a diverged run, whose
    # last finite weights are already blowing up: there the first one beyond the limit
    # (where the instability began), else the last
    k = len(rows) - 1
    if diverged and "above" in bands:
        k = bands.index("above")
    ref = rows[k]
    limit = (2.0 + 2.0 * beta) / ref["sharpness"] if ref["sharpness"] > 0 else None
    out.update(sharpness=ref["sharpness"], sharpness_step=ref["step"], lr=ref["lr"],
               lr_limit=limit, ratios=ratios, steps=[x["step"] for x in rows],
               max_sharpness=max(x["sharpness"] for x in rows))
    over = (f"{ratios[k]:.2f}" if ratios[k] < 10 else f"{num(ratios[k])}")
    compare = (f"λ_max = {num(ref['sharpness'])} at {unit_word(unit)} {ref['step']:,}, so SGD"
               + (f" with momentum {beta:g}" if beta else "") + f" is stable only for lr < "
               f"{limit_formula(beta)} = {num(limit)}; the run used {num(ref['lr'])}"
               f" (lr·λ_max/{2 + 2 * beta:g} = {over})" if limit else
               f"λ_max = {num(ref['sharpness'])} at {unit_word(unit)} {ref['step']:,}")
    compare += assumed + _lrs_sentence(rows, beta, unit)
    tail_n = 0
    for b in reversed(bands):
        if b != bands[-1]:
            break
        tail_n += 1
    # a catapult: clearly above the limit (beyond the edge band) before the sustained tail;
    # hovering a few % above 2/lr is the edge of stability, not a catapult
    above_before = [x["step"] for x, b in zip(rows[:len(rows) - tail_n], bands) if b == "above"]
    if diverged:
        first = rows[k]["step"] if bands[k] == "above" else None
        return done("diverged", f"The run diverged at {at_div}. {compare}"
                    + (f"; above the limit from {unit_word(unit)} {first:,} on."
                       if first is not None else "."))
    if suspicious := table.get("suspicious"):
        return done("unknown", f"Stability: unknown: the measured curvature is suspicious ({suspicious}).",
                    reason=suspicious)
    sustained = tail_n >= V.SUSTAINED or (len(rows) == 1 and bands[-1] == "below")
    if not sustained and len(rows) == 1:
        return done("unknown", (f"Stability: undetermined from one measured snapshot, {bands[-1]} "
                                f"the limit. {compare}."), reason="one measured snapshot")
    if not sustained:
        return done("unknown", (f"Stability: undetermined: the last measured snapshot is {bands[-1]} "
                                f"the limit, the one before it {bands[-2]}. {compare}."),
                    reason="the last two measured snapshots disagree")
    if bands[-1] == "above":
        first = rows[len(rows) - tail_n]["step"]
        return done("unstable", (f"Unstable: lr·λ_max has stayed above {2 + 2 * beta:g} since "
                                 f"{unit_word(unit)} {first:,}. {compare}."))
    catapult = ""
    if above_before:
        catapult = (" A catapult (Lewkowycz et al. 2020): above the limit at "
                    f"{unit_word(unit, len(above_before))} "
                    + ", ".join(f"{s:,}" for s in above_before[:4])
                    + ", then the sharpness fell back below it and training recovered.")
    if bands[-1] == "at":
        first = rows[len(rows) - tail_n]["step"]
        return done("edge", (f"At the edge of stability (Cohen et al. 2021): lr·λ_max has stayed within "
                             f"{V.EDGE_BAND:.0%} of {2 + 2 * beta:g} since {unit_word(unit)} {first:,}. "
                             f"{compare}.{catapult}"), catapult=bool(above_before))
    return done("stable", (f"Stable: the learning rate is inside the limit at the last "
                           f"{tail_n} measured {unit_word(unit, tail_n)}. {compare}.{catapult}"),
                catapult=bool(above_before))

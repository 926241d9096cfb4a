"""One structured answer per question, decided from trends over time (docs/analysis.md).

- ``weights``: should the weights converge, and do they? converging / drifting / diffusing /
  confined / diverged / undetermined, decided on one segment (after the loss plateau, else
  the run's second half) from the step-length trend, the long-lag MSD slope, the lag-1
  update correlation, the norm's outward growth and the net displacement against what
  diffusion at short lags predicts (drift on top of diffusion);
- ``loss``: improving / converged / diverged / unknown, with the plateau step;
- ``stability``: the learning rate against the largest stable one, 2/lambda_max
  (:mod:`lossview.core.analysis.stability_answer`);
- ``exploration``: how far the weights moved over the segment, raw and modulo neuron
  permutations, against the distance between relabelled copies of the final network.

Each answer carries its verdict, the deciding numbers and a ``sentence`` that states them.
:func:`compute_answers` reads only the JSON report, so the app can recompute the answers
after it measures sharpness. The thresholds and words live in
:mod:`lossview.core.analysis.verdicts`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.stability_answer import stability_answer
from lossview.core.analysis.verdicts import num, unit_word


def _steps_word(r: dict, n: float = 2) -> str:
    return unit_word(r.get("step_unit"), n)


def _at(r: dict, step: int | None) -> str:
    return f"{unit_word(r.get('step_unit'))} {step:,}" if step is not None else "n/a"


def _segment_indices(r: dict) -> list[int]:
    """Snapshot indices of the segment the weights question is about (finite ones only)."""
    steps = r.get("steps") or []
    start = (r.get("diffusion") or {}).get("segment_start_step")
    last = (r.get("divergence") or {}).get("last_finite_snapshot")
    end = last["index"] if last else len(steps) - 1
    if (r.get("divergence") or {}).get("diverged") and not last:
        return []
    bad = set((r.get("distance") or {}).get("nonfinite_snapshots") or [])
    lo = steps[0] if start is None else start
    return [i for i in range(end + 1) if steps[i] >= lo and i not in bad]


def _trend(x: np.ndarray) -> float | None:
    """Median of the last quarter over the median of the first quarter (>= 2 values each)."""
    q = max(len(x) // 4, 2)
    if len(x) < 2 * q:
        return None
    a, b = float(np.median(x[:q])), float(np.median(x[-q:]))
    return b / a if a > 0 else None


def _long_lag_slope(diff: dict, span: float) -> float | None:
    """OLS log-log slope of the MSD over long lags (span/20 .. span/3; wider if too few)."""
    lags, msd = np.asarray(diff.get("lags") or [], float), np.asarray(diff.get("msd") or [], float)
    ok = (lags > 0) & (msd > 0)
    lags, msd = lags[ok], msd[ok]
    for lo, hi in ((span / V.LONG_LAG_FROM, span / V.LONG_LAG_TO), (span / 40.0, span / 2.0)):
        sel = (lags >= lo) & (lags <= hi)
        if sel.sum() >= 3:
            return float(np.polyfit(np.log(lags[sel]), np.log(msd[sel]), 1)[0])
    return None


def _msd_at(diff: dict, lag: float) -> tuple[float, float] | None:
    """(lag, MSD) of the measured lag nearest ``lag`` on a log scale."""
    lags, msd = np.asarray(diff.get("lags") or [], float), np.asarray(diff.get("msd") or [], float)
    ok = (lags > 0) & (msd > 0)
    if not ok.any():
        return None
    lags, msd = lags[ok], msd[ok]
    i = int(np.argmin(np.abs(np.log(lags / lag))))
    return float(lags[i]), float(msd[i])


def _drift_excess(diff: dict, span: float) -> dict[str, float]:
    """How far the segment's MSD runs ahead of diffusion at long lags: ``msd_bending_slope``
    (two-point slope from lag span/10 to span/2) and ``displacement_excess`` (MSD at the
    longest lag over the linear extrapolation from span/10, scaled to the whole span)."""
    a, b = _msd_at(diff, span / 10), _msd_at(diff, span / 2)
    if span <= 0 or a is None or b is None or b[0] <= a[0] * 1.5:
        return {}
    return {"msd_bending_slope": float(np.log(b[1] / a[1]) / np.log(b[0] / a[0])),
            "bending_lags": [a[0], b[0]], "_diffusive_rate": a[1] / a[0]}


def weights_evidence(r: dict) -> dict[str, Any]:
    """The deciding numbers of the weights answer, computed on the segment."""
    idx = _segment_indices(r)
    steps = np.asarray(r.get("steps") or [], float)
    d = r.get("distance") or {}
    ev: dict[str, Any] = {"n_snapshots": len(idx),
                          "segment": [int(steps[idx[0]]), int(steps[idx[-1]])] if idx else None,
                          "segment_kind": (r.get("diffusion") or {}).get("segment")}
    if len(idx) < 3:
        return ev
    sl = np.asarray([np.nan if v is None else v for v in d.get("step_length") or []], float)
    seg_sl = sl[idx[1:]] if len(sl) else np.zeros(0)
    gaps = np.diff(steps[idx])
    even = bool(len(gaps) and np.all(np.abs(gaps - gaps[0]) <= 0.05 * gaps[0]))
    ev["evenly_spaced"] = even
    if even and np.isfinite(seg_sl).all():
        ev["step_length_first"] = float(np.median(seg_sl[: max(len(seg_sl) // 4, 2)]))
        ev["step_length_last"] = float(np.median(seg_sl[-max(len(seg_sl) // 4, 2):]))
        ev["step_length_trend"] = _trend(seg_sl)
    span = float(steps[idx[-1]] - steps[idx[0]])
    ev["msd_long_lag_slope"] = _long_lag_slope(r.get("diffusion") or {}, span) if span > 0 else None
    ev.update(_drift_excess(r.get("diffusion") or {}, span))
    ev["update_correlation"] = (r.get("stationarity") or {}).get("update_lag1_correlation")
    pn = d.get("param_norm") or []
    if pn and pn[idx[0]] and pn[idx[-1]]:
        ev["norm_first"], ev["norm_last"] = float(pn[idx[0]]), float(pn[idx[-1]])
    tf = d.get("to_final") or []
    net = tf[idx[0]] if idx[-1] == len(steps) - 1 and len(tf) > idx[0] else None
    rate = ev.pop("_diffusive_rate", None)
    if net:
        ev["net_displacement"] = float(net)
        if "norm_first" in ev:
            ev["radial_share"] = (ev["norm_last"] - ev["norm_first"]) / float(net)
        if rate and span > 0:
            ev["displacement_excess"] = float(net) ** 2 / (rate * span)
    g = r.get("gradient") or {}
    if g.get("post_trend") is not None:
        ev["gradient_norm_trend"] = g["post_trend"]
    return ev


def _decide_weights(ev: dict) -> tuple[str, str]:
    """(verdict, why) from the evidence; "undetermined" says which evidence is missing or
    conflicting."""
    n, rs = ev["n_snapshots"], ev.get("step_length_trend")
    a, c = ev.get("msd_long_lag_slope"), ev.get("update_correlation")
    if n < V.MIN_SEGMENT_SNAPSHOTS:
        return "undetermined", f"only {n} finite snapshots in the segment (needs {V.MIN_SEGMENT_SNAPSHOTS})"
    growing_norm = (ev.get("radial_share") is not None and ev["radial_share"] >= V.RADIAL_SHARE_FROM
                    and ev["norm_last"] >= (1 + V.NORM_GROWTH_FROM) * ev["norm_first"])
    norm_txt = (f"the norm grows {ev['norm_first']:.3g} -> {ev['norm_last']:.3g} "
                f"({ev['radial_share']:.0%} of the net displacement)" if growing_norm else "")
    if rs is not None and (rs < V.SHRINKING_FAST_BELOW or (rs < V.SHRINKING_BELOW and not growing_norm)):
        return "converging", ""
    if rs is not None and rs < V.STEADY_FROM and not growing_norm and ev.get("loss_improving"):
        # a slower shrink counts where the loss still falls and the norm stays put: the
        # weights follow the falling loss down into a minimum
        return "converging", "slowly, while the loss still falls"
    if a is None:
        why = "the MSD could not be measured at long lags"
        if rs is None:
            why += " and the snapshots are unevenly spaced, so step lengths are not comparable"
        return "undetermined", why
    if a >= V.DRIFT_SLOPE_FROM:
        if c is not None and c < V.DRIFT_CORRELATION_ABOVE:
            return "undetermined", (f"the MSD grows as lag^{a:.2f} but successive updates "
                                    f"anti-correlate ({c:+.2f}); the two disagree")
        if rs is None or rs >= V.STEADY_FROM or growing_norm:
            return "drifting", norm_txt
        return "undetermined", (f"the motion is directed (long-lag MSD slope {a:.2f}) and slows "
                                f"(step x{rs:.2g}), but not fast enough to say the weights approach "
                                f"a limit (that needs x{V.SHRINKING_BELOW:g} or less)")
    if a < V.CONFINED_SLOPE_BELOW:
        if rs is not None and rs > V.GROWING_ABOVE:
            return "undetermined", (f"the MSD saturates (slope {a:.2f}) but the step grows "
                                    f"x{rs:.2g}; the two disagree")
        return "confined", ""
    ex, bend = ev.get("displacement_excess"), ev.get("msd_bending_slope")
    if ex is not None and bend is not None and ex >= V.DRIFT_EXCESS_FROM and \
            bend >= V.BENDING_SLOPE_FROM and (growing_norm or (c is not None and c > 0)):
        return "drifting", (f"the segment's net displacement squared is {ex:.1f}x what diffusion at "
                            f"lag {ev['bending_lags'][0]:,.0f} predicts, and the MSD bends upward (slope "
                            f"{bend:.2f} from lag {ev['bending_lags'][0]:,.0f} "
                            f"to {ev['bending_lags'][1]:,.0f})"
                            + (f"; {norm_txt}" if norm_txt else ""))
    lo, hi = V.DIFFUSIVE_SLOPE
    if lo <= a < hi and (c is None or abs(c) < V.RANDOM_CORRELATION_BELOW) and \
            (rs is None or rs <= V.GROWING_ABOVE):
        return "diffusing", ""
    if lo <= a < hi:
        return "undetermined", (f"the MSD grows about linearly (slope {a:.2f}) but successive "
                                f"updates correlate at {c:+.2f}" if c is not None and
                                abs(c) >= V.RANDOM_CORRELATION_BELOW else
                                f"the MSD grows about linearly (slope {a:.2f}) but the step grows x{rs:.2g}")
    return "undetermined", (f"the long-lag MSD slope {a:.2f} lies between confined "
                            f"(< {V.CONFINED_SLOPE_BELOW}) and diffusive ({lo}..{hi})")


def weights_answer(r: dict, loss: dict | None = None) -> dict[str, Any]:
    dv = r.get("divergence") or {}
    ev = weights_evidence(r)
    ev["loss_improving"] = (loss or loss_answer(r))["verdict"] == "improving"
    seg = ev.get("segment")
    where = (f"{_steps_word(r)} {seg[0]:,}-{seg[1]:,}" if seg else "")
    if dv.get("diverged"):
        last = dv.get("last_finite_snapshot")
        s = (f"The run diverged at {_at(r, dv.get('step'))} (first non-finite loss or weights)"
             + (f"; the last snapshot with finite weights is {_at(r, last['step'])}, and nothing "
                "after it is analysed." if last else "; no snapshot has finite weights."))
        return {"verdict": "diverged", "segment": seg, "sentence": s, **ev}
    verdict, why = _decide_weights(ev)
    rs, a, c = ev.get("step_length_trend"), ev.get("msd_long_lag_slope"), ev.get("update_correlation")
    kind = ("after the loss plateau" if ev.get("segment_kind") == "after plateau"
            else "over the run's second half")
    facts = []
    if rs is not None:
        facts.append(f"the step between snapshots went from {num(ev['step_length_first'])} to "
                     f"{num(ev['step_length_last'])} (x{rs:.2g})")
    if a is not None:
        facts.append(f"long-lag MSD slope {a:.2f}")
    if c is not None:
        facts.append(f"updates correlate {c:+.2f}")
    if ev.get("norm_first") and ev.get("norm_last"):
        facts.append(f"weight norm {num(ev['norm_first'])} -> {num(ev['norm_last'])}")
    head = {
        "converging": ("The weights are converging" + (f" {why}" if why else "")
                       + ": the step keeps shrinking, so they approach a limit"),
        "drifting": ("The weights are drifting outward: " + why + ", so the shrinking step is no sign "
                     "of a limit (cross-entropy's weights grow like log t on separable data, "
                     "Soudry et al. 2018)" if why and why.startswith("the norm") else
                     "The weights are drifting: a directed motion on top of the random one: " + why
                     if why else "The weights are drifting: directed motion that does not slow down"),
        "diffusing": ("The weights are diffusing like a random walk: steady step, "
                      "MSD growing linearly with lag"),
        "confined": ("The weights are confined: they fluctuate around one point (the MSD saturates), "
                     "as constant-lr SGD does at its stationary distribution (Mandt et al. 2017)"),
        "undetermined": f"Whether the weights converge is undetermined: {why}",
    }[verdict]
    s = f"{head} ({kind}, {where}: " + "; ".join(facts) + ")." if facts else f"{head} ({kind}, {where})."
    return {"verdict": verdict, "segment": seg, "sentence": s,
            **({"why": why} if why and verdict == "undetermined" else {}), **ev}


def loss_answer(r: dict) -> dict[str, Any]:
    p = r.get("plateau") or {}
    dv = r.get("divergence") or {}
    out: dict[str, Any] = {"plateau_step": p.get("step"), "metric": p.get("metric"),
                           "scale": p.get("scale")}
    if dv.get("diverged"):
        what = (f"'{dv['loss_metric']}' non-finite at {_at(r, dv['loss_step'])}"
                if dv.get("loss_step") is not None else f"weights non-finite at {_at(r, dv.get('step'))}")
        return {**out, "verdict": "diverged", "plateau_step": None,
                "sentence": f"The loss diverged: {what}."}
    if p.get("reason") and "no loss" in p["reason"] and p.get("step") is None:
        return {**out, "verdict": "unknown", "sentence": f"Loss: unknown ({p['reason']})."}
    if p.get("step") is not None:
        if p.get("scale") == "log":
            band = f"within a factor {p['band_factor']:.2g} of"
        else:
            band = f"within ±{num(p['band'], 2)} of"
        share = p.get("band_share_of_decrease")
        s = (f"The loss converged: flat since {_at(r, p['step'])} {band} its final level "
             f"{num(p['level'])}"
             + (f" (band {share:.0%} of the total decrease)" if share is not None else "")
             + ".")
        return {**out, "verdict": "converged", "level": p.get("level"), "band": p.get("band"),
                "sentence": s}
    if p.get("end_trend") == "rising":
        return {**out, "verdict": "unknown",
                "sentence": "Loss: neither improving nor converged: it rises at the end of the run."}
    reason = p.get("reason") or "no plateau"
    if "still improving" in reason:
        return {**out, "verdict": "improving", "sentence": reason[0].upper() + reason[1:] + "."}
    return {**out, "verdict": "unknown", "sentence": f"Loss: no plateau can be placed: {reason}."}


def exploration_answer(r: dict) -> dict[str, Any]:
    p = r.get("permutation") or {}
    out: dict[str, Any] = {"raw": None, "aligned": None, "relabel_scale": None,
                           "steps": p.get("steps"), "raw_to_last": p.get("raw_to_final"),
                           "aligned_to_last": p.get("aligned_to_final")}
    if (r.get("divergence") or {}).get("diverged") and not p.get("raw_to_final"):
        return {**out, "sentence": "Exploration: not measured: the run diverged."}
    raw, al = p.get("raw_to_final") or [], p.get("aligned_to_final") or []
    if not raw or raw[0] is None or not al or al[0] is None:
        why = p.get("reason") or "no snapshots to compare"
        return {**out, "reason": why, "sentence": f"Exploration modulo permutation: not measured ({why})."}
    base = p["baseline_random_permutation"]["mean"]
    steps = p["steps"]
    out.update(raw=raw[0], aligned=al[0], relabel_scale=base, segment=[steps[0], steps[-1]])
    share = al[0] / base if base > 0 else None
    where = f"{_steps_word(r)} {steps[0]:,}-{steps[-1]:,}"
    s = (f"Over {where} the weights moved {num(al[0])} modulo neuron permutations (raw {num(raw[0])}; "
         f"randomly relabelled copies of the final network lie {num(base)} apart)")
    relabelling = raw[0] > 0 and al[0] < 0.5 * raw[0]
    s += (": most of the raw distance is relabelling of hidden units" if relabelling
          else ": the motion is real, not relabelling")
    w = (r.get("answers") or {}).get("weights") or weights_answer(r)
    explore = {"confined": "stays near one minimum", "converging": "settles into one minimum",
               "diffusing": "keeps exploring (a random walk)",
               "drifting": "keeps moving in one direction"}.get(w.get("verdict"))
    if explore and not relabelling:
        s += f"; with the weights {w['verdict']}, SGD {explore}"
    return {**out, "relabel_share": share, "relabelling": relabelling, "sentence": s + "."}


def compute_answers(report: dict[str, Any]) -> dict[str, Any]:
    """The four answers of a JSON report (see the module docstring)."""
    loss = loss_answer(report)
    w = weights_answer(report, loss)
    return {"weights": w, "loss": loss, "stability": stability_answer(report),
            "exploration": exploration_answer({**report, "answers": {"weights": w}})}

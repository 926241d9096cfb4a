"""Plain-language findings from an analysis report, each sentence with its evidence.

The sentences answer the three questions of DESIGN.md: do the weights keep moving after
the loss converged; after SGD stops improving, does it stay near one minimum or explore;
why did the run blow up.
"""

from __future__ import annotations

from typing import Any


def _g(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def _lr(spec: dict) -> float | None:
    for src in (spec, spec.get("optimizer") if isinstance(spec.get("optimizer"), dict) else {}):
        v = src.get("lr") if isinstance(src, dict) else None
        if isinstance(v, (int, float)):
            return float(v)
    return None


def _divergence(r: dict, spec: dict) -> list[str]:
    d = r.get("divergence") or {}
    if not d.get("diverged") or d.get("step") is None:
        return []
    what = []
    if d.get("loss_step") is not None:
        what.append(f"'{d['loss_metric']}' non-finite at step {d['loss_step']:,}")
    if d.get("weights_step") is not None:
        bad = d.get("first_nonfinite_tensors") or []
        what.append(f"weights non-finite in the snapshot at step {d['weights_step']:,}"
                    + (f" (first in {', '.join(bad[:3])})" if bad else ""))
    if d.get("trainer_step") is not None and not what:
        what.append(f"the trainer stopped it as diverged at step {d['trainer_step']:,}")
    s = f"Diverged at step {d['step']:,}: " + "; ".join(what) + "."
    last = d.get("last_finite_snapshot")
    if last:
        s += f" Last finite snapshot: step {last['step']:,}."
    fg = d.get("fastest_growing_tensor")
    if fg and fg.get("norm_ratio") is not None:
        a, b = fg["between_steps"]
        s += (f" Fastest-growing tensor before it: '{fg['name']}' "
              f"(norm x{_g(fg['norm_ratio'])} between steps {a:,} and {b:,}).")
    lr = _lr(spec)
    s += (" Gradient descent diverges on a quadratic once lr exceeds 2/sharpness "
          "(Cohen et al. 2021)" + (f"; this run used lr = {_g(lr)}" if lr is not None else "")
          + ": compare the learning rate with the sharpness.")
    return [s]


def _plateau(r: dict) -> list[str]:
    p = r.get("plateau") or {}
    if p.get("step") is None:
        return [f"No loss plateau: {p['reason']}."] if p.get("reason") else []
    dec = p.get("total_decrease") or 0.0
    share = f", {p['band'] / dec:.1%} of its total decrease" if dec > 0 else ""
    out = [f"Loss flat since step {p['step']:,}: within +-{_g(p['band'], 2)} of its final level "
           f"{_g(p['level'])}{share} (mini-batch noise {_g(p['noise'], 2)})."]
    m = p.get("weights") or {}
    if m.get("net_after") is not None:
        frac = m.get("after_over_total_displacement")
        s = f"Since then the weights moved {_g(m['net_after'])} (net)"
        if frac is not None:
            s += f", {frac:.0%} of their total displacement from the first snapshot"
        s += f"; path length after the plateau {_g(m['path_after'])} against {_g(m['path_before'])} before it."
        out.append(s)
    return out


def _diffusion(r: dict) -> list[str]:
    d = r.get("diffusion") or {}
    c = d.get("exponent")
    if c is None:
        return []
    lo, hi = d["fit_lag_range"]
    where = "after the plateau" if d.get("segment") == "after plateau" else "over the whole run"
    if c >= 1.5:
        meaning = "directed drift, not diffusion"
    elif c >= 0.7:
        meaning = "they are diffusing through a flat region, not settling"
    elif c >= 0.3:
        meaning = "sub-diffusive: the motion is slowing down, partly confined"
    else:
        meaning = "confined: wandering inside a basin without travelling further"
    s = f"MSD of the weights grows as lag^{c:.2f} (lags {lo:,.0f}..{hi:,.0f} steps, {where}): {meaning}."
    loc = d.get("local_slopes") or {}
    lag_s, sl = loc.get("lags") or [], loc.get("slopes") or []
    upper = [v for l, v in zip(lag_s, sl) if hi / 4 < l <= hi and v is not None]
    if upper and c >= 0.3 and sum(upper) / len(upper) < 0.3:
        s += (f" The local slope falls to {sum(upper) / len(upper):.2f} at the longest fitted lags: "
              "confined on longer time scales.")
    return [s]


def _stationarity(r: dict) -> list[str]:
    st = r.get("stationarity") or {}
    out = []
    if st.get("verdict"):
        v = st["verdict"]
        meaning = {"stationary": "the weight distribution has settled, as for an invariant measure "
                                 "(Zhang et al. 2021)",
                   "not stationary": "the weights have not settled into a stationary distribution",
                   "undecided": "neither clearly settled nor clearly diffusing"}[v]
        out.append(f"Windows of the segment from step {st['segment_start_step']:,} compare with "
                   f"score {st['statistic']:.2f} (0 = stationary, 1 = random walk): {meaning}.")
    c = st.get("update_lag1_correlation")
    if c is not None:
        out.append(f"Successive weight updates correlate at {c:+.2f} (0 for a random walk, negative "
                   "at SGD stationarity, Pflug 1990; +1 for a straight line).")
    return out


def _gradient(r: dict) -> list[str]:
    g = r.get("gradient") or {}
    v = g.get("verdict")
    if v is None or g.get("post_over_early") is None:
        return []
    base = (f"Gradient norm {g['segment']} is {g['post_over_early']:.0%} of its early value "
            f"({_g(g['post_mean'])} vs {_g(g['early'])})")
    tail = {"levels off": "and levels off: the loss converged without reaching a stationary point "
                          "(Zhang et al. 2021).",
            "still falling": "and is still falling.",
            "vanishes": "and vanishes: the weights approach a stationary point."}[v]
    return [base + " " + tail]


def _pca(r: dict) -> list[str]:
    p = r.get("pca") or {}
    ev = p.get("explained_variance_ratio") or []
    if len(ev) < 2:
        return []
    s = f"PC1+PC2 explain {ev[0] + ev[1]:.0%} of the weight variance"
    sim = p.get("random_walk_similarity")
    rw = (p.get("random_walk") or {}).get("baseline_ratio") or []
    if sim is None:
        return [s + "."]
    s += f"; random-walk similarity {sim:.2f}"
    if sim >= 0.7:
        s += (": the smooth PCA curve is what a random walk looks like (Antognini & "
              "Sohl-Dickstein 2018), not evidence of structure.")
    elif rw:
        kind = "drift-dominated" if ev[0] > rw[0] else "flat spectrum: confined motion"
        head = ": partly like a random walk" if sim >= 0.4 else ": unlike a random walk"
        s += f"{head} (PC1 {ev[0]:.0%} against {rw[0]:.0%} for a random walk, {kind})."
    return [s]


def _permutation(r: dict) -> list[str]:
    p = r.get("permutation") or {}
    raw, al = p.get("raw_to_final"), p.get("aligned_to_final")
    if not raw or raw[0] is None or al[0] is None:
        return []
    base = p["baseline_random_permutation"]["mean"]
    s = (f"Modulo neuron permutations the first snapshot is {_g(al[0])} from the final one "
         f"(raw {_g(raw[0])}); randomly relabelled copies of the final network are {_g(base)} away")
    s += (": most of the raw distance is relabelling of hidden units." if raw[0] > 0 and al[0] < 0.5 * raw[0]
          else ": the distance is real motion, not relabelling.")
    return [s]


def diagnose(report: dict[str, Any], spec: dict | None = None) -> list[str]:
    """A short list of plain sentences with numbers."""
    spec = spec or {}
    out: list[str] = []
    out += _divergence(report, spec)
    out += _plateau(report)
    out += _diffusion(report)
    out += _stationarity(report)
    out += _gradient(report)
    out += _pca(report)
    out += _permutation(report)
    if report.get("n_checkpoints", 0) < 3:
        out.append(f"Only {report.get('n_checkpoints', 0)} snapshot(s): weight-space analyses need at least 3.")
    return out

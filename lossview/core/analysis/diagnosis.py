"""Plain-language findings of a report, derived from its answers (never re-deciding them).

The first sentences are the answers' own (loss, weights, stability, exploration, see
:mod:`lossview.core.analysis.answers`); the rest add supporting measurements in words that
cannot contradict them. A diverged run gets its divergence details and the answers only:
nothing measured after the blow-up is described.
"""

from __future__ import annotations

from typing import Any

from lossview.core.analysis.verdicts import RANDOM_WALK_SIMILAR_FROM, num, similarity_words, unit_word


def _at(r: dict, step: int) -> str:
    return f"{unit_word(r.get('step_unit'))} {step:,}"


def _divergence(r: dict) -> list[str]:
    d = r.get("divergence") or {}
    if not d.get("diverged") or d.get("step") is None:
        return []
    what = []
    if d.get("loss_step") is not None:
        what.append(f"'{d['loss_metric']}' non-finite at {_at(r, d['loss_step'])}")
    if d.get("weights_step") is not None:
        bad = d.get("first_nonfinite_tensors") or []
        what.append(f"weights non-finite in the snapshot at {_at(r, d['weights_step'])}"
                    + (f" (first in {', '.join(bad[:3])})" if bad else ""))
    if d.get("trainer_step") is not None and not what:
        what.append(f"the trainer stopped it as diverged at {_at(r, d['trainer_step'])}")
    s = f"Diverged at {_at(r, d['step'])}: " + "; ".join(what) + "."
    last = d.get("last_finite_snapshot")
    if last:
        s += f" Last finite snapshot: {_at(r, last['step'])}."
    fg = d.get("fastest_growing_tensor")
    if fg and fg.get("norm_ratio") is not None:
        a, b = fg["between_steps"]
        s += (f" Fastest-growing tensor before it: '{fg['name']}' "
              f"(norm x{num(fg['norm_ratio'])} between {_at(r, a)} and {_at(r, b)}).")
    lr = (r.get("optimizer") or {}).get("lr")
    if lr is not None:
        s += f" The run used lr = {num(lr)}."
    return [s]


def _plateau_motion(r: dict) -> list[str]:
    m = (r.get("plateau") or {}).get("weights") or {}
    if m.get("net_after") is None:
        return []
    frac = m.get("after_over_total_displacement")
    s = f"Since the plateau the weights moved {num(m['net_after'])} (net)"
    if frac is not None:
        s += f", {frac:.0%} of their total displacement from the first snapshot"
    return [s + f"; path length after the plateau {num(m['path_after'])} against "
            f"{num(m['path_before'])} before it."]


def _gradient(r: dict) -> list[str]:
    g = r.get("gradient") or {}
    if g.get("verdict") is None or g.get("post_over_early") is None:
        return []
    s = (f"Gradient norm {g['segment']} is {g['post_over_early']:.0%} of its early value "
         f"({num(g['post_mean'])} vs {num(g['early'])})")
    loss_converged = ((r.get("answers") or {}).get("loss") or {}).get("verdict") == "converged"
    tail = {"levels off": ("and levels off: the loss converged without the weights reaching a "
                           "stationary point (Zhang et al. 2021)." if loss_converged else "and levels off."),
            "still falling": "and is still falling.",
            "vanishes": "and vanishes: the weights approach a stationary point."}[g["verdict"]]
    return [f"{s} {tail}"]


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
    s += f"; PCA spectrum's similarity to a random walk's {sim:.2f}"
    if rw:
        s += f" (PC1 {ev[0]:.0%} against {rw[0]:.0%} for a random walk)"
    words = similarity_words(sim)
    if words:
        s += f": {words}" + (" (Antognini & Sohl-Dickstein 2018)" if sim >= RANDOM_WALK_SIMILAR_FROM else "")
    return [s + "."]


def diagnose(report: dict[str, Any], spec: dict | None = None) -> list[str]:
    """Plain sentences with numbers: the answers first, then supporting measurements.
    (``spec`` is unused; the report carries the optimizer and the step unit.)"""
    a = report.get("answers") or {}
    out: list[str] = []
    diverged = ((report.get("divergence") or {}).get("diverged"))
    out += _divergence(report)
    for key in ("loss", "weights", "stability", "exploration"):
        s = (a.get(key) or {}).get("sentence")
        if s and not (diverged and key == "exploration"):
            out.append(s)
    if not diverged:
        out += _plateau_motion(report)
        out += _gradient(report)
        out += _pca(report)
    if report.get("n_checkpoints", 0) < 3:
        out.append(f"Only {report.get('n_checkpoints', 0)} snapshot(s): "
                   "weight-space analyses need at least 3.")
    return out

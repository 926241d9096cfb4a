"""Has the weight distribution stopped changing after the plateau (Zhang et al. 2021)?

Window test (docs/analysis.md): the post-plateau snapshots are cut into ``W = 4`` windows
of consecutive snapshots. Observables are the loss and the projections of the trajectory
on ``P = 16`` random Gaussian directions of weight space. For ``u ~ N(0, I_D)`` the
projections ``Y u`` of the centred snapshots are ``N(0, G)``-distributed, so they are drawn
exactly as ``G^{1/2} a`` with ``a ~ N(0, I_T)`` from the Gram matrix, no extra pass needed.
For each observable the statistic is the mean two-sample Kolmogorov-Smirnov distance
between consecutive windows. It is placed between two references computed for the same
window sizes: i.i.d. samples (a stationary process with short memory) and a 1-D random
walk (diffusion never settles)::

    score = (KS - KS_iid) / (KS_random_walk - KS_iid)

near 0: windows agree (stationary on this time scale); near 1: windows differ as for a
random walk. Verdict ``stationary`` below 0.35, ``not stationary`` above 0.65.

Pflug's statistic: the lag-1 correlation of successive updates
``r = sum_t <u_t, u_{t-1}> / sqrt(sum_t |u_t|^2 sum_t |u_{t-1}|^2)`` with
``u_t = w_t - w_{t-1}``; 0 for a random walk, +1 for a straight line, ``-(1 - rho)/2``
for a stationary AR(1)/OU process ``w <- rho w + noise`` (``-eta h / 2`` for SGD on a
quadratic logged every step, where Pflug's ``E[g_t g_{t-1}] < 0``).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lossview.core.analysis.gram import Gram, double_centre
from lossview.core.run import MetricSeries

N_WINDOWS = 4
#: Longest loss series compared (evenly thinned beyond).
MAX_LOSS_POINTS = 2000
N_PROJECTIONS = 16
MIN_PER_WINDOW = 5
STATIONARY_BELOW = 0.35
NOT_STATIONARY_ABOVE = 0.65
_REPS = 200


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance ``sup |F_a - F_b|`` (same value as
    ``scipy.stats.ks_2samp(a, b).statistic``, without the p-value work)."""
    a, b = np.sort(a), np.sort(b)
    v = np.concatenate([a, b])
    fa = np.searchsorted(a, v, side="right") / len(a)
    fb = np.searchsorted(b, v, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def window_ks(x: np.ndarray, n_windows: int = N_WINDOWS) -> float:
    """Mean KS distance between consecutive windows of ``x``."""
    w = np.array_split(np.asarray(x, dtype=float), n_windows)
    return float(np.mean([ks_statistic(w[j], w[j + 1]) for j in range(n_windows - 1)]))


@lru_cache(maxsize=64)
def references(n: int, n_windows: int = N_WINDOWS, reps: int = _REPS) -> tuple[float, float]:
    """Median window KS for ``n`` i.i.d. normal values and for a 1-D Gaussian random walk."""
    rng = np.random.default_rng(12345)
    z = rng.normal(size=(reps, n))
    iid = np.median([window_ks(r, n_windows) for r in z])
    rw = np.median([window_ks(r, n_windows) for r in np.cumsum(z, axis=1)])
    return float(iid), float(rw)


def _score(ks: float, n: int) -> tuple[float, float, float]:
    iid, rw = references(n)
    return (ks - iid) / (rw - iid) if rw > iid else float("nan"), iid, rw


def _verdict(score: float) -> str:
    if score < STATIONARY_BELOW:
        return "stationary"
    if score > NOT_STATIONARY_ABOVE:
        return "not stationary"
    return "undecided"


def random_projections(g: np.ndarray, n: int = N_PROJECTIONS, seed: int = 0) -> np.ndarray:
    """T x n projections of the centred snapshots on random Gaussian directions."""
    lam, u = np.linalg.eigh(double_centre(g))
    a = np.random.default_rng(seed).normal(size=(len(g), n))
    return (u * np.sqrt(np.maximum(lam, 0.0))) @ (u.T @ a)


def update_lag1_correlation(g: np.ndarray) -> float | None:
    """Correlation of successive updates ``u_t = w_t - w_{t-1}`` from a Gram matrix."""
    if len(g) < 3:
        return None
    d = np.diag(g)
    uu = d[1:] + d[:-1] - 2 * np.diag(g, 1)  # |u_t|^2, t = 1..T-1
    # <w_t - w_{t-1}, w_{t+1} - w_t>
    cross = np.diag(g, 1)[1:] - d[1:-1] - np.diag(g, 2) + np.diag(g, 1)[:-1]
    den = np.sqrt(uu[1:].sum() * uu[:-1].sum())
    return float(cross.sum() / den) if den > 0 else None


def stationarity(gram: Gram, start_step: int | None, loss: MetricSeries | None = None) -> dict:
    steps = np.asarray(gram.steps)
    seg = np.flatnonzero(steps >= start_step) if start_step is not None else np.arange(len(steps))
    out: dict = {"segment_start_step": int(steps[seg[0]]) if len(seg) else None,
                 "n_snapshots": len(seg)}
    g = gram.gram[np.ix_(seg, seg)]
    out["update_lag1_correlation"] = update_lag1_correlation(g)
    need = N_WINDOWS * MIN_PER_WINDOW
    if len(seg) < need:
        return {**out, "verdict": None, "statistic": None,
                "reason": f"needs at least {need} snapshots after the plateau, has {len(seg)}"}
    z = random_projections(g)
    ks = float(np.median([window_ks(z[:, j]) for j in range(z.shape[1])]))
    score, iid, rw = _score(ks, len(seg))
    out.update({"statistic": score, "verdict": _verdict(score), "weights_ks": ks,
                "ks_iid_reference": iid, "ks_random_walk_reference": rw,
                "n_windows": N_WINDOWS})
    if loss is not None:
        sel = np.isfinite(loss.values) & (loss.steps >= steps[seg[0]])
        vals = loss.values[sel]
        if len(vals) > MAX_LOSS_POINTS:
            vals = vals[np.round(np.linspace(0, len(vals) - 1, MAX_LOSS_POINTS)).astype(int)]
        if len(vals) >= need:
            lks = window_ks(vals)
            ls, _, _ = _score(lks, len(vals))
            out["loss"] = {"ks": lks, "statistic": ls, "verdict": _verdict(ls)}
    return out

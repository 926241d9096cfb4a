"""Mean squared displacement of the weights against lag, and its log-log exponent.

``MSD(lag) = mean over t of ||w_{t+lag} - w_t||^2`` (time-averaged, lag in training steps),
read off the pairwise squared distances of the centred Gram matrix. References:
Kunin et al. 2021 (anomalous diffusion after convergence, exponents 0.9-1.3), Hoffer et al.
2017 (distance from init ~ log t early in training). Exact checks: a random walk has
``MSD = lag tr(Sigma)`` (slope 1), drift ``MSD = lag^2 |mu|^2`` (slope 2), a stationary
Ornstein-Uhlenbeck process ``MSD = 2 tr(Sigma) (1 - rho^lag)`` (slope falling to 0).
"""

from __future__ import annotations

import numpy as np

from lossview.core.analysis.gram import Gram, sq_distances

#: Fraction of the segment's span up to which the single exponent is fitted.
FIT_MAX_FRACTION = 0.25
#: Points on the log-spaced lag grid.
N_LAGS = 30
#: Fewest lags the exponent is fitted on.
MIN_FIT_LAGS = 3


def _even(steps: np.ndarray) -> bool:
    d = np.diff(steps)
    return len(d) > 0 and d[0] > 0 and bool(np.all(d == d[0]))


def msd_curve(d2: np.ndarray, steps: np.ndarray,
              n_lags: int = N_LAGS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(lags, msd, n_pairs)`` from squared distances ``d2`` of snapshots at ``steps``.

    Evenly spaced snapshots: exact time averages over all pairs ``lag`` apart, for integer
    multiples of the spacing on a log grid. Unevenly spaced (e.g. log-spaced) snapshots:
    all pairs are binned by their step difference on a log grid; each bin reports the mean
    squared distance of its pairs at the mean step difference. Short lags then come only
    from the densely sampled part of the run, which the report says.
    """
    m = len(steps)
    if m < 2:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=int)
    if _even(steps):
        h = int(steps[1] - steps[0])
        ks = np.unique(np.round(np.geomspace(1, m - 1, min(n_lags, m - 1))).astype(int))
        msd = np.array([np.diagonal(d2, k).mean() for k in ks])
        return ks * h, msd, m - ks
    a, b = np.triu_indices(m, 1)
    dt = (steps[b] - steps[a]).astype(float)
    ok = dt > 0
    dt, vals = dt[ok], d2[a[ok], b[ok]]
    edges = np.geomspace(dt.min(), dt.max() * (1 + 1e-9), n_lags + 1)
    which = np.clip(np.searchsorted(edges, dt, side="right") - 1, 0, n_lags - 1)
    counts = np.bincount(which, minlength=n_lags)
    keep = counts > 0
    lag = np.bincount(which, dt, n_lags)[keep] / counts[keep]
    msd = np.bincount(which, vals, n_lags)[keep] / counts[keep]
    return lag, msd, counts[keep]


def local_slopes(lags: np.ndarray, msd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d log MSD / d log lag between neighbouring lags, at their geometric mean lag."""
    ok = (lags > 0) & (msd > 0)
    lg, lm = np.log(lags[ok]), np.log(msd[ok])
    if len(lg) < 2:
        return np.zeros(0), np.zeros(0)
    return np.exp(0.5 * (lg[1:] + lg[:-1])), np.diff(lm) / np.diff(lg)


def fit_exponent(lags: np.ndarray, msd: np.ndarray, lag_max: float) -> tuple[float | None, list]:
    """OLS slope of log MSD on log lag over ``lags <= lag_max``; None when < 3 lags."""
    sel = (lags > 0) & (msd > 0) & (lags <= lag_max)
    if sel.sum() < MIN_FIT_LAGS:
        return None, []
    c = np.polyfit(np.log(lags[sel]), np.log(msd[sel]), 1)[0]
    return float(c), [float(lags[sel].min()), float(lags[sel].max())]


def diffusion(gram: Gram, start_step: int | None = None, n_lags: int = N_LAGS) -> dict:
    """MSD curve, local slopes and exponent of the snapshots at or after ``start_step``.

    The exponent is fitted over lags up to a quarter of the segment's span in steps
    (beyond that few independent pairs remain).
    """
    steps = np.asarray(gram.steps)
    sel = np.ones(len(steps), bool) if start_step is None else steps >= start_step
    seg = np.flatnonzero(sel)
    out = {"segment_start_step": int(steps[seg[0]]) if len(seg) else None,
           "n_snapshots": len(seg)}
    if len(seg) < 4:
        return {**out, "exponent": None,
                "reason": f"needs at least 4 snapshots in the segment, has {len(seg)}",
                "lags": [], "msd": [], "local_slopes": {"lags": [], "slopes": []}}
    d2 = sq_distances(gram.gram[np.ix_(seg, seg)])
    s = steps[seg]
    lags, msd, npairs = msd_curve(d2, s, n_lags)
    span = float(s[-1] - s[0])
    c, rng = fit_exponent(lags, msd, FIT_MAX_FRACTION * span)
    sl_lag, sl = local_slopes(lags, msd)
    res = {**out, "exponent": c, "fit_lag_range": rng or None,
           "evenly_spaced": _even(s),
           "lags": lags.tolist(), "msd": msd.tolist(), "n_pairs": npairs.tolist(),
           "local_slopes": {"lags": sl_lag.tolist(), "slopes": sl.tolist()}}
    if c is None:
        res["reason"] = "too few lags within a quarter of the segment"
    return res

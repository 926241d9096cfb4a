"""Where the loss stopped improving beyond its own noise, robust to mini-batch noise.

Rule (documented in docs/analysis.md):

1. smooth the finite loss with a running median of ``w`` points (odd, about n/25, 5..201);
2. final level ``L_f`` = median of the last ``max(w, n/10)`` raw values;
3. noise ``sigma`` = 1.4826 * MAD of successive differences / sqrt(2) over the last quarter; the running
   median of ``w`` points then scatters by ``s_w = 1.2533 sigma / sqrt(w)`` and the final
   level by ``s_f = 1.2533 sigma / sqrt(n_f)`` (``n_f`` values in it);
4. band = max(z * sqrt(s_w^2 + s_f^2), 1% of the total decrease of the smoothed loss),
   ``z = 2 + sqrt(2 ln(n / w))``: the expected maximum of ``n / w`` independent smoothed
   values plus two standard deviations, so that noise alone rarely leaves the band;
5. plateau = the first logged step from which the smoothed loss stays within
   ``L_f +- band`` to the end. A plateau shorter than two smoothing windows means the loss
   is still improving: no plateau.

The scale is the one the user sees: a positive loss whose smoothed curve spans more than
:data:`LOG_SPAN` (a factor 10) is plotted on a log axis, so the rule runs on ``log10(loss)``
there; a loss that still falls tenfold is not flat however small it is in absolute terms.
No plateau is declared after a decrease when the band is more than :data:`MAX_BAND_SHARE`
of the total decrease: the noise is then too large to say where (or whether) the loss
stopped falling, and the result says what was measured instead.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter

from lossview.core.run import MetricSeries

MIN_POINTS = 10
REL_DECREASE = 0.01
#: Dynamic range (max / min of the smoothed loss) above which the rule runs on log10(loss).
LOG_SPAN = 10.0
#: Largest band, as a share of the total decrease, for which a plateau is declared.
MAX_BAND_SHARE = 0.5


def _window(n: int) -> int:
    w = int(np.clip(n // 25, 5, 201))
    return w if w % 2 else w + 1


def find_plateau(loss: MetricSeries | None) -> dict:
    """``{"step": int | None, "level", "band", "noise", ...}`` for a loss series."""
    if loss is None or len(loss) == 0:
        return {"step": None, "reason": "no loss was logged"}
    ok = np.isfinite(loss.values)
    if not ok.all():
        first_bad = int(np.argmin(ok))
        ok[first_bad:] = False  # only the part before the first non-finite value
    steps, vals = loss.steps[ok], loss.values[ok]
    n = len(vals)
    if n < MIN_POINTS:
        return {"step": None, "reason": f"needs at least {MIN_POINTS} finite loss values, has {n}"}
    w = min(_window(n), n if n % 2 else n - 1)
    smooth = median_filter(vals, size=w, mode="reflect")
    log = bool(np.all(vals > 0) and smooth.min() > 0 and smooth.max() / smooth.min() > LOG_SPAN)
    if log:
        vals = np.log10(vals)
        smooth = np.log10(smooth)
    n_f = max(w, n // 10)
    level = float(np.median(vals[-n_f:]))
    tail = slice(n - max(n // 4, w), n)
    # the noise sd from successive differences (1.4826 MAD / sqrt 2): a trend slower than
    # the logging interval barely enters it, and unlike residuals from the running median
    # (which contains the point itself) it is not shrunk for short windows
    dt = np.diff(vals[tail])
    noise = float(1.4826 * np.median(np.abs(dt - np.median(dt))) / np.sqrt(2.0)) if len(dt) else 0.0
    decrease = float(max(smooth.max() - level, 0.0))
    z = 2.0 + np.sqrt(2.0 * np.log(max(n / w, 1.0)))
    band = max(z * 1.2533 * noise * np.sqrt(1.0 / w + 1.0 / n_f), REL_DECREASE * decrease,
               1e-12 * abs(level))
    outside = np.abs(smooth - level) > band
    p = int(np.flatnonzero(outside)[-1]) + 1 if outside.any() else 0
    share = band / decrease if decrease > 0 else None
    out = {"scale": "log" if log else "linear", "smoothing_window": w,
           "band_share_of_decrease": share}
    if log:  # back to loss units; the band is a factor on a log axis
        out.update(level=float(10 ** level), band=float(10 ** level * (10 ** band - 1)),
                   band_factor=float(10 ** band), noise_decades=noise,
                   noise=float(10 ** level * (10 ** noise - 1)),
                   total_decrease=float(10 ** (level + decrease) - 10 ** level),
                   decrease_decades=decrease, relative_band=float(10 ** band - 1))
    else:
        out.update(level=level, band=band, noise=noise, total_decrease=decrease,
                   relative_band=band / abs(level) if level != 0 else None)
    if p >= n - 2 * w:
        ref = smooth[max(min(p, n - 2 * w) - 1, 0)]
        if smooth[-1] > ref + band:
            return {"step": None, **out, "end_trend": "rising",
                    "reason": "the loss rises at the end of the run"}
        if smooth[-1] >= ref - band:
            return {"step": None, **out, "end_trend": "unclear",
                    "reason": "the loss left its final band shortly before the end without a clear fall"}
        what = ("the loss is still improving at the end of the run"
                + (f" (it fell {decrease:.1f} decades on the log scale)" if log else ""))
        return {"step": None, **out, "end_trend": "falling", "reason": what}
    if p > 0 and share is not None and share > MAX_BAND_SHARE:
        return {"step": None, **out,
                "reason": (f"the noise band is {share:.0%} of the total decrease"
                           + (" on the log scale" if log else "")
                           + ": too noisy to say where the loss stopped falling")}
    # a plateau must be flat as a whole: its least-squares trend may not move the loss by
    # more than the band across it (an exponential fall crosses a narrow final band in a
    # few windows and would otherwise look flat there)
    change = float(np.polyfit(steps[p:].astype(float), vals[p:], 1)[0] * (steps[-1] - steps[p]))
    out["trend_over_plateau"] = change
    if abs(change) > band:
        falls = change < 0
        what = (f"{'fell' if falls else 'rose'} {abs(change):.2g} decades" if log
                else f"{'fell' if falls else 'rose'} by {abs(change):.3g}")
        return {"step": None, **out, "end_trend": "falling" if falls else "rising",
                "reason": (("the loss is still improving at the end of the run" if falls else
                            "the loss rises at the end of the run")
                           + f": it {what} over its last {len(vals) - p} values, more than its noise band")}
    post = (10 ** vals[p:]) if log else vals[p:]
    q = max(len(post) // 4, 1)
    return {"step": int(steps[p]), **out,
            "flat_from_start": p == 0,
            "post_mean": float(post.mean()),
            "post_change": float(np.median(post[-q:]) - np.median(post[:q])),
            "n_points_after": int(n - p)}


def weight_motion(steps: np.ndarray, from_init: np.ndarray, to_final: np.ndarray,
                  step_length: np.ndarray, plateau_step: int) -> dict:
    """How far the weights moved after the plateau relative to before it."""
    i = int(np.searchsorted(steps, plateau_step, side="left"))
    if i >= len(steps):
        return {"snapshot_index": None, "reason": "no snapshot after the plateau"}
    total = float(from_init[-1])
    after = float(to_final[i])
    return {
        "snapshot_index": i,
        "snapshot_step": int(steps[i]),
        "net_before": float(from_init[i]),
        "net_after": after,
        "path_before": float(np.sum(step_length[1:i + 1])),
        "path_after": float(np.sum(step_length[i + 1:])),
        "after_over_total_displacement": after / total if total > 0 else None,
        "after_over_before": after / float(from_init[i]) if from_init[i] > 0 else None,
        "n_snapshots_after": int(len(steps) - i),
    }

"""The flat basin of a surface: the connected region within a tolerance of the minimum.

``mask`` = grid points with ``loss <= min + tolerance`` connected (4-neighbours) to the
grid minimum. Its width along each axis is measured on the grid line through the
minimum, with the two ends placed where the loss crosses ``min + tolerance`` (linear
interpolation between the last point inside and the first outside); an end at the edge
of the grid makes that width a lower bound (``open_alpha``/``open_beta``). For a quadratic
``L = L0 + kappa a^2 / 2`` the width is ``2 sqrt(2 tolerance / kappa)`` (docs/science.md §7).

Tolerance: the caller's, else (runs) twice the standard deviation of the snapshots'
full-data loss after the plateau, else :data:`DEFAULT_RELATIVE_TOLERANCE` of the
surface's median rise above its minimum.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

#: Default tolerance as a fraction of (median - min) of the surface's finite values.
DEFAULT_RELATIVE_TOLERANCE = 0.05


def default_tolerance(loss: np.ndarray) -> float:
    v = loss[np.isfinite(loss)]
    if not len(v):
        return float("nan")
    rise = float(np.median(v) - v.min())
    return DEFAULT_RELATIVE_TOLERANCE * rise if rise > 0 else 1e-12 * max(abs(float(v.min())), 1.0)


def _width(axis: np.ndarray, profile: np.ndarray, i0: int, level: float) -> tuple[float, bool]:
    """Length of the interval around ``axis[i0]`` where ``profile <= level``."""
    n = len(axis)
    if n < 2:
        return float("nan"), False
    inside = np.isfinite(profile) & (profile <= level)
    lo = i0
    while lo > 0 and inside[lo - 1]:
        lo -= 1
    hi = i0
    while hi < n - 1 and inside[hi + 1]:
        hi += 1
    open_ = bool(lo == 0 or hi == n - 1)

    def cross(i_in: int, i_out: int) -> float:
        a, b = profile[i_in], profile[i_out]
        if not np.isfinite(b) or b <= a:
            return float(axis[i_in])
        t = (level - a) / (b - a)
        return float(axis[i_in] + t * (axis[i_out] - axis[i_in]))

    left = float(axis[0]) if lo == 0 else cross(lo, lo - 1)
    right = float(axis[-1]) if hi == n - 1 else cross(hi, hi + 1)
    return right - left, open_


def flat_basin(alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray,
               tolerance: float | None = None,
               coords: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """``(mask, info)``: the basin's grid mask and ``{"tolerance", "minimum",
    "argmin": [a, b], "width_alpha", "width_beta", "open_alpha", "open_beta", "inside"}``.

    ``inside[t]``: trajectory point ``coords[t]`` (plane coordinates) lies within the grid,
    its bilinearly interpolated surface loss is within the tolerance and the nearest grid
    point belongs to the basin.
    """
    alphas, betas = np.asarray(alphas, float), np.asarray(betas, float)
    loss = np.asarray(loss, float)
    finite = np.isfinite(loss)
    if not finite.any():
        t = 0 if coords is None else len(coords)
        return np.zeros(loss.shape, bool), {"tolerance": float("nan"), "minimum": float("nan"),
                                            "argmin": None, "width_alpha": float("nan"),
                                            "width_beta": float("nan"), "open_alpha": False,
                                            "open_beta": False, "inside": [False] * t}
    tol = default_tolerance(loss) if tolerance is None else float(tolerance)
    filled = np.where(finite, loss, np.inf)
    i0, j0 = np.unravel_index(int(np.argmin(filled)), loss.shape)
    m = float(loss[i0, j0])
    level = m + tol
    below = finite & (loss <= level)
    labels, _ = ndimage.label(below)
    mask = labels == labels[i0, j0]
    wa, oa = _width(alphas, loss[:, j0], i0, level)
    wb, ob = _width(betas, loss[i0, :], j0, level)
    info = {"tolerance": tol, "minimum": m, "argmin": [float(alphas[i0]), float(betas[j0])],
            "width_alpha": wa, "width_beta": wb, "open_alpha": oa, "open_beta": ob,
            "inside": []}
    if coords is not None and len(coords):
        info["inside"] = inside_basin(alphas, betas, loss, mask, level, coords)
    return mask, info


def inside_basin(alphas, betas, loss, mask, level, coords) -> list[bool]:
    coords = np.asarray(coords, float)
    if coords.ndim == 1 or coords.shape[1] == 1:
        coords = np.column_stack([coords.reshape(-1), np.zeros(len(coords))])
    out = []
    if len(alphas) > 1 and len(betas) > 1:
        interp = RegularGridInterpolator((alphas, betas), loss, bounds_error=False, fill_value=np.nan)
        vals = interp(coords)
    elif len(betas) == 1:
        vals = np.interp(coords[:, 0], alphas, loss[:, 0], left=np.nan, right=np.nan)
    else:
        vals = np.interp(coords[:, 1], betas, loss[0, :], left=np.nan, right=np.nan)
    for (a, b), v in zip(coords, vals):
        i = int(np.argmin(np.abs(alphas - a)))
        j = int(np.argmin(np.abs(betas - b)))
        out.append(bool(np.isfinite(v) and v <= level and mask[i, j]))
    return out

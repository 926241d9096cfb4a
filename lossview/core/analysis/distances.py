"""Distances travelled by the weights, computed in one streaming pass over the snapshots."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lossview.core.run import Run


@dataclass
class Distances:
    """Per-snapshot motion of the weight vector (Euclidean norms).

    from_init[i] = ||w_i - w_0||, step_length[i] = ||w_i - w_{i-1}|| (0 for i = 0),
    path_length = sum of step lengths, net_displacement = ||w_last - w_0||,
    param_norm[i] = ||w_i||, nonfinite = indices of snapshots with NaN/inf weights,
    to_final[i] = ||w_last - w_i||,
    update_cosine[i] = cos(w_i - w_{i-1}, w_{i-1} - w_{i-2}) (NaN for i < 2),
    update_ratio[i] = ||w_i - w_{i-1}|| / ||w_{i-1}|| (NaN for i = 0).
    """

    from_init: np.ndarray
    step_length: np.ndarray
    param_norm: np.ndarray
    nonfinite: list[int]
    to_final: np.ndarray | None = None
    update_cosine: np.ndarray | None = None
    update_ratio: np.ndarray | None = None

    @property
    def path_length(self) -> float:
        return float(np.nansum(self.step_length))

    @property
    def net_displacement(self) -> float:
        return float(self.from_init[-1])

    def to_json(self) -> dict:
        return {
            "from_init": _finite_list(self.from_init),
            "step_length": _finite_list(self.step_length),
            "param_norm": _finite_list(self.param_norm),
            "path_length": _finite(self.path_length),
            "net_displacement": _finite(self.net_displacement),
            "nonfinite_snapshots": self.nonfinite,
            "to_final": None if self.to_final is None else _finite_list(self.to_final),
            "update_cosine": None if self.update_cosine is None else _finite_list(self.update_cosine),
            "update_ratio": None if self.update_ratio is None else _finite_list(self.update_ratio),
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _finite_list(a: np.ndarray) -> list[float | None]:
    return [_finite(v) for v in np.asarray(a, dtype=float).tolist()]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` accumulated in float64 whatever the inputs' dtype (einsum casts in small
    buffers: no float64 copy of a float32 vector is made)."""
    return float(np.einsum("i,i->", a, b, dtype=np.float64))


#: Entries per chunk of the blocked float32 -> float64 accumulation: a few float64 chunk
#: buffers stay in the CPU cache, so no float64 copy of a whole snapshot is ever made.
CHUNK = 1 << 13


def distances(run: Run) -> Distances:
    """One pass over the run (the last snapshot, read first, is not read again) holding five weight
    vectors at a time in the run's own float dtype (:attr:`Run.float_dtype`), and a few
    float64 chunks of :data:`CHUNK` entries.

    Vectors are read into reused buffers (for native runs straight from the file); the
    vectors are walked in chunks, each chunk widened to float64 in a small buffer, the
    differences taken in float64 (exact for float32 weights) and every norm and inner
    product accumulated in float64, so the results are those of float64 copies of the
    snapshots (to the order of summation) without making them.
    """
    n = len(run)
    from_init = np.zeros(n)
    step = np.zeros(n)
    norm = np.zeros(n)
    to_final = np.zeros(n)
    cosine = np.full(n, np.nan)
    ratio = np.full(n, np.nan)
    nonfinite: list[int] = []
    if n == 0:
        return Distances(from_init, step, norm, nonfinite, to_final, cosine, ratio)
    dt = run.float_dtype
    d = run.n_params
    w_last = run.vector(n - 1, dtype=dt, cache=False)
    w0 = np.empty(d, dtype=dt)
    cur, prev, prev2 = (np.empty(d, dtype=dt) for _ in range(3))
    c = min(CHUNK, max(d, 1))
    x, diff, upd, pupd = (np.empty(c) for _ in range(4))
    dot = np.dot
    with np.errstate(invalid="ignore", over="ignore"):
        for i in range(n):
            w = w_last if i == n - 1 else run.vector(i, out=cur, cache=False)  # read once, not twice
            if i == 0:
                w0[:] = w
            sq = tf = fi = st = cs = 0.0
            fin = True
            for a in range(0, d, c):
                b = min(a + c, d)
                k = b - a
                xs, ds, us = x[:k], diff[:k], upd[:k]
                np.copyto(xs, w[a:b])
                sq += dot(xs, xs)
                if dt == np.float64 and fin and not np.isfinite(xs).all():
                    fin = False
                np.subtract(w_last[a:b], xs, out=ds)
                tf += dot(ds, ds)
                if i >= 1:
                    np.subtract(xs, w0[a:b], out=ds)
                    fi += dot(ds, ds)
                    np.subtract(xs, prev[a:b], out=us)
                    st += dot(us, us)
                    if i >= 2:
                        ps = pupd[:k]
                        np.copyto(ps, prev[a:b])
                        ps -= prev2[a:b]
                        cs += dot(us, ps)
            # a float64 sum of squares is finite iff every entry is (float32 squares cannot
            # overflow it); a float64 input may overflow, so check it entry by entry then
            if not np.isfinite(sq) or not fin:
                nonfinite.append(i)
            norm[i] = np.sqrt(sq)
            to_final[i] = np.sqrt(tf)
            if i >= 1:
                from_init[i] = np.sqrt(fi)
                step[i] = np.sqrt(st)
                ratio[i] = step[i] / norm[i - 1] if norm[i - 1] > 0 else np.nan
                if i >= 2:
                    den = step[i] * step[i - 1]
                    cosine[i] = cs / den if den > 0 else np.nan
            cur, prev, prev2 = prev2, cur, prev
    return Distances(from_init, step, norm, nonfinite, to_final, cosine, ratio)

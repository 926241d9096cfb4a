"""Smoothing of noisy per-step metrics (the loss panel's EMA slider)."""

from __future__ import annotations

import numpy as np


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average over the finite values; non-finite entries stay NaN."""
    v = np.asarray(values, dtype=float)
    out = np.full(v.shape, np.nan)
    ok = np.isfinite(v)
    if weight <= 0 or ok.sum() == 0:
        out[ok] = v[ok]
        return out
    out[ok] = _ema_finite(v[ok], float(weight))
    return out


def _ema_finite(x: np.ndarray, w: float, block: int = 64) -> np.ndarray:
    """``y[n] = w y[n-1] + (1 - w) x[n]`` with ``y[-1] = x[0]``, in blocks of ``block``.

    Within a block ``y = (1 - w) L x + w^(k+1) y_prev`` with ``L[k, j] = w^(k-j)`` (j <= k),
    one small matrix product for all blocks, then the carry from block to block. The same
    numbers as ``scipy.signal.lfilter`` to float64 rounding, without importing
    ``scipy.signal`` (0.8 s of the app's start-up).
    """
    n = len(x)
    nb = -(-n // block)
    pad = np.zeros(nb * block)
    pad[:n] = x
    k = np.arange(block)
    diff = k[:, None] - k[None, :]
    low = np.where(diff >= 0, w ** np.maximum(diff, 0), 0.0)
    z = (1.0 - w) * (pad.reshape(nb, block) @ low.T)
    carry = w ** (k + 1)
    prev = x[0]
    for i in range(nb):
        z[i] += carry * prev
        prev = z[i, -1]
    return z.reshape(-1)[:n]

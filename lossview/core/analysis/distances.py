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


def distances(run: Run) -> Distances:
    """One pass over the run (plus a read of the last snapshot) holding at most five
    weight vectors at a time."""
    n = len(run)
    from_init = np.zeros(n)
    step = np.zeros(n)
    norm = np.zeros(n)
    to_final = np.zeros(n)
    cosine = np.full(n, np.nan)
    ratio = np.full(n, np.nan)
    nonfinite: list[int] = []
    w_last = run.vector(n - 1) if n else None
    w0 = prev = prev_update = None
    with np.errstate(invalid="ignore", over="ignore"):
        for i, w in run.iter_vectors():
            if not np.isfinite(w).all():
                nonfinite.append(i)
            norm[i] = np.linalg.norm(w)
            to_final[i] = np.linalg.norm(w_last - w)
            if w0 is None:
                w0 = w
            else:
                update = w - prev
                from_init[i] = np.linalg.norm(w - w0)
                step[i] = np.linalg.norm(update)
                ratio[i] = step[i] / norm[i - 1] if norm[i - 1] > 0 else np.nan
                if prev_update is not None:
                    den = step[i] * step[i - 1]
                    cosine[i] = float(update @ prev_update) / den if den > 0 else np.nan
                prev_update = update
            prev = w
    return Distances(from_init, step, norm, nonfinite, to_final, cosine, ratio)

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
    param_norm[i] = ||w_i||, nonfinite = indices of snapshots with NaN/inf weights.
    """

    from_init: np.ndarray
    step_length: np.ndarray
    param_norm: np.ndarray
    nonfinite: list[int]

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
        }


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _finite_list(a: np.ndarray) -> list[float | None]:
    return [_finite(v) for v in np.asarray(a, dtype=float).tolist()]


def distances(run: Run) -> Distances:
    """One pass over the run holding at most three weight vectors at a time."""
    n = len(run)
    from_init = np.zeros(n)
    step = np.zeros(n)
    norm = np.zeros(n)
    nonfinite: list[int] = []
    w0 = prev = None
    for i, w in run.iter_vectors():
        if not np.isfinite(w).all():
            nonfinite.append(i)
        norm[i] = np.linalg.norm(w)
        if w0 is None:
            w0 = w
        else:
            from_init[i] = np.linalg.norm(w - w0)
            step[i] = np.linalg.norm(w - prev)
        prev = w
    return Distances(from_init, step, norm, nonfinite)

"""Exact synthetic trajectories for the analysis tests (seeded)."""

from __future__ import annotations

import numpy as np


def random_walk(t: int, d: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(scale=scale, size=(t, d)), axis=0)


def ballistic(t: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=d) + np.outer(np.arange(t), rng.normal(size=d))


def ou(t: int, d: int, gamma: float, seed: int = 0) -> np.ndarray:
    """Stationary x <- (1 - gamma) x + xi, xi ~ N(0, I): Var = 1 / (gamma (2 - gamma))."""
    rng = np.random.default_rng(seed)
    rho = 1.0 - gamma
    x = rng.normal(size=d) / np.sqrt(gamma * (2.0 - gamma))
    out = np.empty((t, d))
    for i in range(t):
        out[i] = x
        x = rho * x + rng.normal(size=d)
    return out

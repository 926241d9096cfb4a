"""Synthetic user runs (walks, loss curves) saved with ``torch.save``, and the numpy truth
helpers of the acceptance tests of lossview's answers (issue 18). See user_runs.py."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from user_runs import UserRun, flat


def save_walk(folder: Path, walk: np.ndarray, every: int = 10) -> UserRun:
    """Save the rows of ``walk`` as bare state_dicts ``{"fc.weight": [40, 50]}``."""
    folder.mkdir(parents=True)
    steps, ws = [], []
    for i, w in enumerate(walk):
        sd = {"fc.weight": torch.tensor(w.reshape(40, 50), dtype=torch.float32)}
        torch.save(sd, folder / f"model_{i * every}.pt")
        steps.append(i * every)
        ws.append(flat(sd))
    return UserRun(folder, steps, np.array(ws))


def random_walk(folder: Path, t: int = 200, d: int = 2000) -> UserRun:
    """Gaussian steps of RMS 0.01 per coordinate from a random start."""
    rng = np.random.default_rng(3)
    steps = rng.normal(scale=0.01, size=(t, d))
    steps[0] = rng.normal(scale=0.1, size=d)
    return save_walk(folder, np.cumsum(steps, axis=0))


def drift(folder: Path, t: int = 200, d: int = 2000) -> UserRun:
    """Constant velocity (|v| = 0.05 per snapshot) plus Gaussian steps of norm ~0.3 |v|."""
    rng = np.random.default_rng(4)
    v = rng.normal(size=d)
    v *= 0.05 / np.linalg.norm(v)
    steps = v + rng.normal(scale=0.3 * 0.05 / math.sqrt(d), size=(t, d))
    steps[0] = rng.normal(scale=0.1, size=d)
    return save_walk(folder, np.cumsum(steps, axis=0))


def loss_curve_run(folder: Path, losses: np.ndarray, every: int = 10, seed: int = 8) -> UserRun:
    """Weights whose mean squared distance from a fixed w* is exactly the given loss:
    ``w_t = w* + sqrt(L_t) z_t`` with ``z_t`` of unit RMS (a slowly turning direction),
    saved as tutorial dicts with ``step`` and ``loss``."""
    rng = np.random.default_rng(seed)
    d = 50
    w_star, u = rng.normal(size=d), rng.normal(size=d)
    folder.mkdir(parents=True)
    steps, ws, saved = [], [], []
    for i, loss in enumerate(losses):
        z = u + 0.3 * rng.normal(size=d)
        w = w_star + math.sqrt(loss) * z / np.sqrt(np.mean(z ** 2))
        sd = {"layer.weight": torch.tensor(w.reshape(5, 10), dtype=torch.float32)}
        w32 = flat(sd)
        saved.append(float(np.mean((w32 - w_star) ** 2)))
        torch.save({"step": i * every, "model_state_dict": sd, "loss": saved[-1]},
                   folder / f"checkpoint_{i * every}.pt")
        steps.append(i * every)
        ws.append(w32)
    return UserRun(folder, steps, np.array(ws), np.array(saved), info={"w_star": w_star})


def exponential_loss(folder: Path) -> UserRun:
    """L_t = 2 exp(-t / tau) with 10 % log-normal noise, 200 snapshots; tau puts a 30x fall
    into the last half."""
    t = np.arange(200) * 10.0
    tau = 1000.0 / math.log(30.0)
    rng = np.random.default_rng(9)
    return loss_curve_run(folder, 2.0 * np.exp(-t / tau + 0.1 * rng.normal(size=t.size)))


def plateau_loss(folder: Path, floor: float = 0.01, tau: float = 100.0) -> UserRun:
    """L_t = max(floor, 2 exp(-t / tau)) with 10 % log-normal noise: flat from
    t_c = tau ln(2 / floor) ~ 530 on."""
    t = np.arange(200) * 10.0
    rng = np.random.default_rng(10)
    clean = np.maximum(floor, 2.0 * np.exp(-t / tau))
    run = loss_curve_run(folder, clean * np.exp(0.1 * rng.normal(size=t.size)))
    run.info.update(change_step=tau * math.log(2.0 / floor), floor=floor, clean=clean)
    return run


# ---------------------------------------------------------------------- truth helpers


def msd(weights: np.ndarray, lags) -> np.ndarray:
    """Time-averaged mean squared displacement ``mean_i ||w_{i+k} - w_i||^2`` per lag k."""
    return np.array([np.mean(np.sum((weights[k:] - weights[:-k]) ** 2, axis=1)) for k in lags])


def loglog_slope(lags, values) -> float:
    return float(np.polyfit(np.log(lags), np.log(values), 1)[0])


def step_lengths(weights: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(weights, axis=0), axis=1)


def update_cosines(weights: np.ndarray) -> np.ndarray:
    s = np.diff(weights, axis=0)
    return np.sum(s[1:] * s[:-1], axis=1) / (np.linalg.norm(s[1:], axis=1)
                                             * np.linalg.norm(s[:-1], axis=1))

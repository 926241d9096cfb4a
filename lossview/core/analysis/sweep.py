"""Learning-rate sweep: several runs of one problem, trained in sequence, compared in one
PCA basis (no Qt here; :mod:`lossview.gui.training.sweep_view` draws it).

The shared basis is fitted on the snapshots of all runs together, so the paths are
directly comparable. A diverging run's last snapshots can be astronomically far away;
fitting on them would squash every other path to a dot, so snapshots farther from the
common start than ``OUTLIER_FACTOR`` times the farthest non-diverged snapshot are left
out of the fit (still projected, and drawn running off the plot).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.analysis import verdicts as V

DEFAULT_MULTIPLIERS = (1.0, 3.0, 10.0)
OUTLIER_FACTOR = 3.0


@dataclass
class SweepEvent:
    """Progress of run ``index`` (of ``n_runs``) of the sweep: a trainer ``TrainProgress``."""

    index: int
    n_runs: int
    lr: float
    progress: Any
    #: after a run diverged: the sharpness (top Hessian eigenvalue) at the common start
    sharpness: float | None = None


def parse_multipliers(text: str) -> list[float]:
    """``"1, 3, 10"`` -> ``[1.0, 3.0, 10.0]``; ValueError with one line if malformed."""
    out = []
    for part in text.replace(";", ",").replace("x", "").replace("×", "").split(","):
        part = part.strip()
        if not part:
            continue
        v = float(part)
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"learning-rate multiplier must be a positive number, not {part!r}")
        out.append(v)
    if not out:
        raise ValueError("give at least one learning-rate multiplier, e.g. 1, 3, 10")
    return out


def sweep_folder_names(base: Path, lrs: Sequence[float]) -> list[Path]:
    return [Path(base) / f"lr_{lr:.4g}" for lr in lrs]


def run_sweep(config: Any, lrs: Sequence[float], out_dirs: Sequence[Path]
              ) -> Generator[SweepEvent, None, list]:
    """Train ``config`` once per learning rate, in sequence; returns the summaries.

    Closing the generator stops the run in progress (its folder keeps what was saved)
    and skips the rest.
    """
    from lossview.core.train.trainer import Trainer

    summaries = []
    start_sharpness: float | None = None
    for i, (lr, out) in enumerate(zip(lrs, out_dirs)):
        trainer = Trainer(replace(config, lr=float(lr), progress_interval=0.0), Path(out))
        gen = trainer.run()
        try:
            while True:
                try:
                    ev = next(gen)
                except StopIteration as stop:
                    summaries.append(stop.value)
                    break
                yield SweepEvent(i, len(lrs), float(lr), ev)
        finally:
            gen.close()
        # the sharpness at the common start says which side of the stability limit each
        # lr lies (SGD only: the limit does not apply to adaptive optimizers): measured
        # at once after a divergence, else once the last run ended
        diverged = getattr(summaries[-1], "status", None) == "diverged"
        if (diverged or i == len(lrs) - 1) and trainer.config.optimizer == "sgd" \
                and start_sharpness is None:
            start_sharpness = start_point_sharpness(trainer.problem)
            yield SweepEvent(i, len(lrs), float(lr), None, start_sharpness)
    return summaries


def start_point_sharpness(problem: Any) -> float | None:
    """Top Hessian eigenvalue of the full training loss at the problem's initial weights
    (Lanczos on Hessian-vector products; every run of a sweep starts there)."""
    try:
        from lossview.core.surface.curvature import sharpness

        model = problem.make_model()
        return float(sharpness(model, problem.loss_fn, problem.train_data, tol=1e-3))
    except Exception:  # noqa: BLE001 - the label then goes without the stability check
        return None


@dataclass
class SharedPCA:
    """Coordinates of every run's snapshots in one basis.

    ``coords[i]`` is ``[T_i, 2]``; ``explained`` the variance ratios of PC1 and PC2 over
    the snapshots used for the fit (``used[i]`` marks them).
    """

    coords: list[np.ndarray]
    explained: tuple[float, float]
    used: list[np.ndarray]


def shared_pca(runs: Sequence[np.ndarray], diverged: Sequence[bool] | None = None) -> SharedPCA:
    """PCA of the snapshots of all ``runs`` (each ``[T_i, D]``) together.

    Non-finite snapshots are dropped from the fit and get NaN coordinates; see the module
    docstring for the outlier rule applied to diverged runs.
    """
    runs = [np.asarray(r, dtype=np.float64) for r in runs]
    if any(r.ndim != 2 for r in runs):
        raise ValueError("each run must be a [snapshots, parameters] array")
    diverged = list(diverged) if diverged is not None else [False] * len(runs)
    finite = [np.isfinite(r).all(axis=1) if len(r) else np.zeros(0, bool) for r in runs]
    starts = [r[f][0] for r, f in zip(runs, finite) if f.any()]
    if not starts:
        return SharedPCA([np.full((len(r), 2), np.nan) for r in runs], (math.nan, math.nan),
                         [np.zeros(len(r), bool) for r in runs])
    origin = np.mean(starts, axis=0)
    dist = [np.linalg.norm(np.where(f[:, None], r, 0.0) - origin, axis=1) if len(r) else
            np.zeros(0) for r, f in zip(runs, finite)]
    calm = [d[f] for d, f, dv in zip(dist, finite, diverged) if not dv and f.any()]
    reach = max((float(c.max()) for c in calm), default=math.inf)
    limit = OUTLIER_FACTOR * reach if reach > 0 else math.inf
    used = [f & (d <= limit) for f, d in zip(finite, dist)]
    fit = np.concatenate([r[u] for r, u in zip(runs, used)]) if any(u.any() for u in used) else None
    if fit is None or len(fit) < 2:
        return SharedPCA([np.full((len(r), 2), np.nan) for r in runs], (math.nan, math.nan), used)
    mean = fit.mean(axis=0)
    y = fit - mean
    # thin SVD of the (n_snapshots x D) matrix: n_snapshots is small
    _, s, vt = np.linalg.svd(y, full_matrices=False)
    total = float((s**2).sum())
    k = min(2, vt.shape[0])
    basis = vt[:k]
    ev = [(float(s[j] ** 2) / total if total > 0 else math.nan) for j in range(k)]
    ev += [math.nan] * (2 - k)
    coords = []
    for r, f in zip(runs, finite):
        c = np.full((len(r), 2), np.nan)
        if f.any():
            c[f, :k] = (r[f] - mean) @ basis.T
            if k < 2:
                c[f, 1] = 0.0
        coords.append(c)
    return SharedPCA(coords, (ev[0], ev[1]), used)


def limit_side(lr: float, sharpness: float | None, momentum: float = 0.0) -> str:
    """Which side of the stability limit ``lr`` lies for the measured ``sharpness``, in
    core's words and numbers: ``"above the limit 2/λ_max = 2"`` ("" with no sharpness)."""
    if sharpness is None or not math.isfinite(sharpness) or sharpness <= 0:
        return ""
    ratio = V.stability_ratio(sharpness, lr, momentum)
    return f"{V.band_of(ratio)} the limit {V.limit_formula(momentum)} = {V.num(lr / ratio)}"


def divergence_label(step: int, lr: float, sharpness: float | None,
                     momentum: float = 0.0) -> str:
    """``"diverged at step N: lr 3 above the limit 2/λ_max = 2"`` (Cohen et al. 2021
    stability limit, measured at the runs' common start)."""
    side = limit_side(lr, sharpness, momentum)
    return f"diverged at step {step:,}" + (f": lr {V.num(lr)} {side}" if side else "")


def wrap_label(text: str) -> str:
    """The divergence label on two lines, for placing inside a plot."""
    return text.replace(": ", "\n", 1)



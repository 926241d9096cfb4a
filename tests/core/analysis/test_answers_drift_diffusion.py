"""Drift on top of diffusion, the case one MSD exponent misreads (issue 18): constant-lr
SGD with label noise wanders (short lags look diffusive, even anti-correlated) while its
norm grows, so the MSD bends upward at long lags. The truth is the process built here:
``w_t = w_{t-1} + v + xi_t`` with ``|v|^2 T^2`` a known multiple of ``T tr(Sigma)``."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.analysis.report import analyze
from lossview.core.io.memory import run_from_arrays


def _walk(drift_over_diffusion: float, d: int = 1500, t: int = 200, seed: int = 0):
    """Random walk (unit variance per coordinate per snapshot) plus a constant drift whose
    squared displacement over the run is ``drift_over_diffusion`` times the walk's."""
    rng = np.random.default_rng(seed)
    v = np.zeros(d)
    v[0] = np.sqrt(drift_over_diffusion * d / t)  # |v|^2 t^2 = ratio * t * d
    w0 = np.zeros(d)
    w0[0] = 5.0  # the drift points away from the origin: the norm grows outward
    steps = rng.normal(size=(t, d)) + v
    w = w0 + np.cumsum(steps, axis=0)
    return run_from_arrays(w, steps=list(range(0, 10 * t, 10)))


def test_drift_as_large_as_the_diffusion_is_drifting_not_diffusing():
    run = _walk(drift_over_diffusion=3.0)
    rep = analyze(run)
    w = rep["answers"]["weights"]
    # truth: net^2 over the second half ~ (1 + 3/4) x the diffusive part (half the span)
    assert w["displacement_excess"] == pytest.approx(1.0 + 3.0 / 2, rel=0.25)
    assert w["msd_bending_slope"] > 1.15
    assert w["verdict"] == "drifting", w["sentence"]
    assert "bends upward" in w["sentence"] and f"{w['displacement_excess']:.1f}x" in w["sentence"]


@pytest.mark.parametrize("seed", range(3))
def test_a_pure_random_walk_stays_diffusing(seed):
    w = analyze(_walk(drift_over_diffusion=0.0, seed=seed))["answers"]["weights"]
    assert w["displacement_excess"] == pytest.approx(1.0, abs=0.3)
    assert w["verdict"] == "diffusing", w["sentence"]

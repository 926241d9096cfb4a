"""Gradient norm after the plateau: levels off (Zhang et al. 2021) or vanishes."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.analysis.gradient import gradient_behaviour
from lossview.core.io.memory import run_from_arrays


def _run(g):
    s = np.arange(len(g)) * 10
    return run_from_arrays(np.zeros((2, 3)), steps=[0, s[-1]], metrics={"grad_norm": (s, g)})


def test_levels_off_at_the_sgd_noise_floor():
    # 1-D SGD on h x^2 / 2 with gradient noise sigma = 1 (docs/science.md section 1): at
    # stationarity E[grad^2] = eta h sigma^2 / (2 - eta h) = 0.0101 for eta = 0.01, h = 2.
    # Simulate and log |full-batch gradient|; relaxation takes ~1/(eta h) = 50 steps.
    rng = np.random.default_rng(0)
    eta, h = 0.01, 2.0
    x, gs = 10.0, []
    for xi in rng.normal(size=20000):
        gs.append(abs(h * x))
        x -= eta * (h * x + xi)
    gs = np.array(gs)
    # ~800 effective samples after the transient: relative sd of the mean square ~5%
    assert np.mean(gs[500:] ** 2) == pytest.approx(0.0101, rel=0.15)
    res = gradient_behaviour(_run(gs), plateau_step=5000)  # loss flat long before
    assert res["verdict"] == "levels off"
    assert res["post_trend"] == pytest.approx(1.0, abs=0.2)
    assert res["post_mean"] == pytest.approx(np.sqrt(2 / np.pi * 0.0101), rel=0.15)  # E|N(0,v)|


def test_vanishing_and_still_falling():
    t = np.arange(2000)
    assert gradient_behaviour(_run(np.exp(-t / 50)), plateau_step=5000)["verdict"] == "vanishes"
    slow = gradient_behaviour(_run(np.exp(-t / 600)), plateau_step=10000)  # post: t >= 1000
    assert slow["verdict"] == "still falling" and slow["post_trend"] < 0.5


def test_not_logged():
    run = run_from_arrays(np.zeros((2, 3)))
    assert gradient_behaviour(run, None)["verdict"] is None

"""Window test and Pflug's lag-1 statistic on stationary OU against a random walk."""

from __future__ import annotations

import numpy as np
import pytest
from synth_trajectories import ballistic, ou, random_walk

from lossview.core.analysis.gram import centred_gram
from lossview.core.analysis.stationarity import ks_statistic, stationarity, update_lag1_correlation
from lossview.core.io.memory import run_from_arrays
from lossview.core.run import MetricSeries


def _st(x, start=None, loss=None):
    return stationarity(centred_gram(run_from_arrays(x)), start, loss)


@pytest.mark.parametrize("seed", [0, 1])
def test_ou_is_stationary_and_random_walk_is_not(seed):
    t, d = 400, 300
    conf = _st(ou(t, d, 0.3, seed=seed))
    walk = _st(random_walk(t, d, seed=seed))
    assert conf["verdict"] == "stationary" and conf["statistic"] < 0.35
    assert walk["verdict"] == "not stationary" and walk["statistic"] > 0.65


def test_lag1_update_correlation_matches_theory():
    # AR(1) w <- rho w + xi sampled every step: E<u_t,u_t-1> / E|u|^2 = -(1 - rho) / 2
    # (= -eta h / 2 for SGD on a quadratic, Pflug's negative correlation); random walk: 0;
    # straight line: +1. Each estimate averages 1000 x 400 products: sd < 0.005.
    for gamma in (0.1, 0.5):
        g = centred_gram(run_from_arrays(ou(1000, 400, gamma, seed=3))).gram
        assert update_lag1_correlation(g) == pytest.approx(-gamma / 2, abs=0.01)
    g = centred_gram(run_from_arrays(random_walk(1000, 400, seed=4))).gram
    assert update_lag1_correlation(g) == pytest.approx(0.0, abs=0.01)
    g = centred_gram(run_from_arrays(ballistic(50, 10))).gram
    assert update_lag1_correlation(g) == pytest.approx(1.0, abs=1e-9)


def test_segment_and_loss_windows():
    x = np.concatenate([random_walk(100, 200, seed=5) * 3, ou(300, 200, 0.5, seed=6)])
    steps_loss = np.arange(400)
    rng = np.random.default_rng(7)
    loss = np.r_[np.linspace(3, 1, 100), 1 + 0.05 * rng.normal(size=300)]
    res = _st(x, start=100, loss=MetricSeries(steps_loss, loss))
    assert res["segment_start_step"] == 100 and res["n_snapshots"] == 300
    assert res["verdict"] == "stationary"
    assert res["loss"]["verdict"] == "stationary"
    short = _st(ou(15, 10, 0.5))
    assert short["verdict"] is None and "at least 20" in short["reason"]


def test_ks_statistic_equals_scipy():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(8)
    for n, m in [(10, 10), (37, 50), (100, 13)]:
        a, b = rng.normal(size=n), rng.normal(0.3, size=m)
        assert ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    a = np.repeat([1.0, 2.0, 3.0], 4)
    assert ks_statistic(a, a[::-1]) == 0.0 and ks_statistic(a, a + 10) == 1.0

"""MSD and its exponent against exact results (docs/science.md section 4): random walk slope 1,
ballistic slope 2, stationary OU MSD = 2 tr(Sigma) (1 - rho^lag) with local slope -> 0."""

from __future__ import annotations

import numpy as np
import pytest
from synth_trajectories import ballistic, ou, random_walk

from lossview.core.analysis.diffusion import diffusion, msd_curve
from lossview.core.analysis.gram import centred_gram
from lossview.core.io.memory import run_from_arrays


def _diff(x, steps=None, start=None):
    return diffusion(centred_gram(run_from_arrays(x, steps=steps)), start)


def test_random_walk_has_exponent_one_and_msd_lag_tr_sigma():
    t, d = 400, 1000
    res = _diff(random_walk(t, d, seed=0, scale=0.5), steps=np.arange(t) * 5)
    assert res["evenly_spaced"]
    # MSD(1 snapshot = 5 steps) = tr Sigma = 0.25 d; average of 399 x 1000 chi^2_1: rel. sd 0.2%
    assert res["lags"][0] == 5
    assert res["msd"][0] == pytest.approx(0.25 * d, rel=0.01)
    # fitted over lags up to a quarter of the run (docs/science.md: 0.998 at d=200, T=20000)
    assert res["exponent"] == pytest.approx(1.0, abs=0.05)
    assert res["fit_lag_range"][1] <= 0.25 * 5 * (t - 1)


def test_ballistic_drift_has_exponent_two_exactly():
    res = _diff(ballistic(100, 50, seed=1))
    assert res["exponent"] == pytest.approx(2.0, abs=1e-9)
    np.testing.assert_allclose(res["local_slopes"]["slopes"], 2.0, atol=1e-9)


def test_ou_matches_the_exact_msd_and_flattens_at_large_lag():
    t, d, gamma = 1500, 400, 0.05
    rho = 1 - gamma
    var = 1 / (gamma * (2 - gamma))
    res = _diff(ou(t, d, gamma, seed=2))
    lags, msd = np.array(res["lags"]), np.array(res["msd"])
    exact = 2 * d * var * (1 - rho**lags)
    # relative sd of the time average ~ sqrt(2 tau / (d (T - lag))) < 2% for lag < 1000
    sel = lags < 1000
    np.testing.assert_allclose(msd[sel], exact[sel], rtol=0.05)
    sl_lag, sl = np.array(res["local_slopes"]["lags"]), np.array(res["local_slopes"]["slopes"])
    assert sl[sl_lag < 3].mean() > 0.85  # 1 - rho^lag ~ lag at small lag
    assert abs(sl[(sl_lag > 200) & (sl_lag < 1000)]).max() < 0.1  # confined: plateau


def test_exponent_restricted_to_a_segment():
    # ballistic for 100 snapshots, then confined: the segment after step 100 is OU-like
    x = np.concatenate([ballistic(100, 300, seed=3), ou(400, 300, 0.3, seed=4)])
    x[100:] += x[99] - x[100]  # the confined part starts where the drift stopped
    whole = _diff(x)
    seg = _diff(x, start=100)
    assert seg["segment_start_step"] == 100 and seg["n_snapshots"] == 400
    assert whole["exponent"] > 1.0
    assert seg["exponent"] < 0.3


def test_log_spaced_snapshots_are_binned_by_step_difference():
    # ballistic: every pair has ||dw||^2 = |mu|^2 dt^2, so each bin's MSD lies between
    # |mu|^2 min(dt)^2 and |mu|^2 max(dt)^2 and the exponent is 2 within the bin spread
    steps = np.unique(np.geomspace(1, 10_000, 60).astype(int))
    mu = np.random.default_rng(0).normal(size=20)
    x = np.outer(steps, mu)
    _lags, _msd, npairs = msd_curve(((x[:, None] - x[None]) ** 2).sum(-1), steps, n_lags=20)
    assert npairs.sum() == len(steps) * (len(steps) - 1) // 2
    res = _diff(x, steps=steps)
    assert not res["evenly_spaced"]
    assert res["exponent"] == pytest.approx(2.0, abs=0.1)


def test_too_few_snapshots_give_null_with_reason():
    res = _diff(random_walk(3, 5))
    assert res["exponent"] is None and "at least 4" in res["reason"]

"""Acceptance tests of ``answers.weights`` / ``answers.loss`` on runs made as users make them
(issue 18, "Tests that must exist"): plain PyTorch loops and walks saved with ``torch.save``,
the truth of each run computed here from what was saved, then ``lossview analyze --json``.

The stability answers (curvature against 2/lr, divergence, catapult) are in
test_answers_stability_runs.py; the runs themselves in user_runs.py and user_walks.py.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import user_runs as ur
import user_walks as uw
from scipy.linalg import solve_discrete_lyapunov


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("user_runs")


def long_lags(t: int) -> np.ndarray:
    """Lags span/20 ... span/3, the long-lag window of docs/analysis.md."""
    return np.unique(np.geomspace(max(1, t // 20), t // 3, 8).astype(int))


# ---------------------------------------------------------------- 1. converging interpolation


def test_converging_interpolation_is_converging(root, capsys):
    run = ur.converging_mlp(root / "converging")
    s = uw.step_lengths(run.weights)
    half = s[len(s) // 2:]
    # truth: the loss falls by orders of magnitude, the step between snapshots >= 10x over the
    # run and still shrinks over the second half; the path left to travel is a sliver of the
    # path travelled (the weights approach a limit)
    assert np.all(np.isfinite(run.losses))
    assert run.losses[-1] < 1e-4 * run.losses[0]
    assert s[0] / s[-1] >= 10
    assert half[0] / half[-1] >= 3
    assert np.sum(s[-10:]) < 0.05 * np.sum(s)

    rep = ur.analyze(capsys, run.folder)
    w, loss = rep["answers"]["weights"], rep["answers"]["loss"]
    assert rep["steps"] == run.steps
    assert w["verdict"] == "converging", w["sentence"]
    assert w["segment"][1] == run.steps[-1]
    assert loss["verdict"] != "diverged", loss["sentence"]
    ex = rep["answers"]["exploration"]
    if ex["raw"] is not None and ex["aligned"] is not None:
        # one hidden layer: the best permutation is at least as close as the identity
        assert ex["aligned"] <= ex["raw"] * (1 + 1e-6)


# ---------------------------------------------------------------- 2. SGD at stationarity


def test_sgd_at_stationarity_on_a_quadratic_is_confined(root, capsys):
    run = ur.sgd_stationary(root / "stationary")
    x, y, lr, batch = (run.info[k] for k in ("x", "y", "lr", "batch"))
    n = len(x)
    # truth: the discrete Lyapunov covariance of constant-lr SGD (docs/science.md §8), with the
    # batch-gradient noise C = per-example gradient covariance at the optimum / batch size
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    g = 2.0 * x * (x @ w_star - y)                  # per-example gradients of (x.w - y)^2
    noise = (g.T @ g / n - np.outer(g.mean(0), g.mean(0))) / batch
    hess = 2.0 * x.T @ x / n
    eig = np.linalg.eigvalsh(hess)
    sigma = solve_discrete_lyapunov(np.eye(len(hess)) - lr * hess, lr ** 2 * noise)
    every = run.steps[1] - run.steps[0]
    assert lr * eig[-1] < 2
    assert (1 - lr * eig[0]) ** every < 0.05      # successive snapshots nearly decorrelated

    burn = 4                                       # 100 steps: 10^-6 of the start remains
    assert (1 - lr * eig[0]) ** (burn * every) < 1e-6
    w = run.weights[burn:]
    var = np.trace(np.cov(w.T))
    assert var == pytest.approx(np.trace(sigma), rel=0.2)
    m = uw.msd(w, range(1, 41))
    assert m.max() / m.min() < 1.3                # saturated from the first lag on
    assert np.mean(m) == pytest.approx(2 * np.trace(sigma), rel=0.2)
    # the loss fell to its floor at the second snapshot and stays there
    assert run.losses[0] > 10 * np.median(run.losses[burn:])
    early, late = np.array_split(run.losses[burn:], 2)
    assert np.median(late) == pytest.approx(np.median(early), rel=0.15)

    rep = ur.analyze(capsys, run.folder)
    w_ans, loss = rep["answers"]["weights"], rep["answers"]["loss"]
    assert w_ans["verdict"] == "confined", w_ans["sentence"]
    assert loss["verdict"] == "converged", loss["sentence"]
    assert loss["plateau_step"] is not None and loss["plateau_step"] <= 10 * every


# ---------------------------------------------------------------- 3-4. random walk, drift


def test_random_walk_is_diffusing(root, capsys):
    run = uw.random_walk(root / "walk")
    t = len(run.weights)
    lags = long_lags(t)
    s = uw.step_lengths(run.weights)
    cos = uw.update_cosines(run.weights)
    # truth: MSD = lag * d * 0.01^2 (slope 1), a steady step, uncorrelated updates
    assert uw.loglog_slope(lags, uw.msd(run.weights, lags)) == pytest.approx(1.0, abs=0.1)
    assert uw.msd(run.weights, [1])[0] == pytest.approx(2000 * 1e-4, rel=0.02)
    assert np.std(s) / np.mean(s) < 0.05
    assert abs(np.mean(cos)) < 0.02

    rep = ur.analyze(capsys, run.folder)
    assert rep["n_params"] == 2000
    w = rep["answers"]["weights"]
    assert w["verdict"] == "diffusing", w["sentence"]


def test_constant_velocity_drift_is_drifting(root, capsys):
    run = uw.drift(root / "drift")
    lags = long_lags(len(run.weights))
    s = uw.step_lengths(run.weights)
    # truth: MSD = lag^2 |v|^2 + lag |noise|^2, slope ~2 at long lags; updates nearly parallel
    assert uw.loglog_slope(lags, uw.msd(run.weights, lags)) > 1.8
    assert np.mean(uw.update_cosines(run.weights)) > 0.8
    assert np.std(s) / np.mean(s) < 0.1

    rep = ur.analyze(capsys, run.folder)
    w = rep["answers"]["weights"]
    assert w["verdict"] == "drifting", w["sentence"]


# ---------------------------------------------------------------- 8. plateau on the user's scale


def test_a_loss_still_falling_tenfold_has_no_plateau(root, capsys):
    run = uw.exponential_loss(root / "exp_loss")
    t = np.array(run.steps, dtype=float)
    ln = np.log(run.losses)
    # truth: the saved loss is the loss of the saved weights (mean squared distance from w*)
    np.testing.assert_allclose(np.mean((run.weights - run.info["w_star"]) ** 2, axis=1),
                               run.losses, rtol=1e-9)
    half = len(t) // 2
    slope, icept = np.polyfit(t[half:], ln[half:], 1)
    assert -slope * (t[-1] - t[half]) > math.log(10)          # 10x further down in the last half
    assert np.std(ln[half:] - (slope * t[half:] + icept)) < 0.15   # small multiplicative noise

    rep = ur.analyze(capsys, run.folder)
    loss = rep["answers"]["loss"]
    assert loss["plateau_step"] is None, loss["sentence"]
    assert loss["verdict"] == "improving", loss["sentence"]


def test_a_loss_that_flattens_has_its_plateau_at_the_change_point(root, capsys):
    run = uw.plateau_loss(root / "plateau_loss")
    t_c, floor = run.info["change_step"], run.info["floor"]
    t = np.array(run.steps)
    # truth: a 200x fall to the floor, then flat (10 % noise) for the remaining 3/4 of the run
    flat = run.losses[t >= t_c]
    assert t_c == pytest.approx(530, abs=1)
    assert np.all(run.info["clean"][t >= t_c] == floor)
    assert np.median(flat) == pytest.approx(floor, rel=0.1)
    assert run.losses[0] > 100 * np.median(flat)
    first, second = np.array_split(flat, 2)
    assert np.median(second) == pytest.approx(np.median(first), rel=0.1)

    rep = ur.analyze(capsys, run.folder)
    loss = rep["answers"]["loss"]
    assert loss["verdict"] == "converged", loss["sentence"]
    assert loss["plateau_step"] == pytest.approx(t_c, abs=0.1 * t[-1]), loss["sentence"]


# ---------------------------------------------------------------- 9. units


def test_a_run_saved_per_epoch_speaks_of_epochs(root, capsys):
    run = ur.per_epoch(root / "epochs")
    saved = torch.load(run.folder / "epoch_5.pt", weights_only=True)
    # truth: the files hold an epoch and no step; the loss falls (noisy targets: to a floor)
    assert saved["epoch"] == 5 and "step" not in saved
    assert run.losses[-1] < 0.5 * run.losses[0]

    rep = ur.analyze(capsys, run.folder)
    assert rep["steps"] == list(range(40))
    for text in ur.sentences(rep):
        assert not re.search(r"\bsteps?\s+\d", text, re.IGNORECASE), text
    # the weights sentence states its segment; the loss sentence a plateau, when it finds one
    w, loss = rep["answers"]["weights"], rep["answers"]["loss"]
    assert "epoch" in w["sentence"].lower(), w["sentence"]
    if loss["plateau_step"] is not None:
        assert "epoch" in loss["sentence"].lower(), loss["sentence"]

"""Each built-in problem shows its phenomenon, checked against the closed forms
(docs/science.md §8 and §9; docs/analysis.md: Cohen et al. 2021, Mandt et al. 2017)."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.train.config import TrainConfig
from lossview.core.train.problems import build_problem
from lossview.core.train.trainer import Trainer, run_to_end


def _train(cfg: TrainConfig, problem=None):
    return run_to_end(Trainer(cfg, None, problem=problem).run())


QUAD = {"dim": 12, "n": 256}


def _floor(p) -> float:
    # loss at the minimum: mean_j 1/2 c_j' H c_j = 1/2 noise^2 tr H (whitened centres)
    return 0.5 * p.opts["noise"] ** 2 * float(p.eigenvalues.sum())


@pytest.mark.parametrize(("momentum", "threshold"), [(0.0, 2.0), (0.9, 3.8)])
def test_quadratic_stability_threshold(momentum, threshold):
    """Full-batch GD (heavy ball) on a quadratic with lambda_max = 1 converges for
    lr < (2 + 2 beta) and diverges above it."""
    p = build_problem("quadratic", seed=1, **QUAD)
    base = {"problem": p.spec, "batch_size": None, "momentum": momentum, "steps": 3000, "every": 500}
    below = _train(TrainConfig(lr=threshold * 0.99, **base), p)
    assert below.status == "finished"
    assert below.train_loss - _floor(p) < 1e-6
    above = _train(TrainConfig(lr=threshold * 1.01, **base), p)
    assert above.status == "diverged"
    assert above.divergence_step is not None and above.divergence_step <= 3000
    run = above.run
    assert run.spec["status"] == "diverged"
    # every kept snapshot is finite; the last one is at or before the divergence step
    assert all(np.isfinite(run.vector(i)).all() for i in range(len(run)))
    assert run.steps[-1] <= above.divergence_step


def test_quadratic_sgd_stationary_variance_matches_discrete_closed_form():
    """Constant-lr SGD with i.i.d. batches: Var along eigenvector k is
    lr s^2 h / (B (2 - lr h)) (docs/science.md §8, discrete time), not the continuous lr s^2/(2hB)."""
    p = build_problem("quadratic", seed=2, dim=30, n=1024, init_scale=0.0)
    lr, batch, every, burn = 0.5, 1, 5, 300
    s = _train(TrainConfig(problem=p.spec, lr=lr, batch_size=batch, sampling="replacement",
                           steps=burn + 2000 * every, every=every), p)
    run = s.run
    keep = run.steps >= burn
    w = np.stack([run.vector(i) for i in np.flatnonzero(keep)])  # [N, 30]
    z = w @ p.eigenvectors  # coordinates along the eigenvectors
    emp = (z**2).mean(0)  # the mean is exactly 0 (the minimum)
    theory = p.stationary_variance(lr, batch)
    h = p.eigenvalues
    fast = h >= 0.2  # mixes within the burn-in (ar coefficient 1 - lr h <= 0.9)
    n = len(z)
    # std of the variance estimate from N snapshots of an AR(1) chain with coefficient
    # phi = (1 - lr h)^every between snapshots: Var/Var = 2/N (1 + phi^2)/(1 - phi^2)
    phi = (1 - lr * h) ** every
    rel_sd = np.sqrt(2.0 / n * (1 + phi**2) / (1 - phi**2))
    ratio = emp / theory
    assert fast.sum() >= 8
    assert np.all(np.abs(ratio[fast] - 1) < 4 * rel_sd[fast]), (ratio[fast], rel_sd[fast])
    # the continuous-time (Mandt) value is off by 2/(2 - lr h) = 1.33 at h = 1: rejected
    continuous = lr * h[-1] / (2 * h[-1] * batch)
    assert abs(emp[-1] / continuous - 1) > 8 * rel_sd[-1]


@pytest.mark.parametrize(("batch_size", "lr", "steps"), [(None, 0.5, 500), (5, 0.3, 3000)])
def test_linreg_zero_loss_but_weights_keep_their_null_space_start(batch_size, lr, steps):
    """Over-parameterised least squares: (S)GD ends at w0 + X^+(y - X w0), the interpolant
    closest to the start, not the minimum-norm one X^+ y (docs/science.md §9.1)."""
    p = build_problem("linreg", seed=4)
    s = _train(TrainConfig(problem=p.spec, lr=lr, batch_size=batch_size, steps=steps, every=100), p)
    assert s.status == "finished"
    assert s.train_loss < 1e-9
    x = p.train_data[0].double().numpy()
    y = p.train_data[1].double().numpy()
    w0 = s.run.vector(0)
    w = s.run.vector(len(s.run) - 1)
    pinv = np.linalg.pinv(x)
    expected = w0 + pinv @ (y - x @ w0)
    min_norm = pinv @ y
    assert np.linalg.norm(w - expected) < 1e-4 * np.linalg.norm(expected)
    # the distance to the minimum-norm solution is the start's null-space component
    null_part = w0 - pinv @ (x @ w0)
    assert np.linalg.norm(w - min_norm) == pytest.approx(np.linalg.norm(null_part), rel=1e-4)
    assert np.linalg.norm(null_part) > 0.5 * np.linalg.norm(w0)  # far from it: d=100, n=20


def test_bn_mlp_weight_norm_grows_while_loss_is_flat():
    """Scale-invariant weights under plain SGD: |w|^2 grows by lr^2 |g|^2 every step
    (docs/science.md §9.3), so it increases monotonically, also once the loss is flat."""
    p = build_problem("bn-mlp", seed=0)
    s = _train(TrainConfig(problem=p.spec, steps=1600, every=40), p)
    run = s.run
    norms = {k: np.array([float((run.params(i)[k].astype(np.float64) ** 2).sum()) for i in range(len(run))])
             for k in p.scale_invariant}
    train_loss = run.metric("train_loss").values
    late = run.steps >= 800
    for k, n2 in norms.items():
        # monotone up to float32 rounding of a sum of ~2000 squares
        assert np.all(np.diff(n2) > -1e-5 * n2[1:]), k
        assert n2[late][-1] > 1.2 * n2[late][0], k  # still growing by > 20 % late on
    # ...while the loss is flat: below 2 % of its initial value over the whole second half
    assert train_loss[late].max() < 0.02 * train_loss[0]
    # why: the mini-batch gradient is orthogonal to the scale-invariant weights
    # (w . g = 0 up to float32 rounding and BatchNorm's eps), so
    # |w - lr g|^2 = |w|^2 + lr^2 |g|^2 exactly
    import torch

    model = p.make_model()
    x, yv = p.train_data
    p.loss_fn(model(x[:32]), yv[:32]).backward()
    for k in p.scale_invariant:
        w = model.get_parameter(k).detach().double()
        g = model.get_parameter(k).grad.double()
        assert abs(float((w * g).sum())) < 1e-4 * float(w.norm() * g.norm()), k
    # a weight that is not scale-invariant has no such orthogonality
    w, g = model.out.weight.detach().double(), model.out.weight.grad.double()
    assert abs(float((w * g).sum())) > 1e-2 * float(w.norm() * g.norm())
    del torch


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_classifiers_plateau_while_weights_keep_moving(name):
    p = build_problem(name, seed=0)
    s = _train(TrainConfig(problem=p.spec, steps=1500, every=50), p)
    run = s.run
    tl = run.metric("train_loss").values
    assert tl[-1] < 0.1 * tl[0]  # it learned
    w = np.stack([run.vector(i) for i in range(len(run))])
    late = run.steps >= 750
    # the loss moved by little over the second half, the weights by a lot
    step_len = np.linalg.norm(np.diff(w[late], axis=0), axis=1).sum()
    assert step_len > 0.1 * np.linalg.norm(w[-1] - w[0])
    gn = run.metric("grad_norm")
    assert np.median(gn.values[gn.steps >= 750]) > 0.01  # gradient norm does not vanish

"""Flat basin widths on quadratics (docs/science.md §7) and the stability quantities (§5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossview.core.io.memory import run_from_arrays
from lossview.core.surface.basin import flat_basin
from lossview.core.surface.curvature import HessianOperator
from lossview.core.surface.stability import (
    gd_step_check,
    sharpness_report,
    stability_threshold,
    step_check,
)
from lossview.core.surface.usermodel import ModelSource


def test_basin_width_of_a_quadratic_is_2_sqrt_2delta_over_kappa():
    a = np.linspace(-0.5, 0.5, 401)
    b = np.linspace(-0.5, 0.5, 201)
    loss = 0.3 + 0.5 * 4.0 * a[:, None] ** 2 + 0.5 * 1.0 * b[None, :] ** 2
    mask, info = flat_basin(a, b, loss, tolerance=0.01,
                            coords=np.array([[0.0, 0.0], [0.06, 0.0], [0.08, 0.0], [0.0, 0.13],
                                             [0.0, 0.15], [3.0, 0.0]]))
    assert info["width_alpha"] == pytest.approx(0.1414214, rel=1e-3)  # kappa 4, delta 0.01
    assert info["width_beta"] == pytest.approx(2 * np.sqrt(0.02), rel=1e-3)
    assert info["minimum"] == pytest.approx(0.3) and info["tolerance"] == 0.01
    assert not info["open_alpha"] and not info["open_beta"]
    assert info["inside"] == [True, True, False, True, False, False]
    assert mask.sum() == np.count_nonzero(loss <= 0.31)


def test_basin_is_the_component_of_the_minimum_and_open_at_the_edge():
    a = np.linspace(-1, 1, 81)
    loss = np.minimum((a[:, None] + 0.5) ** 2, (a[:, None] - 0.5) ** 2 + 0.005) + 0 * a[None, :]
    mask, info = flat_basin(a, a, loss, tolerance=0.01)
    assert mask[:40].any() and not mask[41:].any()  # the other, shallower well is excluded
    assert info["open_beta"]  # flat along beta: the width is a lower bound (the whole axis)
    assert info["width_beta"] == pytest.approx(2.0)


def test_default_tolerance_and_nan_points():
    a = np.linspace(-1, 1, 21)
    loss = a[:, None] ** 2 + a[None, :] ** 2
    loss[0, 0] = np.nan
    _, info = flat_basin(a, a, loss)
    finite = loss[np.isfinite(loss)]
    assert info["tolerance"] == pytest.approx(0.05 * (np.median(finite) - finite.min()))


def test_stability_thresholds():
    assert stability_threshold(0.1) == pytest.approx(20.0)
    assert stability_threshold(0.1, 0.9) == pytest.approx(38.0)  # (2 + 2 beta) / lr


class Quad(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return self.w.expand(len(x), -1)


def quadratic(seed=0, d=6):
    g = np.random.default_rng(seed)
    q = np.linalg.qr(g.normal(size=(d, d)))[0]
    h = torch.from_numpy(q @ np.diag(np.linspace(0.2, 4.0, d)) @ q.T)
    c = torch.from_numpy(g.normal(size=(1, d)))
    loss_fn = lambda o, t: 0.5 * (((o - t) @ h) * (o - t)).sum(-1).mean()  # noqa: E731
    return h, c, loss_fn


def test_quadratic_model_is_exact_on_a_quadratic_and_predicts_the_sign_change():
    h, c, loss_fn = quadratic()
    w0 = torch.zeros(6, dtype=torch.float64)
    m = Quad(w0)
    data = (torch.zeros(1, 1, dtype=torch.float64), c)
    op = HessianOperator(m, loss_fn, data)
    g = op.loss_and_grad()[1]
    gg, ghg = float(g @ g), float(g @ (h @ g))
    rows = [gd_step_check(op, lr) for lr in (0.01, 0.1, 0.5, 2 * gg / ghg * 1.05)]
    for r in rows:
        assert r["predicted"] == pytest.approx(r["actual"], rel=1e-10, abs=1e-12)
        assert r["gTHg"] == pytest.approx(ghg, rel=1e-12)
    assert rows[0]["actual"] < 0 and rows[-1]["actual"] > 0  # lr > 2 g'g / g'Hg increases it
    assert torch.equal(m.w.detach(), w0)


def _quad_run(lr, steps=6):
    h, c, loss_fn = quadratic(1)
    w = torch.zeros(6, dtype=torch.float64)
    traj = []
    for _ in range(steps):
        traj.append({"w": w.numpy().copy()})
        w = w - lr * (h @ (w - c[0]))
    run = run_from_arrays(traj, spec={"optimizer": {"name": "sgd", "lr": lr, "momentum": 0.0}})
    src = ModelSource(Quad(torch.zeros(6, dtype=torch.float64)), loss_fn,
                      [(torch.zeros(1, 1, dtype=torch.float64), c)], "test quadratic")
    return run, src


def test_step_check_between_snapshots_and_sharpness_table():
    from lossview.core.surface.stability import iter_sharpness

    run, src = _quad_run(0.3)
    chk = step_check(run, 2, source=src)
    assert chk["predicted"] == pytest.approx(chk["actual"], rel=1e-10)
    gen = iter_sharpness(run, source=src)
    fr = []
    while True:
        try:
            fr.append(next(gen))
        except StopIteration as e:
            table = e.value
            break
    assert fr[-1] == 1.0
    assert table["sharpness"] == pytest.approx([4.0] * len(table["steps"]), rel=1e-8)
    assert table["threshold"][0] == pytest.approx(2 / 0.3)
    assert table["ratio"][0] == pytest.approx(4.0 * 0.3 / 2)
    assert table["first_unstable_step"] is None and table["verdict"].startswith("stable")
    assert table["verdict"].endswith(f"{2 / 0.3:.4g} = 2/lr")  # no momentum: plain 2/lr
    run, src = _quad_run(0.6)  # lr * 4 = 2.4 > 2
    gen = iter_sharpness(run, source=src)
    while True:
        try:
            next(gen)
        except StopIteration as e:
            table = e.value
            break
    assert table["first_unstable_step"] == 0 and table["verdict"].startswith("unstable")


def test_sharpness_report_is_none_without_a_model():
    run = run_from_arrays(np.zeros((3, 4)))
    assert sharpness_report(run) is None


def test_the_verdict_writes_the_momentum_limit():
    from lossview.core.surface.stability import _table

    rows = [{"step": 0, "sharpness": 5.0, "lr": 0.5}]
    heavy = _table([dict(r) for r in rows], {"name": "sgd", "momentum": 0.9})
    # (2 + 2 * 0.9) / 0.5 = 7.6: 5 is 66% of it
    assert heavy["verdict"] == "stable: sharpness at most 66% of the limit 7.6 = (2+2*0.9)/lr"
    plain = _table([dict(r) for r in rows], {"name": "sgd", "momentum": 0.0})
    assert plain["verdict"] == ("unstable: sharpness exceeds the limit 2/lr from step 0 "
                                "(lr*lambda_max above 2)")

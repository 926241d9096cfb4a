"""loss_surface / PlaneEvaluator against brute force: one deep copy per point, loaded and
run in a plain forward pass. float64 models, so "exact" means agreement to ~1e-12."""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossview
from lossview.core.errors import LossviewError
from lossview.core.surface.evaluate import PlaneEvaluator
from lossview.core.surface.grid import grid_order, iter_grid, refinement_levels


def brute(model, loss_fn, batches, center, d1, d2, alphas, betas, train=False):
    out = np.zeros((len(alphas), len(betas)))
    n = sum(len(x) for x, _ in batches)
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            m = copy.deepcopy(model)
            m.train(train)
            with torch.no_grad():
                for name, p in m.named_parameters():
                    p.copy_(center[name] + a * d1[name] + b * d2[name])
                out[i, j] = sum(float(loss_fn(m(x), y)) * len(x) for x, y in batches) / n
    return out


class Custom(nn.Module):
    """Not a Sequential: takes the generic vmap path."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 8)
        self.b = nn.Linear(8, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))) + 0.1 * x[:, :2]


def models():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    yr = torch.randn(40, 2, generator=g, dtype=torch.float64)
    yc = torch.randint(0, 2, (40,), generator=g)
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    named = nn.Sequential(OrderedDict(fc1=nn.Linear(3, 8), act=nn.GELU(), out=nn.Linear(8, 2)))
    normed = nn.Sequential(nn.Linear(3, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))
    bn = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():  # non-trivial running statistics
        bn.double().train()(x * 2 + 1)
    return [
        ("mlp-mse", mlp.double(), nn.MSELoss(), (x, yr), "first-layer+mlp"),
        ("mlp-ce", copy.deepcopy(mlp).double(), F.cross_entropy, (x, yc), "first-layer+mlp"),
        ("named-custom-loss", named.double(), lambda o, t: ((o - t) ** 4).mean(), (x, yr),
         "first-layer+mlp"),
        ("layernorm-tail", normed.double(), nn.MSELoss(), (x, yr), "first-layer"),
        ("batchnorm-eval", bn.double(), nn.CrossEntropyLoss(), (x, yc), "first-layer"),
        ("custom-module", Custom().double(), nn.MSELoss(), (x, yr), "generic"),
        # ReLU family: the next layer's bias rides in the product through a ones column
        ("relu-ones-column", nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8),
                                           nn.LeakyReLU(0.1), nn.Linear(8, 2)).double(),
         nn.CrossEntropyLoss(), (x, yc), "first-layer+mlp"),
        # one hidden layer: the ones column feeds the last layer, which writes logits first
        ("relu-two-layer-ce", nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2)).double(),
         nn.CrossEntropyLoss(), (x, yc), "first-layer+mlp"),
        ("linear-linear", nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 4), nn.Tanh(),
                                        nn.Linear(4, 2, bias=False)).double(),
         nn.MSELoss(), (x, yr), "first-layer+mlp"),
    ]


@pytest.mark.parametrize("mode", ["batched", "loop"])
@pytest.mark.parametrize("case", models(), ids=lambda c: c[0])
def test_surface_equals_brute_force_and_leaves_model_untouched(case, mode):
    _, model, loss_fn, data, path = case
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    flags = [m.training for m in model.modules()]
    s = lossview.loss_surface(model, loss_fn, data, span=0.8, steps=5, seed=3, path=mode)
    # every model here starts with a Linear layer on its inputs: the loop uses its algebra
    assert s.path == (path if mode == "batched" else "loop+first-layer")
    np.testing.assert_array_equal(s.alphas, np.linspace(-0.8, 0.8, 5))
    ref = brute(model, loss_fn, [data], before, s.d1, s.d2, s.alphas, s.betas)
    np.testing.assert_allclose(s.loss, ref, rtol=1e-11, atol=1e-12)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])  # bitwise
    assert [m.training for m in model.modules()] == flags


def test_fast_and_generic_paths_agree_in_float32():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    x, y = torch.randn(256, 16), torch.randint(0, 4, (256,))
    s = lossview.loss_surface(m, nn.CrossEntropyLoss(), (x, y), steps=7)
    pts = np.array([(a, b) for a in s.alphas for b in s.betas])
    gen = PlaneEvaluator(m, nn.CrossEntropyLoss(), (x, y), None, s.d1, s.d2, fast=False,
                         path="batched")
    assert gen.path == "generic"
    # float32: both are the same arithmetic up to summation order; ~1e-6 relative
    np.testing.assert_allclose(s.loss.ravel(), gen.losses(pts), rtol=2e-5)


def test_conv_first_layer_uses_the_shortcut_exactly():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 36, 2)).double()
    x = torch.randn(10, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 2, (10,))
    center = {n: p.detach().clone() for n, p in m.named_parameters()}
    s = lossview.loss_surface(m, nn.CrossEntropyLoss(), (x, y), steps=3, span=0.5,
                              path="batched")
    assert s.path == "first-layer"
    ref = brute(m, nn.CrossEntropyLoss(), [(x, y)], center, s.d1, s.d2, s.alphas, s.betas)
    np.testing.assert_allclose(s.loss, ref, rtol=1e-11)


def test_iterable_of_batches_is_the_mean_over_all_samples():
    _, model, loss_fn, (x, y), _ = models()[0]
    one = lossview.loss_surface(model, loss_fn, (x, y), steps=3)
    parts = [(x[:7], y[:7]), (x[7:30], y[7:30]), (x[30:], y[30:])]
    many = lossview.loss_surface(model, loss_fn, iter(parts), steps=3)
    np.testing.assert_allclose(many.loss, one.loss, rtol=1e-12)


def test_given_directions_and_center_are_used_as_given():
    _, model, loss_fn, data, _ = models()[0]
    p = {n: q.detach() for n, q in model.named_parameters()}
    d1 = {n: torch.ones_like(v) * 0.1 for n, v in p.items()}
    d2 = {n: torch.zeros_like(v) for n, v in p.items()}
    center = {n: v + 0.5 for n, v in p.items()}
    s = lossview.loss_surface(model, loss_fn, data, directions=(d1, d2), center=center, steps=3)
    ref = brute(model, loss_fn, [data], center, d1, d2, s.alphas, s.betas)
    np.testing.assert_allclose(s.loss, ref, rtol=1e-12)
    assert np.allclose(s.loss[:, 0], s.loss[:, 2])  # d2 = 0: no change along beta


def test_recompute_batchnorm_differs_from_eval_and_matches_its_definition():
    _, model, loss_fn, (x, y), _ = models()[4]
    ev = lossview.loss_surface(model, loss_fn, (x, y), steps=3, span=0.5)
    rc = lossview.loss_surface(model, loss_fn, (x, y), steps=3, span=0.5, bn_mode="recompute")
    assert rc.path == "recompute-bn"
    # at a point: fresh statistics = one train-mode pass over the data (cumulative average)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for n, p in m.named_parameters():
            p.add_(rc.alphas[0] * rc.d1[n] + rc.betas[2] * rc.d2[n])
        m[1].reset_running_stats()
        m[1].momentum = None
        m.train()(x)
        want = float(loss_fn(m.eval()(x), y))
    assert rc.loss[0, 2] == pytest.approx(want, rel=1e-12)
    assert not np.allclose(rc.loss, ev.loss)


def test_bad_arguments_are_one_line_errors():
    _, model, loss_fn, data, _ = models()[0]
    with pytest.raises(LossviewError):
        lossview.loss_surface(model, loss_fn, data, directions="pca")
    with pytest.raises(LossviewError):
        lossview.loss_surface(model, loss_fn, data, bn_mode="train")
    with pytest.raises(LossviewError):
        lossview.loss_surface(model, loss_fn, data, normalization="bogus")
    with pytest.raises(LossviewError):
        lossview.loss_surface(model, loss_fn, 42)


def test_refinement_levels_cover_every_point_once_coarse_first():
    assert refinement_levels(51)[0].tolist() == [0, 8, 16, 24, 32, 40, 48, 50]
    for n in (2, 5, 11, 41, 51):
        levels = grid_order(n, n)
        pts = np.concatenate(levels)
        assert len(pts) == n * n and len({tuple(p) for p in pts}) == n * n
        assert len(levels[0]) <= len(pts)


def test_progressive_grid_partials_mask_and_cancel():
    _, model, loss_fn, data, _ = models()[0]
    full = lossview.loss_surface(model, loss_fn, data, steps=21, seed=1)
    ev = PlaneEvaluator(model, loss_fn, data, None, full.d1, full.d2, memory_budget=1)
    gen = iter_grid(ev, full.alphas, full.betas)
    first = next(gen)
    assert 0 < first.fraction < 1
    assert np.array_equal(np.isnan(first.loss), ~first.mask)
    # the first chunk is on the coarse sub-grid (every 4th index here)
    done = np.argwhere(first.mask)
    assert np.all(done % 4 == 0)
    np.testing.assert_allclose(first.loss[first.mask], full.loss[first.mask], rtol=1e-12)
    fractions = [first.fraction]
    for _ in range(5):
        fractions.append(next(gen).fraction)
    assert fractions == sorted(fractions)
    gen.close()  # cancel
    with pytest.raises(StopIteration):
        next(gen)
    gen = iter_grid(ev, full.alphas, full.betas)
    while True:
        try:
            last = next(gen)
        except StopIteration as stop:
            result = stop.value
            break
    assert last.fraction == 1.0 and last.mask.all()
    np.testing.assert_allclose(result, full.loss, rtol=1e-12)


def test_ones_column_is_used_only_after_activations_that_keep_one():
    cases = {c[0]: c for c in models()}
    for name, want in (("relu-ones-column", True), ("linear-linear", True), ("mlp-mse", False),
                       ("named-custom-loss", False)):
        _, model, loss_fn, data, _ = cases[name]
        ev = PlaneEvaluator(model, loss_fn, data)
        assert ev._tail is not None and ev._tail.ones is want, name

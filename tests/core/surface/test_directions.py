"""Filter normalisation as in Li et al.'s net_plotter.py, and its rescaling invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lossview
from lossview.core.surface.directions import normalize_direction, random_plane


def test_filter_normalisation_matches_each_row_norm_and_zeroes_biases():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)
    w = {"c.weight": conv.weight.detach(), "c.bias": conv.bias.detach()}
    d1, d2 = random_plane(w, seed=5)
    for d in (d1, d2):
        for i in range(4):  # filter i: W[i, :, :, :]
            assert torch.linalg.vector_norm(d["c.weight"][i]).item() == pytest.approx(
                torch.linalg.vector_norm(w["c.weight"][i]).item(), rel=1e-6)
        assert not d["c.bias"].any()
    assert not torch.allclose(d1["c.weight"], d2["c.weight"])
    same, _ = random_plane(w, seed=5)
    assert torch.equal(same["c.weight"], d1["c.weight"])  # seeded


def test_include_biasbn_copies_the_weights_and_none_leaves_the_draw():
    w = {"l.weight": torch.randn(3, 4), "l.bias": torch.randn(3)}
    d = {"l.weight": torch.randn(3, 4), "l.bias": torch.randn(3)}
    inc = normalize_direction(d, w, "filter", include_biasbn=True)
    assert torch.equal(inc["l.bias"], w["l.bias"])
    raw = normalize_direction(d, w, "none")
    assert torch.equal(raw["l.weight"], d["l.weight"]) and torch.equal(raw["l.bias"], d["l.bias"])
    lay = normalize_direction(d, w, "layer")
    assert torch.linalg.vector_norm(lay["l.weight"]).item() == pytest.approx(
        torch.linalg.vector_norm(w["l.weight"]).item(), rel=1e-6)


def _net(alpha: float) -> nn.Sequential:
    """One-hidden-layer ReLU net; layer 1 scaled by alpha, layer 2 by 1/alpha (same function)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1)).double()
    with torch.no_grad():
        m[0].weight.mul_(alpha)
        m[0].bias.mul_(alpha)
        m[2].weight.div_(alpha)
    return m


def _curve(alpha: float, normalization: str) -> np.ndarray:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g, dtype=torch.float64)
    y = torch.randn(64, 1, generator=g, dtype=torch.float64)
    m = _net(alpha)
    w = {n: p.detach() for n, p in m.named_parameters()}
    raw = {n: torch.randn(p.shape, generator=torch.Generator().manual_seed(7 + i), dtype=torch.float64)
           for i, (n, p) in enumerate(w.items())}  # the same raw draw for every alpha
    d = normalize_direction(raw, w, normalization)
    zero = {n: torch.zeros_like(v) for n, v in w.items()}
    s = lossview.loss_surface(m, nn.MSELoss(), (x, y), directions=(d, zero), span=1.0, steps=5)
    return s.loss[:, 2]


def test_filter_normalised_curve_is_invariant_under_function_preserving_rescaling():
    # docs/science.md §3: exact invariance for layer-uniform rescaling (biases' directions zeroed)
    a1, a3 = _curve(1.0, "filter"), _curve(3.0, "filter")
    np.testing.assert_allclose(a3, a1, rtol=1e-12)
    assert a1[2] < a1[0] and a1[2] < a1[4]  # a real curve, not a constant
    u1, u3 = _curve(1.0, "none"), _curve(3.0, "none")
    assert u1[2] == pytest.approx(u3[2], rel=1e-12)  # same function at the centre
    assert abs(u3[0] - u1[0]) > 0.1 * abs(u1[0] - u1[2])  # un-normalised curve changes

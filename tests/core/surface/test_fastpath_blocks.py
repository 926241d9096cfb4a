"""MLP fast path in blocks of samples: each block's activations stay in cache, and the
losses still equal a forward pass at each point's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

import lossview.core.surface.fastpath as fastpath
from lossview.core.surface.evaluate import PlaneEvaluator
from lossview.core.surface.fastpath import block_rows


def _brute(model, loss_fn, x, y, d1, d2, a, b):
    params = {k: p.detach() + a * d1[k] + b * d2[k] for k, p in model.named_parameters()}
    with torch.no_grad():
        return float(loss_fn(functional_call(model, params, (x,)), y))


def _case(out_features, n=300):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 24), nn.ReLU(), nn.Linear(24, 16), nn.Tanh(),
                          nn.Linear(16, out_features))
    x = torch.randn(n, 5)
    d1 = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    d2 = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    return model, x, d1, d2


@pytest.mark.parametrize("kind", ["ce", "mse", "custom"])
def test_blocks_of_rows_give_the_forward_pass_losses(monkeypatch, kind):
    out = 1 if kind == "mse" else 4
    model, x, d1, d2 = _case(out)
    if kind == "ce":
        loss_fn, y = nn.CrossEntropyLoss(), torch.randint(0, 4, (300,))
    elif kind == "mse":
        loss_fn, y = nn.MSELoss(), torch.randn(300, 1)
    else:  # not a known mean: must see the whole batch at once
        def loss_fn(o, t):
            return F.cross_entropy(o, t) + o.std()
        y = torch.randint(0, 4, (300,))
    # chunks of 2 points of 24 values + the ones column, 4 bytes each: blocks of 128, 128
    # and 44 of the 300 samples
    monkeypatch.setattr(fastpath, "TILE_BYTES", 2 * 128 * 25 * 4)
    pts = np.array([[0.0, 0.0], [0.3, -0.7], [-1.1, 0.45], [2.0, 1.5]])
    ev = PlaneEvaluator(model, loss_fn, (x, y), None, d1, d2)
    assert ev.path == "first-layer+mlp"
    ev.chunk_size = lambda: 2
    got = ev.losses(pts)
    want = np.array([_brute(model, loss_fn, x, y, d1, d2, a, b) for a, b in pts])
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_block_rows_fit_the_tile_and_keep_whole_batches_that_fit(monkeypatch):
    monkeypatch.setattr(fastpath, "TILE_BYTES", 2 * 2**20)
    assert block_rows(16, 2048, 129 * 4) == 224  # 2 MiB / (16 * 516 B) = 254 -> 224
    assert block_rows(1, 2048, 129 * 4) == 2048  # 1 MiB: all rows in one block
    assert block_rows(64, 2048, 129 * 4) == 128  # never fewer than MIN_ROWS
    assert block_rows(64, 100, 129 * 4) == 100  # never more than the batch

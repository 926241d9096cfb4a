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
    # chunks of 2 points of 24 values + the ones column, 4 bytes each: at most 128 rows a
    # block, so the 300 samples run as 3 equal blocks of 100
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
    # 2 MiB / (16 * 516 B) = 254 rows fit: 9 blocks, of 228 rows (the last 224)
    assert block_rows(16, 2048, 129 * 4) == 228
    assert block_rows(15, 2048, 129 * 4) == 256  # 270 fit: 8 blocks of 256
    assert block_rows(1, 2048, 129 * 4) == 2048  # 1 MiB: all rows in one block
    assert block_rows(64, 2048, 129 * 4) == 128  # never fewer than MIN_ROWS
    assert block_rows(64, 100, 129 * 4) == 100  # never more than the batch


def test_blocks_set_up_once_serve_every_batch_and_chunk_size(monkeypatch):
    """Several batches of different sizes and chunks of 3 and 2 points (the blocks' views
    and buffers are kept per chunk size and batch): every loss equals the forward pass,
    and a second evaluation gives the same numbers bit for bit."""
    model, x, d1, d2 = _case(4, n=500)
    y = torch.randint(0, 4, (500,), generator=torch.Generator().manual_seed(1))
    batches = [(x[:300], y[:300]), (x[300:470], y[300:470]), (x[470:], y[470:])]
    monkeypatch.setattr(fastpath, "TILE_BYTES", 3 * 128 * 25 * 4)
    loss_fn = nn.CrossEntropyLoss()
    pts = np.random.default_rng(2).uniform(-1.5, 1.5, (7, 2))
    ev = PlaneEvaluator(model, loss_fn, batches, None, d1, d2)
    assert ev.path == "first-layer+mlp"
    ev.chunk_size = lambda: 3  # 7 points: chunks of 3, 2 and 2 points
    got = ev.losses(pts)
    want = np.array([_brute(model, loss_fn, x, y, d1, d2, a, b) for a, b in pts])
    np.testing.assert_allclose(got, want, rtol=2e-6)
    np.testing.assert_array_equal(ev.losses(pts), got)

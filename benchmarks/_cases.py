"""Shared benchmark cases: the issue's small and medium MLPs, seeded, data and models."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


def small_case():
    """2-32-32-1 tanh MLP, 512 samples, MSE (issue 5, case a)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 2, generator=g)
    y = torch.sin(2 * x[:, :1]) * torch.cos(x[:, 1:]) + 0.1 * torch.randn(512, 1, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1))
    return model, nn.MSELoss(), x, y


def medium_case(train_steps: int = 200):
    """64-128-128-10 ReLU MLP, 2048 samples, cross-entropy (issue 5, case b), labels from a
    random teacher; briefly trained with full-batch SGD so curvature is not that of init."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2048, 64, generator=g)
    teacher = torch.randn(64, 10, generator=g)
    y = (x @ teacher + 0.5 * torch.randn(2048, 10, generator=g)).argmax(1)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(train_steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return model, loss_fn, x, y


def median_time(fn, repeats: int) -> tuple[float, list[float], object]:
    ts, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts, out


def matmul_peak(n: int = 2048, repeats: int = 9) -> float:
    """Float32 GEMM throughput (GFLOP/s) of this machine: the best of ``repeats`` 2048^3
    products (a peak, so the fastest run, not the median, on a shared machine)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    _, ts, _ = median_time(lambda: a @ b, repeats)
    return 2 * n ** 3 / min(ts) / 1e9


def peer_args(description: str | None = None) -> argparse.Namespace:
    """``--repeats`` and ``--threads`` of the peer comparisons, parsed; torch's thread
    count is set (for both sides) when ``--threads`` is given."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for both sides (default: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args

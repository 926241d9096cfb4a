"""BatchNorm statistics recomputed at every point (``bn_mode="recompute"``): slower.

The default everywhere is eval mode with the snapshot's running statistics. Moving the
weights away from a snapshot makes those statistics stale; Garipov et al. (2018) instead
recompute them at each point. Here: on a private copy of the model, the point's weights
are loaded, every BatchNorm layer's statistics are reset and re-estimated with a
cumulative average (``momentum=None``) over one train-mode pass of ``data``, then the loss
is evaluated in eval mode. One point at a time (no batching), hence slow.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from lossview.core.surface.evaluate import as_batches, batch_size

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


class RecomputeBNEvaluator:
    """Same interface as :class:`~lossview.core.surface.evaluate.PlaneEvaluator`."""

    path = "recompute-bn"

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Any,
                 center: Mapping[str, torch.Tensor], d1: Mapping[str, torch.Tensor],
                 d2: Mapping[str, torch.Tensor] | None = None) -> None:
        self.model = copy.deepcopy(model)
        for m in self.model.modules():
            if isinstance(m, _BN):
                m.momentum = None
        self.loss_fn = loss_fn
        self.batches = as_batches(data)
        self.sizes = [batch_size(x) for x, _ in self.batches]
        own = dict(self.model.named_parameters())
        self.names = list(own)
        self.center = {n: torch.as_tensor(center[n]).to(own[n].dtype) for n in self.names}
        zero = {n: torch.zeros_like(v) for n, v in self.center.items()}
        self.d1 = {n: torch.as_tensor((d1 or zero).get(n, zero[n])).to(zero[n].dtype)
                   for n in self.names}
        self.d2 = {n: torch.as_tensor((d2 or zero).get(n, zero[n])).to(zero[n].dtype)
                   for n in self.names}

    def _loss(self, params: Mapping[str, torch.Tensor]) -> float:
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                p.copy_(params[n])
            for m in self.model.modules():
                if isinstance(m, _BN):
                    m.reset_running_stats()
            self.model.train()
            for x, _ in self.batches:
                self.model(x)
            self.model.eval()
            total = sum(float(self.loss_fn(self.model(x), y)) * k
                        for (x, y), k in zip(self.batches, self.sizes))
        return total / sum(self.sizes)

    def iter_losses(self, points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        for i, (a, b) in enumerate(pts):
            p = {n: self.center[n] + float(a) * self.d1[n] + float(b) * self.d2[n]
                 for n in self.names}
            yield i, i + 1, np.array([self._loss(p)])

    def losses(self, points) -> np.ndarray:
        return np.concatenate([v for _, _, v in self.iter_losses(points)])

    def loss_at(self, params: Mapping[str, torch.Tensor], buffers=None) -> float:
        return self._loss({n: torch.as_tensor(params[n]).to(self.center[n].dtype)
                           .reshape(self.center[n].shape) for n in self.names})


def recompute_bn_grid(model, loss_fn, data, center, d1, d2, alphas, betas) -> np.ndarray:
    ev = RecomputeBNEvaluator(model, loss_fn, data, center, d1, d2)
    pts = np.array([(a, b) for a in alphas for b in betas])
    return ev.losses(pts).reshape(len(alphas), len(betas))

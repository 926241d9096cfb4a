"""The built-in problem ``eos``: full-batch gradient descent at the edge of stability.

Cohen, Kaur, Li, Kolter, Talwalkar 2021, *Gradient Descent on Neural Networks Typically
Occurs at the Edge of Stability* (ICLR, arXiv 2103.00065): under full-batch gradient
descent with step ``lr`` the sharpness (top eigenvalue of the training-loss Hessian) rises
while it is below ``2/lr`` (progressive sharpening), then hovers at ``2/lr``, where a
quadratic model of the loss says GD should diverge; the loss goes on falling over long
timescales, non-monotonically over short ones. Their setting, scaled down to a CPU: a
small tanh MLP fitted with mean squared error by plain GD (no momentum, whole dataset).

Here the data are ``n`` Gaussian inputs in ``dim`` dimensions with the smooth target
``amplitude * sin(2 x.u / sqrt(dim))`` (``u`` a seeded Gaussian direction), and the model
``dim - hidden x depth - 1`` with tanh, PyTorch's default initialisation. With the defaults
the sharpness starts near 6 % of ``2/lr`` and meets ``2/lr`` within about 1,000 steps at
lr 0.025, within about 300 at lr 0.05 (docs/training.md, measured and tested).

:class:`EdgeOfStabilityParts` holds everything; ``problems.py`` registers it as
``class EdgeOfStability(EdgeOfStabilityParts, Problem)`` (this module does not import
``problems``, so either may be imported first).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lossview.core.errors import LossviewError

Data = tuple[torch.Tensor, torch.Tensor]


def make_data(seed: int, n: int, n_val: int, dim: int, amplitude: float
              ) -> tuple[Data, Data | None]:
    """``(x, y)`` for training (``n`` rows) and validation (``n_val`` rows, or None):
    ``x ~ N(0, I_dim)``, ``y = amplitude * sin(2 x.u / sqrt(dim))`` of shape ``[rows, 1]``."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(dim, generator=g)
    x = torch.randn(n + n_val, dim, generator=g)
    y = amplitude * torch.sin(2.0 * (x @ u) / math.sqrt(dim))
    y = y.unsqueeze(1)
    train = (x[:n].contiguous(), y[:n].contiguous())
    val = (x[n:].contiguous(), y[n:].contiguous()) if n_val else None
    return train, val


def make_model(dim: int, hidden: int, depth: int) -> nn.Module:
    """``fc1, act1, ..., fc{depth}, act{depth}, out``: tanh MLP, PyTorch default init."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = dim
    for i in range(1, depth + 1):
        layers[f"fc{i}"] = nn.Linear(width, hidden)
        layers[f"act{i}"] = nn.Tanh()
        width = hidden
    layers["out"] = nn.Linear(width, 1)
    return nn.Sequential(layers)


class EdgeOfStabilityParts:
    """The ``eos`` problem's settings, data, model and loss (a mixin for ``Problem``)."""

    name = "eos"
    description = (
        "Full-batch gradient descent on a small tanh MLP fitting a smooth 1-D regression "
        "target with mean squared error, the setting of Cohen et al. 2021 (Gradient Descent "
        "on Neural Networks Typically Occurs at the Edge of Stability). The sharpness (top "
        "Hessian eigenvalue) rises while it is below 2/lr, then hovers at 2/lr, where the "
        "quadratic model says GD should blow up; the loss keeps falling over the long run "
        "while it jumps up and down from step to step. Halve lr and the sharpness settles "
        "twice as high."
    )
    options: dict[str, Any] = {"n": 200, "n_val": 200, "dim": 10, "hidden": 32, "depth": 2,
                               "amplitude": 4.0}
    default_optimizer = "sgd"
    default_lr = 0.025
    default_momentum = 0.0
    default_steps = 2000
    default_batch_size: int | None = None  # full batch: gradient descent
    default_every = 50

    seed: int
    opts: dict[str, Any]

    def _build(self) -> None:
        o = self.opts
        if o["n"] < 1 or o["dim"] < 1 or o["hidden"] < 1 or o["depth"] < 1:
            raise LossviewError("eos needs n, dim, hidden and depth >= 1 "
                                f"(got n={o['n']}, dim={o['dim']}, hidden={o['hidden']}, "
                                f"depth={o['depth']})")
        if not math.isfinite(o["amplitude"]):
            raise LossviewError(f"eos: amplitude must be finite, not {o['amplitude']!r}")
        self.train_data, self.val_data = make_data(self.seed, o["n"], o["n_val"], o["dim"],
                                                   o["amplitude"])

    def _model(self) -> nn.Module:
        o = self.opts
        return make_model(o["dim"], o["hidden"], o["depth"])

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error ``mean (f(x) - y)^2`` (no 1/2)."""
        return F.mse_loss(outputs, targets)

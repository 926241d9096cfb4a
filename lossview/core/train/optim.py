"""Optimizers and learning-rate schedules of the trainer (plain functions of the step)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from lossview.core.errors import LossviewError
from lossview.core.train.names import OPTIMIZERS, SCHEDULES


def make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float, momentum: float = 0.0,
                   nesterov: bool = False, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``momentum`` is SGD's/RMSprop's momentum and Adam's beta1 (when nonzero)."""
    params = list(params)
    kw = {"foreach": True}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay, **kw)
    if name in ("adam", "adamw"):
        betas = (momentum if momentum > 0 else 0.9, 0.999)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr, betas=betas, weight_decay=weight_decay, **kw)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kw)
    raise LossviewError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")


def lr_at(step: int, base: float, schedule: str, total: int, warmup_steps: int = 0,
          step_every: int = 0, gamma: float = 0.1, min_lr: float = 0.0) -> float:
    """Learning rate for the update taken at ``step`` (0-based) of ``total``.

    - ``constant``: ``base``;
    - ``step``: ``base * gamma ** (step // step_every)`` (``step_every`` defaults to total/3);
    - ``cosine``: from ``base`` down to ``min_lr`` over the steps after warm-up;
    - ``warmup``: linear from ``base/warmup_steps`` up to ``base`` over ``warmup_steps``
      (default 5 % of ``total``), then constant.
    A positive ``warmup_steps`` adds the same linear warm-up to ``step`` and ``cosine``.
    """
    if schedule == "warmup" and warmup_steps <= 0:
        warmup_steps = max(1, total // 20)
    if warmup_steps > 0 and step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if schedule in ("constant", "warmup"):
        return base
    if schedule == "step":
        every = step_every if step_every > 0 else max(1, total // 3)
        return base * gamma ** ((step - warmup_steps) // every)
    if schedule == "cosine":
        span = max(1, total - warmup_steps)
        t = min(1.0, (step - warmup_steps) / span)
        return min_lr + 0.5 * (base - min_lr) * (1.0 + math.cos(math.pi * t))
    raise LossviewError(f"unknown schedule {schedule!r} (choose from {', '.join(SCHEDULES)})")

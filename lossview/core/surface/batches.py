"""Data batches and eval mode for the surface evaluators (imported by several of them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lossview.core.errors import LossviewError

Batch = tuple[Any, torch.Tensor]


def as_batches(data: Any) -> list[Batch]:
    """``(inputs, targets)`` or an iterable of such pairs, as a list of batches.

    A pair whose first element is a tensor and whose second is a tensor of the same
    length is one batch; anything else is read as an iterable of batches.
    """
    if (isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0])
            and torch.is_tensor(data[1]) and len(data[0]) == len(data[1])):
        return [(data[0], data[1])]
    try:
        batches = [tuple(b) for b in data]
    except TypeError:
        raise LossviewError("data must be (inputs, targets) or an iterable of such batches") from None
    if not batches or any(len(b) != 2 for b in batches):
        raise LossviewError("data must be (inputs, targets) or a non-empty iterable of such pairs")
    return [(x, y) for x, y in batches]


def batch_size(x: Any) -> int:
    if torch.is_tensor(x):
        return int(x.shape[0])
    if isinstance(x, (tuple, list)) and x:
        return batch_size(x[0])
    if isinstance(x, Mapping) and x:
        return batch_size(next(iter(x.values())))
    raise LossviewError(f"cannot tell the batch size of inputs of type {type(x).__name__}")


class eval_mode:
    """Context: ``module.eval()`` (or ``.train()``) inside, the previous flags restored after."""

    def __init__(self, module: nn.Module, train: bool = False) -> None:
        self.module, self.train = module, train

    def __enter__(self) -> nn.Module:
        self._flags = [(m, m.training) for m in self.module.modules()]
        self.module.train(self.train)
        return self.module

    def __exit__(self, *exc: Any) -> None:
        for m, flag in self._flags:
            m.training = flag

"""Loss on a grid of a plane: :func:`loss_surface` (public API) and progressive evaluation.

``loss_surface(model, loss_fn, data)`` evaluates ``steps x steps`` points exactly, many at a
time (see :mod:`lossview.core.surface.evaluate`). :func:`iter_grid` is the progressive
form used by the GUI: a coarse sub-grid first, then finer ones filling in the points not
yet evaluated, yielding after every chunk so that ``gen.close()`` cancels promptly.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from lossview.core.errors import LossviewError
from lossview.core.surface.batches import as_batches
from lossview.core.surface.directions import random_plane
from lossview.core.surface.evaluate import DEFAULT_MEMORY_BUDGET, PlaneEvaluator
from lossview.core.surface.loop import resolve_device
from lossview.core.surface.precision import (
    bf16_copy,
    effective_precision,
    stepwise,
    subgrid_check,
    tf32_matmuls,
)


@dataclass
class Surface:
    """``loss[i, j]`` is the loss at ``center + alphas[i] * d1 + betas[j] * d2``.

    ``d1``/``d2`` are the directions used (name -> tensor), ``path`` says which evaluation
    path ran (batched: ``"first-layer+mlp"`` (``"first-layer+mlp+numba"`` with the
    compiled element-wise passes), ``"first-layer"`` exact shortcuts or ``"generic"``; a
    loop of forward passes: ``"loop"``/``"loop+first-layer"``).
    ``precision``: None for float32, else the record of the error measured against
    float32 on a sub-grid (:func:`~lossview.core.surface.precision.subgrid_check`).
    """

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    d1: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    d2: dict[str, torch.Tensor] = field(repr=False, default_factory=dict)
    path: str = "generic"
    precision: dict | None = None


@dataclass
class GridProgress:
    """A partial grid: ``loss`` holds NaN where ``mask`` is False (not evaluated yet)."""

    fraction: float
    loss: np.ndarray
    mask: np.ndarray


def refinement_levels(n: int, coarse: int = 6) -> list[np.ndarray]:
    """Index sets of a 1-D axis of ``n`` points, coarse to fine, each containing the last.

    Level strides are powers of two, the coarsest leaving at least ``coarse`` points; the
    last level is every index. Both ends are always in the first level.
    """
    stride = 1
    while (n - 1) // (stride * 2) >= coarse - 1:
        stride *= 2
    levels = []
    while stride >= 1:
        idx = np.unique(np.concatenate([np.arange(0, n, stride), [n - 1]]))
        levels.append(idx)
        stride //= 2
    return levels


def grid_order(na: int, nb: int, coarse: int = 6) -> list[np.ndarray]:
    """``[(i, j), ...]`` index pairs per refinement level, each point exactly once."""
    la, lb = refinement_levels(na, coarse), refinement_levels(nb, coarse)
    la += [la[-1]] * (max(len(la), len(lb)) - len(la))
    lb += [lb[-1]] * (max(len(la), len(lb)) - len(lb))
    done = np.zeros((na, nb), dtype=bool)
    out = []
    for ia, ib in zip(la, lb):
        sel = np.zeros((na, nb), dtype=bool)
        sel[np.ix_(ia, ib)] = True
        sel &= ~done
        done |= sel
        out.append(np.argwhere(sel))
    return out


def iter_grid(evaluator: PlaneEvaluator, alphas: np.ndarray, betas: np.ndarray,
              progressive: bool = True,
              loss: np.ndarray | None = None) -> Generator[GridProgress, None, np.ndarray]:
    """Evaluate the grid ``alphas x betas``; yield :class:`GridProgress` after each chunk.

    Returns (``StopIteration.value``) the full ``[len(alphas), len(betas)]`` loss array.
    ``loss`` may hold values already known (non-NaN entries are not recomputed).
    """
    alphas, betas = np.asarray(alphas, float), np.asarray(betas, float)
    shape = (len(alphas), len(betas))
    out = np.full(shape, np.nan) if loss is None else np.array(loss, dtype=float)
    mask = ~np.isnan(out)
    levels = grid_order(*shape) if progressive else [np.argwhere(np.ones(shape, bool))]
    total = out.size
    for idx in levels:
        idx = idx[~mask[idx[:, 0], idx[:, 1]]]
        if not len(idx):
            continue
        pts = np.stack([alphas[idx[:, 0]], betas[idx[:, 1]]], axis=1)
        for lo, hi, vals in evaluator.iter_losses(pts):
            out[idx[lo:hi, 0], idx[lo:hi, 1]] = vals
            mask[idx[lo:hi, 0], idx[lo:hi, 1]] = True
            yield GridProgress(float(mask.sum()) / total, out.copy(), mask.copy())
    return out


def loss_surface(model: nn.Module, loss_fn: Callable, data: Any, directions: Any = "random",
                 span: float = 1.0, steps: int = 51,
                 center: Mapping[str, torch.Tensor] | None = None,
                 normalization: str | None = "filter", seed: int = 0,
                 include_biasbn: bool = False, bn_mode: str = "eval",
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, path: str = "auto",
                 device: Any = None, precision: str = "float32") -> Surface:
    """The loss on a ``steps x steps`` grid of a plane through ``center``.

    Parameters
    ----------
    model : an ``nn.Module``; its parameters are left exactly as they were.
    loss_fn : ``loss_fn(outputs, targets) -> scalar mean``.
    data : ``(inputs, targets)`` or an iterable of such batches (loss = mean over all).
    directions : ``"random"`` (Gaussian, normalised per ``normalization``) or a pair of
        dicts name -> tensor used as given.
    span, steps : ``alphas = betas = linspace(-span, span, steps)``.
    center : name -> tensor; default the model's current parameters.
    normalization : ``"filter"`` (Li et al. 2018), ``"layer"`` or ``"none"``, for random
        directions.
    seed : seed of the random directions.
    include_biasbn : random directions on biases/BatchNorm parameters equal the weights
        (Li et al.'s default) instead of zero (their ``--xignore biasbn``, used here).
    bn_mode : ``"eval"`` (running statistics, default) or ``"recompute"`` (BatchNorm
        statistics recomputed from ``data`` at every grid point: slower).
    memory_budget : bytes of activations per batched pass.
    path : ``"auto"`` (measured per model), ``"batched"`` or ``"loop"``; see
        :class:`~lossview.core.surface.evaluate.PlaneEvaluator`.
    device : ``None`` (the model's), ``"cpu"``, ``"cuda[:i]"`` or ``"auto"`` (CUDA when
        available): where weights, data and directions live during the evaluation.
    precision : ``"float32"`` (default), ``"tf32"`` (CUDA only; float32 elsewhere) or
        ``"bf16"`` (a bfloat16 copy of model and data); a reduced precision fills
        ``Surface.precision`` with its error measured against float32 on a 5x5 sub-grid
        (see :mod:`lossview.core.surface.precision`). Not with ``bn_mode="recompute"``.
    """
    steps = int(steps)
    if steps < 1:
        raise LossviewError("steps must be at least 1")
    if not np.isfinite(span) or span < 0:
        raise LossviewError(f"span must be a finite non-negative number, not {span}")
    params = {n: p.detach() for n, p in model.named_parameters()}
    ctr = params if center is None else {n: torch.as_tensor(center[n]).to(params[n].dtype)
                                         for n in params}
    if isinstance(directions, str):
        if directions != "random":
            raise LossviewError(f"directions must be 'random' or a pair of dicts, not {directions!r}")
        d1, d2 = random_plane(ctr, seed, normalization, include_biasbn)
    else:
        try:
            d1, d2 = directions
        except (TypeError, ValueError):
            raise LossviewError("directions must be 'random' or a pair of dicts") from None
    grid = np.linspace(-float(span), float(span), steps)
    first = next(iter(params.values()), None)
    precision, _ = effective_precision(precision, resolve_device(
        device, first.device if first is not None else torch.device("cpu")))
    if bn_mode == "recompute" and precision != "float32":
        raise LossviewError(f"precision {precision!r} is not available with bn_mode='recompute'")
    if bn_mode == "recompute":
        from lossview.core.surface.batchnorm import recompute_bn_grid

        loss = recompute_bn_grid(model, loss_fn, data, ctr, d1, d2, grid, grid)
        return Surface(grid, grid.copy(), loss, dict(d1), dict(d2), "recompute-bn")
    if bn_mode != "eval":
        raise LossviewError(f"bn_mode must be 'eval' or 'recompute', not {bn_mode!r}")
    kw = {"memory_budget": memory_budget, "device": device}
    if precision == "bf16":
        data = as_batches(data)  # an iterator of batches feeds both evaluators
        m16, data16 = bf16_copy(model, data)
        ev = PlaneEvaluator(m16, loss_fn, data16, ctr, d1, d2, path=path, **kw)
        ev32 = PlaneEvaluator(model, loss_fn, data, ctr, d1, d2, path=ev.path, **kw)
    else:
        ev = ev32 = PlaneEvaluator(model, loss_fn, data, ctr, d1, d2, path=path, **kw)
    gen = iter_grid(ev, grid, grid, progressive=False)
    if precision == "tf32":
        gen = stepwise(gen, tf32_matmuls)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            loss = stop.value
            break
    check = None if precision == "float32" else subgrid_check(ev32, grid, grid, loss, precision)
    return Surface(grid, grid.copy(), loss, {n: v.cpu() for n, v in ev32.d1.items()},
                   {n: v.cpu() for n, v in ev32.d2.items()},
                   ev.path if check is None else f"{ev.path}, {precision}", check)

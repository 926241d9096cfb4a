"""Exact shortcuts for chains of Linear layers and elementwise activations, and for the
common losses, used by :class:`~lossview.core.surface.evaluate.PlaneEvaluator`.

For ``P`` points with coefficients ``c_p = (1, a_p, b_p)``, every quantity that is linear
in the weights is one small product with the stacked ``[center; d1; d2]``:

- the first layer's output: ``Z_p = c_p @ [Z0; Z1; Z2]`` (``Z0 = X W0^T + b0`` etc.,
  computed once per batch);
- the weights of each later Linear layer: ``W_p = c_p @ [W; D1; D2]``, then one batched
  product ``h_p W_p^T + bias_p`` for all points (``torch.baddbmm``).

Elementwise activations are applied to the ``[P, N, H]`` block in place. Mean
cross-entropy and mean squared error are reduced per point directly; any other loss goes
through ``torch.vmap(loss_fn)``. Every step is the same arithmetic as a forward pass at
that point's weights, so results equal brute force to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Modules applied elementwise (shape-preserving, no parameters, no state).
ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU,
               nn.Softplus, nn.Identity, nn.Dropout, nn.ReLU6, nn.Hardtanh, nn.Mish,
               nn.CELU, nn.SELU, nn.Softsign, nn.Tanhshrink, nn.LogSigmoid)

_INPLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.Sigmoid: torch.sigmoid_}


def mlp_tail(model: nn.Sequential, first: int) -> list[tuple[str, nn.Module]] | None:
    """The modules after index ``first`` if all are Linear or elementwise, else None."""
    out = []
    for name, m in list(model.named_children())[first + 1:]:
        if type(m) is nn.Linear or (isinstance(m, ELEMENTWISE) and not any(True for _ in m.parameters())):
            out.append((name, m))
        else:
            return None
    return out


def apply_elementwise(m: nn.Module, h: torch.Tensor) -> torch.Tensor:
    if isinstance(m, (nn.Identity, nn.Dropout)):  # Dropout: eval mode only reaches here
        return h
    f = _INPLACE.get(type(m))
    return f(h) if f is not None else m(h)


def loss_kind(loss_fn: Callable) -> str | None:
    """``"ce"`` / ``"mse"`` when ``loss_fn`` is plain mean cross-entropy / MSE, else None."""
    if loss_fn is F.cross_entropy:
        return "ce"
    if loss_fn is F.mse_loss:
        return "mse"
    if type(loss_fn) is nn.CrossEntropyLoss:
        ok = (loss_fn.weight is None and loss_fn.reduction == "mean"
              and loss_fn.label_smoothing == 0.0)
        return "ce" if ok else None
    if type(loss_fn) is nn.MSELoss:
        return "mse" if loss_fn.reduction == "mean" else None
    return None


def per_point_loss(kind: str | None, loss_fn: Callable, out: torch.Tensor, y: Any) -> torch.Tensor:
    """Mean loss of each point's outputs ``out[p]`` against the shared targets ``y``."""
    if kind == "ce" and torch.is_tensor(y) and y.dim() == 1 and not y.is_floating_point() \
            and out.dim() == 3 and bool((y >= 0).all()):
        lse = torch.logsumexp(out, dim=-1)
        picked = out.gather(-1, y.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(-1)
        return (lse - picked).mean(dim=1)
    if kind == "mse" and torch.is_tensor(y) and tuple(out.shape[1:]) == tuple(y.shape):
        diff = out - y.unsqueeze(0)
        return diff.mul_(diff).flatten(1).mean(dim=1)
    return torch.vmap(loss_fn, in_dims=(0, None))(out, y)


#: Activations with act(1) == 1 exactly: a column of ones passes through them unchanged.
_KEEPS_ONE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.Identity, nn.Dropout)


class MLPTail:
    """Stacked ``[center; d1; d2]`` weights of the Linear layers after the first one.

    The first layer's output arrives with a trailing column of ones (``Z0`` carries 1,
    ``Z1``/``Z2`` carry 0), so the next Linear layer takes its bias inside the product:
    ``[h, 1] @ [[W^T], [b]] = h W^T + b`` (one ``torch.bmm``, no separate bias pass).
    Activations run on the whole contiguous block; the ones column is restored after an
    activation that does not map 1 to 1. Later Linear layers use ``torch.baddbmm``.
    """

    def __init__(self, tail: list[tuple[str, nn.Module]], center: dict, d1: dict, d2: dict) -> None:
        self.ops: list[tuple[str, Any]] = []
        # Use the ones column only if every activation before the next Linear keeps it
        # (ReLU family): restoring it after tanh etc. costs more than the bias pass saves.
        first_acts = []
        for _, m in tail:
            if type(m) is nn.Linear:
                break
            first_acts.append(m)
        self.ones = all(isinstance(m, _KEEPS_ONE) and _maps_one_to_one(m) for m in first_acts)
        ones = self.ones  # the block entering this op carries the ones column
        for name, m in tail:
            if type(m) is nn.Linear:
                w = f"{name}.weight"
                b = f"{name}.bias"
                i, o = m.in_features, m.out_features
                if ones:
                    mats = []
                    for src in (center, d1, d2):
                        aug = torch.zeros(i + 1, o, dtype=src[w].dtype, device=src[w].device)
                        aug[:i] = src[w].t()
                        if m.bias is not None:
                            aug[i] = src[b]
                        mats.append(aug.reshape(-1))
                    self.ops.append(("linear1", (torch.stack(mats), i + 1, o)))
                    ones = False
                    continue
                wt = torch.stack([src[w].t().reshape(-1) for src in (center, d1, d2)])
                bias = None if m.bias is None else torch.stack([src[b] for src in (center, d1, d2)])
                self.ops.append(("linear", (wt, bias, i, o)))
            else:
                keep = isinstance(m, _KEEPS_ONE) and _maps_one_to_one(m)
                self.ops.append(("act", (m, ones and not keep)))

    def forward(self, coef: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``h`` [P, N, H (+ 1 ones column if ``self.ones``)] -> outputs [P, N, C]."""
        p = coef.shape[0]
        for kind, op in self.ops:
            if kind == "act":
                m, restore = op
                h = apply_elementwise(m, h)
                if restore:
                    h[..., -1] = 1.0
            elif kind == "linear1":
                stack, i, o = op
                h = torch.bmm(h, torch.mm(coef, stack).view(p, i, o))
            else:
                wt, bias, i, o = op
                w = torch.mm(coef, wt).view(p, i, o)
                if bias is None:
                    h = torch.bmm(h, w)
                else:
                    h = torch.baddbmm(torch.mm(coef, bias).unsqueeze(1), h, w)
        return h


def _maps_one_to_one(m: nn.Module) -> bool:
    """True when the activation maps 1.0 to exactly 1.0 (checked, not assumed)."""
    with torch.no_grad():
        return bool(m(torch.ones(1)).item() == 1.0)


def with_ones(zs: list[torch.Tensor]) -> torch.Tensor:
    """``[3, N * (H + 1)]``: first-layer outputs of center, d1, d2 plus the ones column."""
    out = []
    for k, z in enumerate(zs):
        col = torch.full(z.shape[:-1] + (1,), 1.0 if k == 0 else 0.0, dtype=z.dtype, device=z.device)
        out.append(torch.cat([z, col], dim=-1).reshape(-1))
    return torch.stack(out)

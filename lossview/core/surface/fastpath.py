"""Exact shortcuts for chains of Linear layers and elementwise activations, and for the
common losses, used by :class:`~lossview.core.surface.evaluate.PlaneEvaluator`.

For ``P`` points with coefficients ``c_p = (1, a_p, b_p)``, every quantity that is linear
in the weights is one small product with the stacked ``[center; d1; d2]``:

- the first layer's output: ``Z_p = c_p @ [Z0; Z1; Z2]`` (``Z0 = X W0^T + b0`` etc.,
  computed once per batch);
- the weights of each later Linear layer: ``W_p = c_p @ [W; D1; D2]``, then one batched
  product ``h_p W_p^T + bias_p`` for all points (``torch.baddbmm``).

On a CPU the samples run in blocks of rows (:func:`block_rows`): the combined weights are
formed once per chunk, and each block's activations stay in the core's caches from one
layer's pass to the next (the medium MLP's 16-point chunks: 1.4 -> 1.0 ms a point on one
thread); a mean loss is summed block by block. Elementwise activations are applied to the
``[P, N, H]`` block in place. Mean cross-entropy and mean squared error are reduced per
point directly; any other loss goes through ``torch.vmap(loss_fn)``. Every step is the same
arithmetic as a forward pass at
that point's weights, so results equal brute force to float rounding.

With numba (:mod:`~lossview.core.surface.fastkernels` decides when, per evaluator) two
passes run as kernels of :mod:`~lossview.core.surface.mlp_kernels` on numpy views of the
same buffers: the combination with the first ReLU, and the output bias with the
cross-entropy (the medium MLP: 3-6 % less time, docs/benchmarks.md "Loss surfaces").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossview.core.surface import fastkernels
from lossview.core.surface.pipelines import Workspace

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


def plain_class_targets(y: Any) -> bool:
    """``y`` is a 1-D tensor of class indices, none negative (no ``ignore_index``)."""
    return (torch.is_tensor(y) and y.dim() == 1 and not y.is_floating_point()
            and bool((y >= 0).all()))


def per_point_loss(kind: str | None, loss_fn: Callable, out: torch.Tensor, y: Any,
                   layout: str = "pnc", plain: bool | None = None) -> torch.Tensor:
    """Mean loss of each point's outputs against the shared targets ``y``.

    ``out`` is ``[P, N, C]`` (``layout="pnc"``) or ``[P, C, N]`` (``"pcn"``, logits first,
    see :class:`MLPTail`); it is scratch (may be overwritten). The cross-entropy is computed
    as torch does it (max-shifted log-sum-exp minus the target's logit), along whichever
    axis holds the classes. ``plain``: :func:`plain_class_targets` of ``y`` if known.
    """
    if plain is None:
        plain = kind == "ce" and plain_class_targets(y)
    if kind == "ce" and out.dim() == 3 and plain:
        if layout == "pcn":  # classes on dim 1: reductions over contiguous rows of N
            return ce_sum_pcn(out, y.view(1, 1, -1).expand(out.shape[0], 1, -1)) / out.shape[2]
        lse = torch.logsumexp(out, dim=-1)
        picked = out.gather(-1, y.view(1, -1, 1).expand(out.shape[0], -1, 1)).squeeze(-1)
        return (lse - picked).mean(dim=1)
    if kind == "mse" and torch.is_tensor(y) and y.dim() == 2 and layout == "pcn" \
            and tuple(out.shape[1:]) == tuple(y.shape[::-1]):
        diff = out - y.t().unsqueeze(0)  # the same elements, samples along the rows
        return diff.mul_(diff).flatten(1).mean(dim=1)
    if layout == "pcn":
        out = out.transpose(1, 2)
    if kind == "mse" and torch.is_tensor(y) and tuple(out.shape[1:]) == tuple(y.shape):
        diff = out - y.unsqueeze(0)
        return diff.mul_(diff).flatten(1).mean(dim=1)
    return torch.vmap(loss_fn, in_dims=(0, None))(out, y)


def ce_sum_pcn(out: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Each point's cross-entropy summed over its samples (float64 ``[P]``), logits
    ``[P, C, N]`` and ``index`` the targets as ``[P, 1, N]``: ``F.cross_entropy``'s own
    arithmetic (``log_softmax`` then the target's entry). torch's ``log_softmax`` over the
    classes of a classes-first block is one vectorised pass along the sample rows: 17 us
    a point of the medium MLP against 44 us for max-shift, exp, sum and log as separate
    operations."""
    picked = torch.log_softmax(out, 1).gather(1, index)
    return picked.sum((1, 2), dtype=torch.float64).neg_()


#: Activations with act(1) == 1 exactly: a column of ones passes through them unchanged.
_KEEPS_ONE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.Identity, nn.Dropout)


class MLPTail:
    """Stacked ``[center; d1; d2]`` weights of the Linear layers after the first one.

    The first layer's output arrives with a trailing column of ones (``Z0`` carries 1,
    ``Z1``/``Z2`` carry 0), so the next Linear layer takes its bias inside the product:
    ``[h, 1] @ [[W^T], [b]] = h W^T + b`` (one ``torch.bmm``, no separate bias pass).
    Activations run on the whole contiguous block; the ones column is restored after an
    activation that does not map 1 to 1. Other biases are added in place after the
    product (``torch.baddbmm`` first copies the broadcast bias into the whole output: it
    measured slower).

    With ``logits_first=True`` the last Linear layer writes ``[P, C, N]`` (outputs before
    samples, :func:`per_point_loss` with ``layout="pcn"``): a cross-entropy over a few
    classes then reduces along contiguous rows (torch's reductions over a trailing
    dimension of 10 were a fifth of the medium case's time), and a single-output layer
    is one row-vector product per point (``[1, H] @ [H, N]``: 3.2 us against 9 us for
    ``[N, H] @ [H, 1]`` on the small MLP).

    Every output lands in a :class:`~lossview.core.surface.pipelines.Workspace` buffer
    reused from chunk to chunk.
    """

    def __init__(self, tail: list[tuple[str, nn.Module]], center: dict, d1: dict, d2: dict,
                 logits_first: bool = False) -> None:
        self.ops: list[tuple[str, Any]] = []
        # Use the ones column only if every activation before the next Linear keeps it
        # (ReLU family): restoring it after tanh etc. costs more than the bias pass saves.
        first_acts = []
        for _, m in tail:
            if type(m) is nn.Linear:
                break
            first_acts.append(m)
        self.ones = all(isinstance(m, _KEEPS_ONE) and _maps_one_to_one(m) for m in first_acts)
        # a ReLU right after the first layer joins its combination (numba kernels)
        self.relu_first = bool(tail) and type(tail[0][1]) is nn.ReLU
        self.linear_last = bool(tail) and type(tail[-1][1]) is nn.Linear
        last = max((k for k, (_, m) in enumerate(tail) if type(m) is nn.Linear), default=-1)
        self.logits_first = bool(logits_first and last >= 0)
        ones = self.ones  # the block entering this op carries the ones column
        for k, (name, m) in enumerate(tail):
            if type(m) is not nn.Linear:
                keep = isinstance(m, _KEEPS_ONE) and _maps_one_to_one(m)
                self.ops.append(("act", (m, ones and not keep)))
                continue
            w, b = f"{name}.weight", f"{name}.bias"
            i, o = m.in_features, m.out_features
            first = self.logits_first and k == last  # output [P, o, N]
            mats, biases = [], []
            for src in (center, d1, d2):
                wt = src[w] if first else src[w].t()  # [o, i] or [i, o]
                if ones:  # the bias joins the weights as the ones column's row/column
                    aug = torch.zeros(o, i + 1, dtype=wt.dtype, device=wt.device)
                    aug[:, :i] = src[w]
                    if m.bias is not None:
                        aug[:, i] = src[b]
                    wt = aug if first else aug.t()
                elif m.bias is not None:
                    biases.append(src[b])
                mats.append(wt.reshape(-1))
            bias = torch.stack(biases) if biases else None
            self.ops.append(("linear", (torch.stack(mats), bias, i + int(ones), o, first)))
            ones = False

    def weights(self, coef: torch.Tensor, ws: Workspace) -> list[tuple[torch.Tensor, Any]]:
        """Every Linear layer's weights (and bias, if not carried by the ones column) at the
        chunk's points, ``coef @ [W; D1; D2]``: once per chunk, shared by its row blocks."""
        p = coef.shape[0]
        out = []
        for k, (kind, op) in enumerate(self.ops):
            if kind != "linear":
                continue
            stack, bias, i, o, first = op
            w = torch.mm(coef, stack, out=ws.get(("w", k), (p, i * o), stack))
            b = None
            if bias is not None:
                b = torch.mm(coef, bias, out=ws.get(("b", k), (p, o), bias))
                b = b.unsqueeze(2) if first else b.unsqueeze(1)
            out.append((w.view(p, o, i) if first else w.view(p, i, o), b))
        return out

    def forward(self, coef: torch.Tensor, h: torch.Tensor, ws: Workspace | None = None,
                weights: list[tuple[torch.Tensor, Any]] | None = None,
                outs: list[torch.Tensor | None] | None = None, start: int = 0,
                last_bias: bool = True) -> torch.Tensor:
        """``h`` [P, N, H (+ 1 ones column if ``self.ones``)] -> outputs [P, N, C]
        (or [P, C, N] with ``logits_first``); ``weights`` from :meth:`weights`; ``outs``
        the Linear layers' output buffers by op (:meth:`buffers`). ``start``: ops already
        applied (1: the first ReLU, fused into the combination); ``last_bias=False``:
        the last Linear layer's bias is left out (the fused loss adds it)."""
        ws = ws or Workspace()
        lin = iter(weights if weights is not None else self.weights(coef, ws))
        if outs is None:
            outs = self.buffers(h.shape[0], h.shape[1], h, ws)
        last = len(self.ops) - 1
        for k, ((kind, op), buf) in enumerate(zip(self.ops, outs)):
            if k < start:
                continue
            if kind == "act":
                m, restore = op
                h = apply_elementwise(m, h)
                if restore:
                    h[..., -1] = 1.0
                continue
            w, b = next(lin)
            h = torch.bmm(w, h.transpose(1, 2), out=buf) if op[4] else torch.bmm(h, w, out=buf)
            if b is not None and (last_bias or k != last):
                h.add_(b)
        return h

    def buffers(self, p: int, n: int, like: torch.Tensor, ws: Workspace) -> list[torch.Tensor | None]:
        """Output blocks of the Linear layers for ``p`` points and ``n`` rows (None for an
        activation, which runs in place): views of the workspace's buffers, so that every
        block of rows reuses the same (cache-hot) memory."""
        return [None if kind == "act" else
                ws.get(("h", k), (p, op[3], n) if op[4] else (p, n, op[3]), like)
                for k, (kind, op) in enumerate(self.ops)]

    def loss_sum(self, coef: torch.Tensor, zstack: torch.Tensor, shape: tuple[int, ...], y: Any,
                 kind: str | None, loss_fn: Callable, weights: list, ws: Workspace,
                 kernels: Any = None) -> torch.Tensor:
        """Each point's loss summed over the batch's samples (float64 [P]), block of rows
        by block, from the first layer's ``zstack`` (``[3, N * width]``, see
        :func:`with_ones`). Views and buffers of the blocks are set up once per chunk shape
        (:func:`_blocks`): per block only the products, activations and loss run.
        ``kernels``: :mod:`~lossview.core.surface.mlp_kernels` (or None: torch's
        operations) for the combination (with the first ReLU) and the cross-entropy."""
        p = coef.shape[0]
        plan = _blocks(self, p, zstack, shape, y, kind, ws, kernels is not None)
        ce = plan.ce
        if plan.views is not None:
            return self._loss_sum_kernels(kernels, plan, coef, weights, ws, kind, loss_fn)
        total = None
        for zb, hb, h, target, outs, r in plan.blocks:
            torch.mm(coef, zb, out=hb)  # h is a [P, r, width] view of hb
            out = self.forward(coef, h, ws, weights, outs)
            s = ce_sum_pcn(out, target) if ce else \
                per_point_loss(kind, loss_fn, out, target, plan.layout, plan.plain).double() * r
            total = s if total is None else total.add_(s)
        return total

    def _loss_sum_kernels(self, k: Any, plan: _Plan, coef: torch.Tensor, weights: list,
                          ws: Workspace, kind: str | None, loss_fn: Callable) -> torch.Tensor:
        """:meth:`loss_sum` with the numba kernels: one pass for the combination and the
        first ReLU (``start=1``), one for the output bias and the cross-entropy (a point
        with a logit that is not finite takes torch's operations, as without kernels)."""
        p = coef.shape[0]
        c = coef.numpy()
        total = torch.zeros(p, dtype=torch.float64)
        t = total.numpy()
        ce = plan.fuse_ce
        comb = "combine" in fastkernels.KERNELS
        relu = comb and self.relu_first
        bias = flags = None
        if ce:
            b = weights[-1][1]
            bias = b.squeeze(2).numpy() if b is not None else \
                np.zeros((p, self.ops[-1][1][3]), dtype=np.float32)
            flags = np.zeros(p, dtype=np.uint8)
        for (zb, hb, h, target, outs, r), (z0, z1, z2, hn, on, yn, scratch) in zip(plan.blocks,
                                                                                   plan.views):
            if comb:
                k.combine(c, z0, z1, z2, hn, relu)
            else:
                torch.mm(coef, zb, out=hb)
            out = self.forward(coef, h, ws, weights, outs, start=int(relu), last_bias=not ce)
            if plan.ce and not ce:
                total.add_(ce_sum_pcn(out, target))
            elif not ce:
                total.add_(per_point_loss(kind, loss_fn, out, target, plan.layout, plan.plain)
                           .double() * r)
            elif k.ce_sum(on, bias, yn, t, scratch, flags, plan.run):
                bad = torch.from_numpy(flags.astype(bool))
                logits = out[bad] + torch.from_numpy(bias)[bad].unsqueeze(2)
                total[bad] += ce_sum_pcn(logits, target[bad])
                flags[:] = 0
        return total

class _Plan:
    """The blocks of one batch for one chunk size: ``(z block [3, r * width], h buffer
    [P, r * width], its [P, r, width] view, targets, output buffers, r)``; with the numba
    kernels also ``views``, numpy views for them per block: ``(z0, z1, z2, h, logits,
    targets, scratch)``, ``fuse_ce`` (the cross-entropy and the output bias run in one
    kernel) and ``run`` (:func:`~lossview.core.surface.mlp_kernels.log_run`)."""

    def __init__(self, key: tuple, refs: tuple, blocks: list, ce: bool, layout: str,
                 plain: bool) -> None:
        self.key, self.refs, self.blocks = key, refs, blocks
        self.ce, self.layout, self.plain = ce, layout, plain
        self.views: list[tuple] | None = None
        self.fuse_ce, self.run = False, 1


def _blocks(tail: MLPTail, p: int, zstack: torch.Tensor, shape: tuple[int, ...], y: Any,
            kind: str | None, ws: Workspace, kernels: bool = False) -> _Plan:
    """The row blocks of a batch (cached in ``ws`` by chunk size and batch)."""
    plans = ws.memo.setdefault("mlp-blocks", {})
    key = (id(tail), p, id(zstack), id(y), kernels and tuple(sorted(fastkernels.KERNELS)))
    plan = plans.get(key)
    if plan is not None and plan.refs[0] is zstack and plan.refs[1] is y:
        return plan
    n, width = shape
    plain = kind == "ce" and plain_class_targets(y)
    split = plain or (kind == "mse" and torch.is_tensor(y) and y.shape[:1] == (n,))
    # a mean over samples splits into blocks of rows (on a CPU, for its caches: a GPU
    # would only launch more kernels); any other loss sees the whole batch
    rows = block_rows(p, n, width * zstack.element_size()) \
        if split and zstack.device.type == "cpu" else n
    ce = plain and tail.logits_first
    z = zstack.view(3, n, width)
    blocks = []
    for lo in range(0, n, rows):
        r = min(rows, n - lo)
        hb = ws.get("z", (p, r * width), zstack)
        target = y[lo:lo + r] if rows < n else y
        if ce:
            target = target.view(1, 1, -1).expand(p, 1, -1)
        blocks.append((z[:, lo:lo + r].reshape(3, r * width), hb, hb.view(p, r, width), target,
                       tail.buffers(p, r, zstack, ws), r))
    if len(plans) >= 8:  # batches recomputed per chunk (too large to keep): no hoard
        plans.clear()
    plan = plans[key] = _Plan(key, (zstack, y), blocks, ce,
                              "pcn" if tail.logits_first else "pnc", plain)
    if kernels:
        plan.fuse_ce = ce and tail.linear_last and "ce" in fastkernels.KERNELS
        plan.views = [fastkernels.block_views(b, plan.fuse_ce, ws) for b in blocks]
        if plan.fuse_ce:
            from lossview.core.surface.mlp_kernels import log_run

            plan.run = log_run(tail.ops[-1][1][3])
    return plan


#: Bytes of a chunk's widest activation block [P, rows, width]: 1-2 MiB blocks stay in the
#: core's caches between the layers' passes (measured: 16 points of the medium MLP, 2 MiB
#: blocks of 224 rows 983 us a point on one thread, all 2,048 rows in one block 1418 us).
TILE_BYTES = 2 * 2**20
MIN_ROWS = 128  # fewer rows per block add more per-operation overhead than the cache saves


def block_rows(points: int, n: int, row_bytes: int) -> int:
    """Samples per block so that ``points`` points' widest activations fit :data:`TILE_BYTES`,
    the batch split into blocks of equal size (the last one up to ``count - 1`` rows
    shorter): 2,048 rows in 8 blocks of 228 and one of 224, not 9 of 224 and a 32-row
    remainder whose small products and per-block overhead cost as much as a full block."""
    fit = TILE_BYTES // max(1, points * row_bytes)
    if fit >= n:
        return n
    fit = max(MIN_ROWS, fit)
    count = -(-n // fit)
    return -(-n // count)


def _maps_one_to_one(m: nn.Module) -> bool:
    """True when the activation maps 1.0 to exactly 1.0 (checked, not assumed)."""
    with torch.no_grad():
        return bool(m(torch.ones(1)).item() == 1.0)


def with_ones(zs: list[torch.Tensor]) -> torch.Tensor:
    """``[3, N * (H + 1)]``: first-layer outputs of center, d1, d2 plus the ones column."""
    out = []
    for k, z in enumerate(zs):
        col = torch.full((*z.shape[:-1], 1), 1.0 if k == 0 else 0.0, dtype=z.dtype, device=z.device)
        out.append(torch.cat([z, col], dim=-1).reshape(-1))
    return torch.stack(out)

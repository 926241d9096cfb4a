"""Exact batched loss evaluation at many points of a plane in weight space.

A point ``(a, b)`` stands for the weights ``center + a * d1 + b * d2``. Many points are
evaluated in one pass with :func:`torch.func.functional_call` under :func:`torch.vmap`,
in chunks sized to a memory budget (torch's own threads do the rest).

Exact algebra (the fast path). When the model is a chain (:class:`torch.nn.Sequential`)
whose first layer with parameters is a ``Linear`` or ``Conv1d/2d/3d``, that layer's output
is linear in its weights::

    X (W0 + a D1 + b D2)^T + (b0 + a e1 + b e2) = Z0 + a Z1 + b Z2

so ``Z0, Z1, Z2`` are computed once per batch (3 products instead of one per point) and
only the rest of the chain runs per point. Parameter-free modules before that layer
(``Flatten``...) are applied to the inputs once. Any other model takes the generic path.
Both give the same numbers up to float rounding (tests/core/surface/test_grid.py).

Loop path. Batching points is not always faster: for a model whose forward pass is
already large (a CNN over many images) a plain loop of forward passes with the weights
updated in place wins (:mod:`lossview.core.surface.loop`). With ``path="auto"`` a short
probe times both on a slice of the data and keeps the faster; ``path`` says which ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from lossview.core.errors import LossviewError
from lossview.core.surface import fastkernels
from lossview.core.surface.batches import as_batches, batch_size, eval_mode
from lossview.core.surface.fastpath import (
    MLPTail,
    loss_kind,
    mlp_tail,
    per_point_loss,
    plain_class_targets,
    with_ones,
)
from lossview.core.surface.loop import LoopPath, full_float32, probe, resolve_device, to_device
from lossview.core.surface.pipelines import Workspace, balanced_spans, run_chunks
from lossview.core.surface.threads import thread_budget

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of activations per chunk, at most
CACHE_BLOCK = 16 * 2**20  # target bytes of the widest activation block of a chunk
MAX_CHUNK = 64  # points per chunk at most: larger ones measured no faster, and cancel waits for one

_LINEAR_FIRST = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _path_kind(path: str) -> str:
    """``path`` argument (or a name ``.path`` reported) -> the kind of path to run."""
    if path in ("auto", "batched", "loop", "loop+channels-last"):
        return path
    if path in ("generic", "first-layer", "first-layer+mlp", "first-layer+mlp+numba"):
        return "batched"
    if path in ("loop+first-layer", "loop+first-layer+channels-last"):
        return path.replace("+first-layer", "")
    raise LossviewError("path must be 'auto', 'batched', 'loop' or 'loop+channels-last', "
                        f"not {path!r}")


def _first_linear(model: nn.Module) -> int | None:
    """Index of the Sequential's first module with parameters, if it is Linear/Conv."""
    if type(model) is not nn.Sequential:
        return None
    for i, m in enumerate(model):
        has_state = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        if not has_state:
            if isinstance(m, (nn.Dropout, nn.Flatten, nn.Identity, nn.Unflatten)):
                continue
            return None
        if type(m) in _LINEAR_FIRST and not any(True for _ in m.buffers()):
            return i
        return None
    return None


class PlaneEvaluator:
    """Loss at points of the plane ``center + a d1 + b d2`` (``d2`` None for a line).

    Parameters
    ----------
    model : its parameters are never modified; it is put in eval mode during evaluation
        and its train/eval flags restored after (BatchNorm uses running statistics; see
        :mod:`lossview.core.surface.batchnorm` to recompute them).
    loss_fn : ``loss_fn(outputs, targets)`` returning the mean loss of a batch.
    data : ``(inputs, targets)`` or an iterable of batches; the loss is the mean over all
        samples (batch means weighted by batch size).
    center, d1, d2 : name -> tensor for every parameter of ``model`` (missing directions
        count as zero). ``center`` defaults to the model's current parameters.
    buffers : name -> tensor (BatchNorm running statistics); default the model's own.
    memory_budget : bytes of activations allowed per chunk of points.
    fast : allow the first-layer algebra (False: the generic batched path or plain loop).
    path : ``"batched"`` (points batched under vmap, or the MLP fast path), ``"loop"``
        (one forward pass per point, weights updated in place), ``"loop+channels-last"``
        (NHWC convolutions) or ``"auto"``: the MLP fast path when it applies, else
        whichever of those a short probe measures fastest
        (:func:`lossview.core.surface.loop.probe`; ``probe_times`` holds its times). A
        name that ``.path`` reported is accepted too and runs that path again (to pin it
        in another process: paths agree only to rounding).
    device : where the evaluation runs (model weights, buffers, data and directions are
        placed there; the model object itself is not moved): ``None`` the model's
        parameters' device, ``"auto"`` CUDA when available else CPU, or a torch device.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, data: Any,
                 center: Mapping[str, torch.Tensor] | None = None,
                 d1: Mapping[str, torch.Tensor] | None = None,
                 d2: Mapping[str, torch.Tensor] | None = None,
                 buffers: Mapping[str, torch.Tensor] | None = None,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, fast: bool = True,
                 path: str = "auto", device: Any = None) -> None:
        # the MLP fast path's numba kernels: pinned on/off by the name, else decided once
        self._numba_pin = {"first-layer+mlp+numba": True, "first-layer+mlp": False}.get(path)
        self._numba: bool | None = None
        path = _path_kind(path)
        self.model, self.loss_fn = model, loss_fn
        self.batches = as_batches(data)
        self.sizes = [batch_size(x) for x, _ in self.batches]
        self.n = float(sum(self.sizes))
        own = dict(model.named_parameters())
        if not own:
            raise LossviewError("the model has no parameters")
        self.names = list(own)
        ref = next(iter(own.values()))
        self.dtype, self.device = ref.dtype, resolve_device(device, ref.device)
        self.batches = [to_device(b, self.device) for b in self.batches]
        src = own if center is None else center
        missing = [n for n in self.names if n not in src]
        if missing:
            raise LossviewError(f"center has no value for parameter {missing[0]!r}")
        self.center = {n: torch.as_tensor(src[n]).detach().to(self.device, self.dtype)
                       for n in self.names}
        self.d1 = self._direction(d1)
        self.d2 = self._direction(d2)
        self.buffers = {n: b.detach().to(self.device) for n, b in model.named_buffers()}
        if buffers is not None:
            self.buffers.update({n: torch.as_tensor(v).to(self.device, self.buffers[n].dtype)
                                 for n, v in buffers.items() if n in self.buffers})
        self.memory_budget = int(memory_budget)
        self.train, self.fast, self.mode = False, fast, path
        self._loop: LoopPath | None = None
        self._chosen: str | None = None
        self.probe_times: dict[str, float] = {}
        self.first = _first_linear(model) if fast else None
        self._pre: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self._point_bytes: tuple[int, int] | None = None
        self._pre_bytes = 0
        self._setup_fast()

    def _direction(self, d: Mapping[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
        d = d or {}
        out = {}
        for n in self.names:
            v = d.get(n)
            out[n] = (torch.zeros_like(self.center[n]) if v is None
                      else torch.as_tensor(v).detach().to(self.device, self.dtype)
                      .reshape(self.center[n].shape))
        return out

    # -- public ------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The path that runs: ``"loop"``/``"loop+first-layer"`` or the batched
        ``"generic"``/``"first-layer"``/``"first-layer+mlp"``, the last with ``+numba``
        where the numba kernels run (runs the probe if needed; fixes whether the kernels
        run for this evaluator: :func:`~lossview.core.surface.fastkernels.decide`)."""
        if self.choice() != "batched":
            return self._loop_path().name
        if self.first is None:
            return "generic"
        if self._tail is None:
            return "first-layer"
        return "first-layer+mlp+numba" if fastkernels.decide(self) else "first-layer+mlp"

    def choice(self) -> str:
        """``"batched"``, ``"loop"`` or ``"loop+channels-last"``: as asked, or measured
        once (see ``path``)."""
        if self._chosen is None:
            if self.mode != "auto":
                self._chosen = self.mode
            elif self._tail is not None:  # the MLP fast path: many times a forward loop
                self._chosen = "batched"
            else:
                self._chosen, self.probe_times = probe(self)
        return self._chosen

    def _loop_path(self) -> LoopPath:
        if self._loop is None:
            with eval_mode(self.model, self.train), full_float32(self.device):
                self._loop = LoopPath(self, first_layer=self.fast,
                                      channels_last=self.choice() == "loop+channels-last")
        return self._loop

    def workers(self) -> int:
        """Pipelines run at once: on the MLP fast path one per thread the evaluation may
        use (each single-threaded, see :mod:`~lossview.core.surface.pipelines`), else 1
        (torch's own threads inside each operation)."""
        return thread_budget() if self._tail is not None else 1

    def _threads_per_worker(self) -> int:
        return 1 if self._tail is not None else thread_budget()

    def chunk_size(self) -> int:
        """Points per pass: the widest activation block near :data:`CACHE_BLOCK` and at
        most :data:`MAX_CHUNK` points (fastest measured: 8-16 points of the issue's medium
        MLP, 64 of the small one), all activations of all pipelines within the budget."""
        if self._point_bytes is None:
            self._point_bytes = self._measure_point_bytes()
        widest, total = self._point_bytes
        return max(1, min(MAX_CHUNK, CACHE_BLOCK // widest,
                          self.memory_budget // (self.workers() * total)))

    def losses(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Loss (mean over all samples) at each ``(a, b)`` row of ``points``."""
        out = np.empty(len(points), dtype=np.float64)
        for lo, hi, vals in self.iter_losses(points):
            out[lo:hi] = vals
        return out

    def iter_losses(self, points: np.ndarray | Sequence[Sequence[float]]):
        """Yield ``(lo, hi, losses[lo:hi])`` chunk by chunk (for progress and cancel), in
        the order the chunks finish."""
        pts = torch.as_tensor(np.asarray(points, dtype=np.float64).reshape(-1, 2))
        pts = pts.to(device=self.device, dtype=self.dtype)
        if self.choice() != "batched":  # a point per chunk, on torch's threads
            loop = self._loop_path()
            with eval_mode(self.model, self.train), full_float32(self.device):
                for lo, hi, vals in run_chunks(lambda lo, hi, ws: loop.losses(pts[lo:hi]),
                                               [(i, i + 1) for i in range(len(pts))], 1,
                                               thread_budget()):
                    yield lo, hi, vals.numpy()
            return
        spans = balanced_spans(len(pts), self.chunk_size(), self.workers())
        with torch.no_grad(), eval_mode(self.model, self.train), full_float32(self.device):
            if self.first is not None:
                for i in range(len(self.batches)):  # before the pipelines share them
                    self._precomputed(i)
            self._kernels = fastkernels.decide(self, len(pts))
            for lo, hi, vals in run_chunks(lambda lo, hi, ws: self._chunk(pts[lo:hi], ws),
                                           spans, self.workers(), self._threads_per_worker()):
                yield lo, hi, vals.double().cpu().numpy()

    def loss_at(self, params: Mapping[str, torch.Tensor],
                buffers: Mapping[str, torch.Tensor] | None = None) -> float:
        """Loss at an arbitrary set of weights (a snapshot), same data and mode."""
        p = {n: torch.as_tensor(params[n]).to(self.device, self.dtype).reshape(self.center[n].shape)
             for n in self.names}
        b = dict(self.buffers)
        if buffers:
            b.update({n: torch.as_tensor(v).to(self.device, b[n].dtype)
                      for n, v in buffers.items() if n in b})
        total = 0.0
        with torch.no_grad(), eval_mode(self.model, self.train), full_float32(self.device):
            for (x, y), k in zip(self.batches, self.sizes):
                total += float(self.loss_fn(functional_call(self.model, (p, b), (x,)), y)) * k
        return total / self.n

    # -- internals ---------------------------------------------------------------------
    def _point_params(self, ab: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        a, b = ab[:, 0], ab[:, 1]
        out = {}
        for n in names:
            c = self.center[n]
            shape = (-1,) + (1,) * c.dim()
            out[n] = c.unsqueeze(0) + a.view(shape) * self.d1[n] + b.view(shape) * self.d2[n]
        return out

    def _chunk(self, ab: torch.Tensor, ws: Workspace) -> torch.Tensor:
        total = torch.zeros(len(ab), dtype=torch.float64, device=ab.device)
        if self.first is None:
            params = self._point_params(ab, self.names)
            model, bufs = self.model, self.buffers
            fn = torch.vmap(lambda p, x: functional_call(model, (p, bufs), (x,)), in_dims=(0, None))
            for (x, y), k in zip(self.batches, self.sizes):
                total += per_point_loss(self._kind, self.loss_fn, fn(params, x), y).double() * k
            return total / self.n
        coef = torch.cat([torch.ones(len(ab), 1, dtype=ab.dtype, device=ab.device), ab], dim=1)
        if self._tail is not None:  # the MLP fast path, block of samples by block
            weights = self._tail.weights(coef, ws)
            for i, (_, y) in enumerate(self.batches):
                zstack, shape = self._precomputed(i)
                total += self._tail.loss_sum(coef, zstack, shape, y, self._kind, self.loss_fn,
                                             weights, ws, self._kernels)
            return total / self.n
        rest, bufs = self._rest
        params = self._point_params(ab, [n for n, _ in rest.named_parameters()])
        fn = torch.vmap(lambda p, z: functional_call(rest, (p, bufs), (z,)), in_dims=(0, 0))
        for i, ((_, y), k) in enumerate(zip(self.batches, self.sizes)):
            zstack, shape = self._precomputed(i)
            h = torch.mm(coef, zstack, out=ws.get("z", (len(ab), zstack.shape[1]), zstack))
            h = h.view((len(ab), *shape))
            total += per_point_loss(self._kind, self.loss_fn, fn(params, h), y).double() * k
        return total / self.n

    def _setup_fast(self) -> None:
        self._kind = loss_kind(self.loss_fn)
        self._kernels = None
        self._tail = None
        if self.first is None:
            return
        tail = mlp_tail(self.model, self.first)
        if tail is not None and self._flat_inputs():
            self._tail = MLPTail(tail, self.center, self.d1, self.d2,
                                 logits_first=self._logits_first(tail))
        rest = self.model[self.first + 1:]
        rest_bufs = {n for n, _ in rest.named_buffers()}
        self._rest = (rest, {n: b for n, b in self.buffers.items() if n in rest_bufs})

    def _logits_first(self, tail: list[tuple[str, nn.Module]]) -> bool:
        """Whether the loss can take the outputs as ``[P, C, N]`` (see ``MLPTail``)."""
        if self._kind == "ce":
            return all(plain_class_targets(y) for _, y in self.batches)
        linears = [m for _, m in tail if type(m) is nn.Linear]
        if self._kind == "mse" and linears:
            c = linears[-1].out_features
            return all(torch.is_tensor(y) and y.dim() == 2 and y.shape[1] == c
                       for _, y in self.batches)
        return False

    def _flat_inputs(self) -> bool:
        """The first layer is Linear and sees ``[N, features]`` inputs in every batch."""
        if type(list(self.model.children())[self.first]) is not nn.Linear:
            return False
        for x, _ in self.batches:
            if not torch.is_tensor(x):
                return False
            x = x[:1]
            for m in list(self.model)[: self.first]:
                x = m(x)
            if x.dim() != 2:
                return False
        return True

    def _precomputed(self, i: int) -> tuple[torch.Tensor, tuple[int, ...]]:
        """``[Z0; Z1; Z2]`` (flattened) of batch ``i``: first-layer outputs for center, d1, d2."""
        if self._pre is None:
            self._pre = [None] * len(self.batches)  # type: ignore[list-item]
        if self._pre[i] is None:
            x = self.batches[i][0]
            for m in list(self.model)[: self.first]:
                x = m(x)
            name, layer = list(self.model.named_children())[self.first]
            prefix = f"{name}."
            zs = []
            for src in (self.center, self.d1, self.d2):
                p = {k[len(prefix):]: v for k, v in src.items() if k.startswith(prefix)}
                zs.append(functional_call(layer, p, (x,)))
            if self._tail is not None and self._tail.ones:  # next bias via a ones column
                stack = with_ones(zs)
                shape = (*tuple(zs[0].shape[:-1]), zs[0].shape[-1] + 1)
            else:
                stack, shape = torch.stack([z.reshape(-1) for z in zs]), tuple(zs[0].shape)
            if self._pre_bytes + stack.numel() * stack.element_size() > self.memory_budget:
                return stack, shape  # too large to keep: recomputed per chunk (3 products)
            self._pre_bytes += stack.numel() * stack.element_size()
            self._pre[i] = (stack, shape)  # type: ignore[call-overload]
        return self._pre[i]  # type: ignore[return-value]

    def _measure_point_bytes(self) -> tuple[int, int]:
        """Bytes of one point's widest activation block and of all its activations (twice
        the leaf modules' outputs, for temporaries, plus its weights), from a probe."""
        x = self.batches[int(np.argmax(self.sizes))][0]
        n = batch_size(x)
        sizes: list[int] = []
        hooks = []

        def hook(_m, _i, out):
            if torch.is_tensor(out):
                sizes.append(out.numel())

        for m in self.model.modules():
            if not any(True for _ in m.children()):
                hooks.append(m.register_forward_hook(hook))
        probe_n = 1
        try:
            with torch.no_grad(), eval_mode(self.model, self.train):
                probe = x[:1] if torch.is_tensor(x) else x
                probe_n = 1 if torch.is_tensor(x) else n
                functional_call(self.model, (self.center, self.buffers), (probe,))
        except Exception:  # noqa: BLE001 - unusual inputs: assume a wide activation
            sizes = [4096 * probe_n]
        finally:
            for h in hooks:
                h.remove()
        elem = torch.finfo(self.dtype).bits // 8
        widest = max(sizes or [1]) // probe_n * n * elem
        total = (2 * sum(sizes or [1]) // probe_n * n
                 + sum(v.numel() for v in self.center.values())) * elem
        return max(int(widest), 1), max(int(total), 1)

"""The loop path: one forward pass per grid point, the weights updated in place.

For models whose forward pass is already large (convolutions over many images, a
transformer), batching points under ``torch.vmap`` turns each layer into a grouped or
batched operation that torch runs slower than the plain layer (measured on a BatchNorm
CNN: 1.2-2x slower per point than a loop). The loop path is that plain loop, with nothing
added:

- one set of weight tensors, allocated once, filled in place for each point
  (``torch.add(center, d1, alpha=a, out=w); w.add_(d2, alpha=b)``; parameters whose two
  directions are zero keep the center and are never touched);
- the model's own parameters and buffers point at those tensors (``.data``) only while a
  chunk runs, and are restored after it: the model is never copied and is left as it was;
- ``torch.inference_mode``, eval mode, data already on the evaluation's device;
- the first-layer algebra where it applies: when the first module with parameters that
  the forward pass calls is a ``Linear``/``Conv`` layer called once, on the inputs
  themselves (or a parameter-free view of them), its outputs ``Z0, Z1, Z2`` for the
  center and the two directions are computed once per batch and each point's output is
  ``Z0 + a Z1 + b Z2`` (two fused adds instead of the layer), within the memory budget.

:func:`resolve_device` and :func:`to_device` place an evaluation on a device.
"""

from __future__ import annotations

from collections.abc import Mapping
import time
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def resolve_device(device: Any, fallback: torch.device) -> torch.device:
    """``None``: ``fallback`` (the model's); ``"auto"``: CUDA when available, else CPU."""
    if device is None:
        return torch.device(fallback)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_device(x: Any, device: torch.device) -> Any:
    """Tensors in ``x`` (nested tuples, lists, dicts) moved to ``device`` (no copy if there)."""
    if torch.is_tensor(x):
        return x.to(device)
    if isinstance(x, tuple):
        return tuple(to_device(v, device) for v in x)
    if isinstance(x, list):
        return [to_device(v, device) for v in x]
    if isinstance(x, Mapping):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


class _Stop(Exception):
    pass


def first_layer_site(model: nn.Module, x: Any) -> tuple[nn.Module, Any] | None:
    """``(layer, inputs_of_layer)`` if the first module with parameters called by the
    forward pass on ``x`` is a buffer-free Linear/Conv layer called once per forward,
    whose input is ``x`` itself or a view of it (so it does not depend on any weight)."""
    if not torch.is_tensor(x) or len(x) < 1:
        return None
    calls: list[tuple[nn.Module, Any]] = []
    hooks = []

    def hook(m, inp):
        calls.append((m, inp))

    for m in model.modules():
        if any(True for _ in m.parameters(recurse=False)):
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.inference_mode():
            model(x[:2])
    except Exception:  # noqa: BLE001 - unusual model: no shortcut
        return None
    finally:
        for h in hooks:
            h.remove()
    if not calls:
        return None
    layer, inp = calls[0]
    if (type(layer) not in _LINEAR or any(True for _ in layer.buffers())
            or any(c[0] is layer for c in calls[1:]) or len(inp) != 1
            or not torch.is_tensor(inp[0])
            or inp[0].untyped_storage().data_ptr() != x.untyped_storage().data_ptr()):
        return None
    # the layer's input for the whole batch: the forward pass stopped at the layer
    got: list[Any] = []

    def grab(m, args):
        got.append(args[0])
        raise _Stop

    h = layer.register_forward_pre_hook(grab)
    try:
        with torch.inference_mode():
            model(x)
    except _Stop:
        pass
    except Exception:  # noqa: BLE001
        return None
    finally:
        h.remove()
    return (layer, got[0]) if got else None


class LoopPath:
    """Losses at points by a loop of forward passes (see the module doc).

    ``ev`` is the :class:`~lossview.core.surface.evaluate.PlaneEvaluator` it serves (its
    model, loss, batches on the device, center/d1/d2, buffers); ``first_layer`` allows
    the first-layer algebra.
    """

    def __init__(self, ev: Any, first_layer: bool = True) -> None:
        self.ev = ev
        self.model = ev.model
        self.params = dict(self.model.named_parameters())
        self.own_buffers = dict(self.model.named_buffers())
        self.work = {n: ev.center[n].clone() for n in ev.names}
        self.moving = [(self.work[n], ev.center[n],
                        ev.d1[n] if bool(ev.d1[n].any()) else None,
                        ev.d2[n] if bool(ev.d2[n].any()) else None) for n in ev.names]
        self.moving = [m for m in self.moving if m[2] is not None or m[3] is not None]
        self.layer: nn.Module | None = None
        self.z: list[torch.Tensor] = []
        if first_layer:
            self._setup_first_layer()

    @property
    def name(self) -> str:
        return "loop+first-layer" if self.layer is not None else "loop"

    def _setup_first_layer(self) -> None:
        ev = self.ev
        sites = []
        with _Swapped(self, ev.center):
            for x, _ in ev.batches:
                site = first_layer_site(self.model, x)
                if site is None or (sites and site[0] is not sites[0][0]):
                    return
                sites.append(site)
        layer = sites[0][0]
        prefix = next(n for n, m in self.model.named_modules() if m is layer)
        prefix = f"{prefix}." if prefix else ""
        local = [n[len(prefix):] for n in ev.names if n.startswith(prefix)]
        zs, total = [], 0
        with torch.inference_mode():
            for _, inp in sites:
                z = torch.stack([functional_call(layer, {k: src[prefix + k] for k in local}, (inp,))
                                 for src in (ev.center, ev.d1, ev.d2)])
                total += z.numel() * z.element_size()
                if total > ev.memory_budget:
                    return  # too large to keep: the plain loop
                zs.append(z)
        self.layer, self.z = layer, zs
        self._out = [torch.empty_like(z[0]) for z in zs]

    def losses(self, ab: torch.Tensor) -> torch.Tensor:
        """float64 losses (mean over all samples) at the ``[P, 2]`` points ``ab``."""
        ev = self.ev
        out = torch.empty(len(ab), dtype=torch.float64)
        pts = ab.double().cpu().tolist()
        with _Swapped(self, self.work), torch.inference_mode():
            for p, (a, b) in enumerate(pts):
                for w, c, d1, d2 in self.moving:
                    if d1 is None:
                        torch.add(c, d2, alpha=b, out=w)
                        continue
                    torch.add(c, d1, alpha=a, out=w)
                    if d2 is not None:
                        w.add_(d2, alpha=b)
                total = torch.zeros((), dtype=torch.float64, device=ev.device)
                for i, ((x, y), k) in enumerate(zip(ev.batches, ev.sizes)):
                    if self.layer is not None:
                        z, o = self.z[i], self._out[i]
                        torch.add(z[0], z[1], alpha=a, out=o).add_(z[2], alpha=b)
                        self._replay = o
                    total += ev.loss_fn(self.model(x), y).double() * k
                out[p] = float(total) / ev.n
        return out


class _Swapped:
    """Context: the model's parameters hold ``tensors`` (name -> tensor) and its buffers
    the evaluation's, and the first layer (if any) returns the replayed output; all
    restored on exit."""

    def __init__(self, loop: LoopPath, tensors: Mapping[str, torch.Tensor]) -> None:
        self.loop, self.tensors = loop, tensors

    def __enter__(self) -> None:
        lp = self.loop
        self.saved_p = {n: p.data for n, p in lp.params.items()}
        self.saved_b = {n: b.data for n, b in lp.own_buffers.items()}
        try:
            for n, p in lp.params.items():
                p.data = self.tensors[n]
            for n, b in lp.own_buffers.items():
                if n in lp.ev.buffers:
                    b.data = lp.ev.buffers[n]
            if lp.layer is not None:
                lp.layer.forward = lambda *_a, **_k: lp._replay
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: Any) -> None:
        lp = self.loop
        if lp.layer is not None and "forward" in vars(lp.layer):
            del lp.layer.forward
        for n, p in lp.params.items():
            p.data = self.saved_p[n]
        for n, b in lp.own_buffers.items():
            b.data = self.saved_b[n]


PROBE_SAMPLES = 64  # samples of the first batch the probe times each path on
PROBE_POINTS = 8  # points of the batched path's probe chunk, at most


def probe(ev: Any) -> tuple[str, dict[str, float]]:
    """``("batched" | "loop", seconds per point of each)``: one chunk of each path timed
    on the first :data:`PROBE_SAMPLES` samples of the first batch (each run twice, the
    faster run counts: the first includes one-time set-up). The loop wins ties."""
    x, y = ev.batches[0]
    data = ((x[:PROBE_SAMPLES], y[:PROBE_SAMPLES])
            if torch.is_tensor(x) and torch.is_tensor(y) and len(x) == len(y) else [(x, y)])
    kw = dict(center=ev.center, d1=ev.d1, d2=ev.d2, buffers=ev.buffers,
              memory_budget=ev.memory_budget, fast=ev.fast, device=ev.device)
    subs = {k: type(ev)(ev.model, ev.loss_fn, data, path=k, **kw) for k in ("batched", "loop")}
    n = {"batched": max(1, min(PROBE_POINTS, subs["batched"].chunk_size())), "loop": 1}
    best = {k: float("inf") for k in subs}
    for _ in range(2):
        for k, sub in subs.items():
            pts = torch.linspace(-0.5, 0.5, 2 * n[k]).reshape(-1, 2).numpy()
            t = time.perf_counter()
            sub.losses(pts)
            best[k] = min(best[k], (time.perf_counter() - t) / n[k])
    return ("loop" if best["loop"] <= best["batched"] else "batched"), best

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
- asked for (``channels_last``; the probe tries it for a model with ``Conv2d`` layers fed
  4-D inputs), the channels-last layout: inputs and 4-D weights stored NHWC, the layout
  oneDNN's convolutions run fastest in on larger images (the issue's BatchNorm CNN: 0.13 s
  a forward pass against 0.25 s NCHW, 2 threads; on 8x8 images with 4 channels it was
  slower); kept only if a forward pass of two samples works and agrees with NCHW to
  rounding (a model that ``.view``s its activations fails there and keeps NCHW);
- the first-layer algebra where it applies: when the first module with parameters that
  the forward pass calls is a ``Linear``/``Conv`` layer called once, on the inputs
  themselves (or a parameter-free view of them), its outputs ``Z0, Z1, Z2`` for the
  center and the two directions are computed once per batch and each point's output is
  ``Z0 + a Z1 + b Z2`` (two fused adds instead of the layer), within the memory budget.

:func:`resolve_device` and :func:`to_device` place an evaluation on a device.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from lossview.core.errors import LossviewError
from lossview.core.surface.precision import full_float32  # noqa: F401 - evaluate, curvature

_LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def resolve_device(device: Any, fallback: torch.device) -> torch.device:
    """``None``: ``fallback`` (the model's); ``"auto"``: CUDA when available, else CPU;
    else ``"cpu"`` or ``"cuda[:i]"`` (anything else, or a CUDA device that is not there, is
    a one-line :class:`LossviewError`)."""
    if device is None:
        return torch.device(fallback)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise LossviewError(f"unknown device {device!r}: use auto, cpu or cuda[:i]") from e
    if dev.type not in ("cpu", "cuda"):  # meta, mps, xpu...: not what these evaluations run on
        raise LossviewError(f"unsupported device {device!r}: use auto, cpu or cuda[:i]")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LossviewError(f"device {device!r}: no CUDA device is available here "
                            "(use --device cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise LossviewError(f"device {device!r}: this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


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

    def __init__(self, ev: Any, first_layer: bool = True, channels_last: bool = False) -> None:
        self.ev = ev
        self.model = ev.model
        self.params = dict(self.model.named_parameters())
        self.own_buffers = dict(self.model.named_buffers())
        self.layer: nn.Module | None = None
        self.z: list[torch.Tensor] = []
        self.batches = ev.batches
        self.channels_last = False
        self._set_weights(False)
        if channels_last and channels_last_applies(self.model, ev.batches):
            self.channels_last = True
            self._set_weights(True)
            self.batches = [(_nhwc(x), y) for x, y in ev.batches]
            if not self._agrees_with_nchw():
                self.channels_last = False
                self._set_weights(False)
                self.batches = ev.batches
        if first_layer:
            self._setup_first_layer()

    @property
    def name(self) -> str:
        return ("loop" + ("+first-layer" if self.layer is not None else "")
                + ("+channels-last" if self.channels_last else ""))

    def _set_weights(self, nhwc: bool) -> None:
        """The work tensors (center to start) and the moving ones' center and directions."""
        ev = self.ev
        f = _nhwc if nhwc else (lambda t: t)
        self.work = {n: f(ev.center[n].clone()) for n in ev.names}
        moving = [(self.work[n], f(ev.center[n]), f(ev.d1[n]) if bool(ev.d1[n].any()) else None,
                   f(ev.d2[n]) if bool(ev.d2[n].any()) else None) for n in ev.names]
        self.moving = [m for m in moving if m[2] is not None or m[3] is not None]

    def _agrees_with_nchw(self) -> bool:
        x = self.ev.batches[0][0][:2]
        try:
            with torch.inference_mode():
                with _Swapped(self, self.ev.center):
                    ref = self.model(x)
                with _Swapped(self, self.work):
                    got = self.model(_nhwc(x))
            return (torch.is_tensor(ref) and torch.is_tensor(got) and ref.shape == got.shape
                    and torch.allclose(ref.float(), got.float(), rtol=1e-3, atol=1e-4))
        except Exception:  # noqa: BLE001 - a layout-dependent model: keep NCHW
            return False

    def _setup_first_layer(self) -> None:
        ev = self.ev
        sites = []
        with _Swapped(self, self.work):
            for x, _ in self.batches:
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
                for i, ((x, y), k) in enumerate(zip(self.batches, ev.sizes)):
                    if self.layer is not None:
                        z, o = self.z[i], self._out[i]
                        torch.add(z[0], z[1], alpha=a, out=o).add_(z[2], alpha=b)
                        self._replay = o
                    total += ev.loss_fn(self.model(x), y).double() * k
                out[p] = float(total) / ev.n
        return out


def channels_last_applies(model: nn.Module, batches: list) -> bool:
    """The model has ``Conv2d`` layers and every batch's inputs are a 4-D tensor."""
    return (any(isinstance(m, nn.Conv2d) for m in model.modules())
            and all(torch.is_tensor(x) and x.dim() == 4 for x, _ in batches))


def _nhwc(t: Any) -> Any:
    """``t`` in channels-last layout if it is a 4-D tensor (a copy only if needed)."""
    if torch.is_tensor(t) and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t


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
PROBE_POINTS = 4  # points of the batched path's probe chunk, at most


PROBE_ROUNDS = 3  # timed runs of each loop, interleaved; the fastest counts
BATCHED_MARGIN = 1.25  # batched must measure this many times faster than the best loop


def probe(ev: Any) -> tuple[str, dict[str, float]]:
    """The fastest of ``"loop"``, ``"loop+channels-last"`` (where it applies) and
    ``"batched"``, and the seconds per point of each, on the first :data:`PROBE_SAMPLES`
    samples of the first batch, after a one-point warm-up run of each (one-time set-up).
    The loops: one point, :data:`PROBE_ROUNDS` runs interleaved, the fastest counts (other
    jobs on the machine only ever slow a run down). Batched: one chunk of
    :data:`PROBE_POINTS` points in the first round, again in the second only if within 2x
    of the best loop (a loop of a large model is cheap to time, a batched chunk is not).
    The loop is the forward-pass floor by construction, so batching must measure
    :data:`BATCHED_MARGIN` times faster to be chosen: on a loaded machine one lucky
    batched run against unlucky loop runs otherwise picked a path 2x slower."""
    x, y = ev.batches[0]
    data = ((x[:PROBE_SAMPLES], y[:PROBE_SAMPLES])
            if torch.is_tensor(x) and torch.is_tensor(y) and len(x) == len(y) else [(x, y)])
    kw = {"center": ev.center, "d1": ev.d1, "d2": ev.d2, "buffers": ev.buffers,
              "memory_budget": ev.memory_budget, "fast": ev.fast, "device": ev.device}
    kinds = ["loop", "loop+channels-last", "batched"]
    if not channels_last_applies(ev.model, [data] if isinstance(data, tuple) else data):
        kinds.remove("loop+channels-last")
    subs = {k: type(ev)(ev.model, ev.loss_fn, data, path=k, **kw) for k in kinds}
    pts = {k: torch.linspace(-0.5, 0.5, 2 * (1 if k != "batched" else max(
        1, min(PROBE_POINTS, sub.chunk_size())))).reshape(-1, 2).numpy() for k, sub in subs.items()}
    for k, sub in subs.items():
        sub.losses(pts[k][:1])
    best = {k: float("inf") for k in kinds}

    def timed(k: str) -> None:
        t = time.perf_counter()
        subs[k].losses(pts[k])
        best[k] = min(best[k], (time.perf_counter() - t) / len(pts[k]))

    loops = kinds[:-1]
    for r in range(PROBE_ROUNDS):
        for k in loops:
            timed(k)
        if r == 0 or (r == 1 and best["batched"] < 2 * min(best[k] for k in loops)):
            timed("batched")
    loop = min(loops, key=lambda k: best[k])
    return ("batched" if best["batched"] * BATCHED_MARGIN < best[loop] else loop), best

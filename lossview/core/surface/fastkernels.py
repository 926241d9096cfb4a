"""When the MLP fast path runs its element-wise work in numba kernels
(:mod:`~lossview.core.surface.mlp_kernels`), and the numpy views the kernels work on.

The kernels save a few percent of a surface's time (the medium MLP: ~50 us of a point's
~920 on one thread) but cost a fixed price once per process: importing numba and its
first call (registries, loading the cached machine code: :data:`LOAD_COST_S`, measured
0.6 s in a fresh process; compiling them into an empty cache another ~1.5 s, once per
machine). One 41 x 41 surface of the medium MLP saves ~0.08 s of CPU, so loading numba for
it would lose. The rule is the ski-rental one: evaluations keep to torch's operations and
add up the time the kernels would have saved; once that sum reaches the price, the
kernels load and serve every later evaluation (never worse than twice the best choice
made knowing the future). :func:`preload` loads them at once (an app that will draw many
surfaces, a benchmark of the steady state); where numba cannot be imported torch's
operations run.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

import numpy as np

#: Seconds a fresh process pays to import numba and run the kernels' first calls (their
#: machine code cached on disk): 0.2 s import, 0.4 s first call (numba's registries);
#: the second part only where numba is imported already (by another of lossview's kernels).
LOAD_COST_S = 0.6
FIRST_CALL_S = 0.4
#: CPU seconds the kernels save per sample and point: per value of the first layer's
#: output (combination and ReLU in one pass: 22 against 60 us a point of the medium MLP,
#: 2,048 x 129 values) and per logit (cross-entropy with the output bias: 15 against
#: 26 us a point, 2,048 x 10 logits); measured on one thread, 2-core AMD EPYC VM.
SAVED_PER_HIDDEN_S = 0.14e-9
SAVED_PER_LOGIT_S = 0.5e-9

#: The kernels the fast path uses once loaded: "combine" (first layer and ReLU), "ce"
#: (output bias and cross-entropy); benchmarks measure them one at a time.
KERNELS = {"combine", "ce"}

_lock = threading.Lock()
_state: dict[str, object] = {"module": None, "failed": False, "forgone": 0.0}


def loaded() -> ModuleType | None:
    """The kernel module if loaded (and its first calls made) in this process."""
    return _state["module"]  # type: ignore[return-value]


def reset() -> None:
    """Forget the kernels and the savings forgone (as in a fresh process): tests that
    must not depend on what ran before them in the same process."""
    with _lock:
        _state.update(module=None, failed=False, forgone=0.0)


def preload() -> ModuleType | None:
    """Import numba and make the kernels' first calls now; None if numba is missing or
    fails (torch's operations then run)."""
    with _lock:
        if _state["module"] is None and not _state["failed"]:
            try:
                from lossview.core.surface import mlp_kernels as k

                _warm(k)
                _state["module"] = k
            except Exception:  # noqa: BLE001 - no numba, or it cannot compile here
                _state["failed"] = True
    return loaded()


def for_work(points: int, samples: int, hidden: int, logits: int) -> ModuleType | None:
    """The kernels for an evaluation of ``points`` points over ``samples`` samples whose
    first layer writes ``hidden`` values a sample and whose fused loss reads ``logits``
    (0 if not fused); None while loading them has not yet paid back (see the module)."""
    k = loaded()
    if k is not None or _state["failed"]:
        return k
    saving = points * samples * (hidden * SAVED_PER_HIDDEN_S + logits * SAVED_PER_LOGIT_S)
    with _lock:
        _state["forgone"] = float(_state["forgone"]) + saving  # type: ignore[arg-type]
        price = FIRST_CALL_S if "numba" in sys.modules else LOAD_COST_S
        pay = _state["forgone"] >= price  # type: ignore[operator]
    return preload() if pay else None


def decide(ev: Any, points: int | None = None) -> ModuleType | None:
    """The kernels for the MLP fast path of evaluator ``ev`` (a ``PlaneEvaluator``), or
    None: torch's operations. Fixed once per evaluator, so that one surface never mixes
    the two (they agree to rounding, not bit for bit): by the pinned path name
    (``first-layer+mlp+numba`` / ``first-layer+mlp``); else at its first evaluation of
    ``points`` points by :func:`for_work`, or, if ``ev.path`` is read first (to pin it in
    other processes), by whether they are loaded in this process at that moment. Only on
    a CPU in float32. An evaluator that runs without them still counts what they would
    have saved."""
    if ev._numba is None:
        if not _applies(ev):
            ev._numba = False
        elif ev._numba_pin is not None:
            ev._numba = ev._numba_pin and preload() is not None
        elif points is None:
            ev._numba = loaded() is not None
        else:
            ev._numba = for_work(points, *_work(ev)) is not None
            return loaded() if ev._numba else None
    if ev._numba:
        return preload()
    if points and ev._numba_pin is None and _applies(ev):
        for_work(points, *_work(ev))  # the savings forgone count towards loading them
    return None


def _applies(ev: Any) -> bool:
    return ev._tail is not None and ev.device.type == "cpu" and str(ev.dtype) == "torch.float32"


def _work(ev: Any) -> tuple[int, int, int]:
    """(samples, first-layer values a sample, logits a sample the loss kernel reads)."""
    width = ev._precomputed(0)[1][-1]
    tail = ev._tail
    fused = tail.logits_first and ev._kind == "ce" and tail.linear_last
    return int(ev.n), width, tail.ops[-1][1][3] if fused else 0


def block_views(block: tuple, ce: bool, ws: Any) -> tuple:
    """numpy views (sharing memory) of one row block's buffers of the fast path
    (``lossview.core.surface.fastpath._Plan``) for the kernels: ``(z0, z1, z2, h,
    logits, targets, scratch)``, the last three None unless ``ce`` (the cross-entropy
    kernel runs)."""
    zb, hb, _, target, outs, r = block
    z0, z1, z2 = zb.numpy()  # contiguous rows
    if not ce:
        return z0, z1, z2, hb.numpy(), None, None, None
    scratch = ws.get("ce-scratch", (4, r), hb).numpy()
    labels = np.ascontiguousarray(target[0, 0].numpy(), dtype=np.int64)
    return z0, z1, z2, hb.numpy(), outs[-1].numpy(), labels, scratch


def _warm(k: ModuleType) -> None:
    """First calls with the argument types the fast path passes (one signature each)."""
    f32 = np.float32
    z = np.zeros(8, f32)
    k.combine(np.zeros((2, 3), f32), z, z, z, np.zeros((2, 8), f32), True)
    k.ce_sum(np.zeros((2, 3, 8), f32), np.zeros((2, 3), f32), np.zeros(8, np.int64),
             np.zeros(2), np.zeros((4, 8), f32), np.zeros(2, np.uint8), 1)


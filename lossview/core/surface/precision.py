"""Numeric precision of a surface evaluation: float32 (exact), TF32 or bfloat16 (faster).

- ``float32``: the default. On a CUDA device TF32 is switched off around every evaluation
  (:class:`full_float32`: cuDNN allows it by default, a 1e-3 relative error), so a CUDA
  float32 surface equals the CPU's to rounding.
- ``tf32``: CUDA matmuls and convolutions in TF32 (10-bit mantissa inputs, float32
  accumulation) while the grid is evaluated (:class:`tf32_matmuls`), the flags restored
  between steps. TF32 is a CUDA tensor-core format; on a CPU there is nothing to switch
  on, so the surface is computed in float32 (:func:`effective_precision` says so in one
  line): the user gets the exact result, and the same command runs on a laptop and a GPU.
- ``bf16``: model weights, buffers and the data's floating tensors in bfloat16 (8-bit
  mantissa), on the CPU too (:func:`bf16_copy`).

A reduced precision is never taken on trust: a sub-grid (:func:`subgrid_indices`, at most
:data:`SUBGRID` x :data:`SUBGRID` points including the corners) is evaluated in float32 too
and the measured error reported (:func:`measured_error`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from lossview.core.errors import LossviewError

PRECISIONS = ("float32", "tf32", "bf16")
#: Points per axis of the float32 sub-grid a reduced-precision surface is checked on.
SUBGRID = 5

_tf32_depth = 0  # > 0 while tf32_matmuls is active: full_float32 leaves TF32 on


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a one-line error."""
    if precision not in PRECISIONS:
        raise LossviewError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    return precision


def effective_precision(precision: str, device: torch.device) -> tuple[str, str | None]:
    """The precision that will run on ``device`` and a one-line note when it is not the
    one asked for (``tf32`` off CUDA is float32)."""
    check_precision(precision)
    if precision == "tf32" and torch.device(device).type != "cuda":
        return "float32", (f"tf32 applies to CUDA matmuls only; on {torch.device(device)} the "
                           "surface is computed in float32 (exact)")
    return precision, None


class full_float32:
    """Context: on a CUDA device, TF32 off for matmuls and convolutions, so float32 results
    equal the CPU's to rounding; restored after. Nothing changes for other devices, nor
    inside :class:`tf32_matmuls` (the user asked for TF32 there)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = torch.device(device).type == "cuda"

    def __enter__(self) -> None:
        self.active = self.cuda and _tf32_depth == 0
        if self.active:
            self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


class tf32_matmuls:
    """Context: TF32 on for CUDA matmuls (``set_float32_matmul_precision("high")``) and
    cuDNN convolutions; every flag restored on exit."""

    def __enter__(self) -> None:
        global _tf32_depth
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                      torch.get_float32_matmul_precision())
        torch.set_float32_matmul_precision("high")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        _tf32_depth += 1

    def __exit__(self, *exc: Any) -> None:
        global _tf32_depth
        _tf32_depth -= 1
        torch.set_float32_matmul_precision(self.saved[2])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved[:2]


def stepwise(gen: Generator, context: Callable[[], Any]) -> Generator:
    """``gen`` with each of its steps run inside a fresh ``context()`` (so global flags
    such as TF32 are set only while it computes, not while the caller holds a yield);
    returns what ``gen`` returns, and closing it closes ``gen``."""
    try:
        while True:
            with context():
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return stop.value
            yield item
    finally:
        gen.close()


def to_bf16(x: Any) -> Any:
    """Floating tensors in ``x`` (nested tuples, lists, dicts) as bfloat16; integer
    tensors (class indices, token ids) and anything else as they are."""
    if torch.is_tensor(x):
        return x.to(torch.bfloat16) if x.is_floating_point() else x
    if isinstance(x, tuple):
        return tuple(to_bf16(v) for v in x)
    if isinstance(x, list):
        return [to_bf16(v) for v in x]
    if isinstance(x, Mapping):
        return {k: to_bf16(v) for k, v in x.items()}
    return x


def bf16_copy(model: nn.Module, data: Any) -> tuple[nn.Module, Any]:
    """A bfloat16 copy of ``model`` (parameters and floating buffers; the user's model is
    left as it was) and the data with its floating tensors in bfloat16."""
    try:
        twin = copy.deepcopy(model)
    except Exception as e:  # noqa: BLE001 - a model that cannot be copied: one line
        raise LossviewError(f"--precision bf16 needs a copy of the model, which failed: "
                            f"{type(e).__name__}: {e}") from None
    return twin.to(torch.bfloat16), to_bf16(data)


def subgrid_indices(n: int, k: int = SUBGRID) -> np.ndarray:
    """At most ``k`` indices of an axis of ``n`` points, evenly spread, both ends included."""
    return np.unique(np.round(np.linspace(0, n - 1, min(int(k), n))).astype(int))


def measured_error(reduced: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Max absolute and relative error of ``reduced`` against the float32 ``reference``
    over the points where both are finite; ``"finite_mismatch"`` counts the points where
    only one of them is."""
    r, f = np.asarray(reduced, float).ravel(), np.asarray(reference, float).ravel()
    both = np.isfinite(r) & np.isfinite(f)
    err = np.abs(r[both] - f[both])
    rel = err / np.maximum(np.abs(f[both]), np.finfo(float).tiny)
    return {"max_abs_error": float(err.max()) if err.size else None,
            "max_rel_error": float(rel.max()) if rel.size else None,
            "points": int(r.size), "finite_mismatch": int(np.count_nonzero(
                np.isfinite(r) != np.isfinite(f)))}


def subgrid_check(reference: Any, alphas: np.ndarray, betas: np.ndarray, loss: np.ndarray,
                  precision: str) -> dict[str, Any]:
    """The precision record of the grid ``loss`` (``alphas x betas``, computed in
    ``precision``): its :func:`subgrid_indices` points evaluated by the float32
    ``reference`` evaluator (its ``losses(points)``) and :func:`measured_error` between."""
    ia, ib = subgrid_indices(len(alphas)), subgrid_indices(len(betas))
    ref = reference.losses(np.array([(a, b) for a in alphas[ia] for b in betas[ib]]))
    return dict(precision=precision, reference="float32", subgrid=[len(ia), len(ib)],
                **measured_error(np.asarray(loss)[np.ix_(ia, ib)], ref.reshape(len(ia), len(ib))))


def error_text(info: Mapping[str, Any]) -> str:
    """One line: the precision and its measured error against float32."""
    shape = "x".join(str(n) for n in info.get("subgrid", ()))
    if info.get("max_abs_error") is None:
        return (f"precision {info['precision']}: no finite point of the {shape} float32 "
                "sub-grid to measure its error on")
    extra = (f"; {info['finite_mismatch']} point(s) finite in one precision only"
             if info.get("finite_mismatch") else "")
    return (f"precision {info['precision']}: max error against float32 on a {shape} sub-grid "
            f"{info['max_abs_error']:.3g} absolute, {info['max_rel_error']:.3g} relative{extra}")

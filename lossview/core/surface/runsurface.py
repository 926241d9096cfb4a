"""The loss surface of a run on a plane through its trajectory, as a progressive generator.

::

    gen = surface_for_run(run, plane="pca", steps=41)
    for progress in gen:            # SurfaceProgress(fraction, partial RunSurface), coarse first
        ...                         # gen.close() cancels
    # the final RunSurface is the generator's return value (StopIteration.value)

Every snapshot is placed on the plane (coordinates, distance off the plane) and evaluated
twice: at its own weights (``true_loss``) and at its projection onto the plane
(``surface_loss``, evaluated exactly, not interpolated). Where the two differ, the
picture is not the run: the honesty check.

Diverged runs: the plane spans the finite prefix (snapshots up to the last one with finite
weights and full-data loss, :func:`~lossview.core.surface.finite.finite_prefix`); the
snapshots after it are listed in ``skipped`` with the reason, never placed on the plane.
Grid points whose loss overflows are marked in ``nonfinite``. No finite snapshot at all:
a one-line LossviewError.

Precision (:mod:`~lossview.core.surface.precision`): ``precision="bf16"`` or ``"tf32"``
(CUDA) evaluates the grid and the projected snapshots faster and less exactly; a sub-grid is
evaluated in float32 too and the measured error is part of the result
(:class:`~lossview.core.surface.precision_surface.PrecisionSurface`) and of the cache key.
The snapshots' true loss is always float32.

BatchNorm: eval mode with running statistics by default (the grid uses the statistics of
the plane's reference snapshot, each snapshot's true loss its own); ``bn_mode="recompute"``
re-estimates them at every point (slower).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from lossview.core.errors import LossviewError
from lossview.core.run import Run
from lossview.core.surface import cache as _cache
from lossview.core.surface.basin import flat_basin
from lossview.core.surface.finite import finite_prefix, weights_problem
from lossview.core.surface.grid import iter_grid
from lossview.core.surface.loop import resolve_device
from lossview.core.surface.planes import make_plane, project
from lossview.core.surface.precision import (
    bf16_copy,
    effective_precision,
    stepwise,
    subgrid_check,
    subgrid_indices,
    tf32_matmuls,
)
from lossview.core.surface.precision_surface import PrecisionSurface
from lossview.core.surface.results import RunSurface, SurfaceProgress
from lossview.core.surface.usermodel import ModelSource, model_source, snapshot_tensors

#: Margin added on each side of the trajectory's extent when no span is given.
SPAN_MARGIN = 0.15
#: Span of the random plane when none is given (Li et al.'s [-1, 1]).
RANDOM_SPAN = 1.0
#: Basin tolerance for runs = this many standard deviations of the snapshots' full-data
#: loss after the plateau.
NOISE_TOLERANCE_FACTOR = 2.0
#: A surface whose max - min is at most this fraction of its largest |loss| is "constant".
CONSTANT_RELATIVE = 1e-12


def axis_range(values: np.ndarray, steps: int, span: float | None) -> np.ndarray:
    """``linspace(-span, span)``, or the extent of ``values`` and 0 plus a margin."""
    if span is not None:
        if not np.isfinite(span) or span <= 0:
            raise LossviewError(f"span must be a positive number, not {span}")
        return np.linspace(-float(span), float(span), steps)
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    lo, hi = min(float(v.min(initial=0.0)), 0.0), max(float(v.max(initial=0.0)), 0.0)
    width = hi - lo
    pad = SPAN_MARGIN * width if width > 0 else 1.0
    return np.linspace(lo - pad, hi + pad, steps)


def plateau_index(run: Run) -> int | None:
    """Snapshot index of the plateau found in the logged loss, or None."""
    series = run.metric("loss", "train_loss")
    if series is None or len(series) < 10:
        return None
    from lossview.core.analysis.plateau import find_plateau

    step = find_plateau(series).get("step")
    return None if step is None else run.index_of_step(int(step))


def run_tolerance(run: Run, start_index: int | None, true_loss: np.ndarray) -> float | None:
    """Twice the standard deviation of the snapshots' full-data loss after the plateau.

    This is the loss's own fluctuation at the level the surface is computed (the whole
    data set, not a mini-batch), from ``start_index`` or the detected plateau on.
    None when there is no plateau or fewer than 3 snapshots after it.
    """
    start = start_index if start_index is not None else plateau_index(run)
    if start is None:
        return None
    post = np.asarray(true_loss[start:], dtype=float)
    post = post[np.isfinite(post)]
    if len(post) < 3:
        return None
    sd = float(np.std(post, ddof=1))
    return NOISE_TOLERANCE_FACTOR * sd if sd > 0 else None


@dataclass
class Geometry:
    """What a surface of a run is evaluated on: the model source, the finite prefix, the
    plane, the snapshots' coordinates on it and the grid axes (shared by
    :func:`surface_for_run` and the tiles of :mod:`lossview.core.surface.tiles`)."""

    src: ModelSource
    fp: Any
    last: int
    plane: Any
    coords: np.ndarray
    off: np.ndarray
    explained: tuple
    alphas: np.ndarray
    betas: np.ndarray


def plan_geometry(run: Run, plane: str, steps: int, span: float | None, model_file: str | None,
                  center_index: int | None, start_index: int | None,
                  snapshots: Sequence[int] | None, bn_mode: str, seed: int,
                  source: ModelSource | None, device: Any = None) -> Geometry:
    """Check the arguments, load the model source, and lay out plane and grid. The finite
    prefix is found by evaluating on ``device`` (the grid's: a model too large for the CPU's
    memory, or data too slow on it, is checked where it will be evaluated)."""
    steps = int(steps)
    if steps < 2:
        raise LossviewError("steps must be at least 2")
    if bn_mode not in ("eval", "recompute"):
        raise LossviewError(f"bn_mode must be 'eval' or 'recompute', not {bn_mode!r}")
    src = source if source is not None else model_source(run, model_file)
    fp = finite_prefix(run, src, device)
    if fp.last is None:
        raise LossviewError(f"nothing to draw a surface through: {fp.reason}")
    last = fp.last
    pl = make_plane(run, plane, center_index, start_index, snapshots, seed, last=last)
    coords, off, explained = project(run, pl, last)
    if span is None and pl.kind == "random":
        span = RANDOM_SPAN
    alphas = axis_range(coords[:, 0], steps, span)
    betas = np.zeros(1) if pl.is_line else axis_range(coords[:, 1], steps, span)
    if pl.is_line:
        coords = np.column_stack([coords[:, 0], np.zeros(len(coords))])
    return Geometry(src, fp, last, pl, coords, off, explained, alphas, betas)


def cache_parts(g: Geometry, bn_mode: str, tolerance: float | None,
                precision: str = "float32") -> dict[str, Any]:
    """What the cached surface depends on besides the run (JSON-plain: tiles store it).
    A reduced ``precision`` is part of the key (float32 keys are those of before it)."""
    pl = g.plane
    parts = {"plane": pl.kind, "plane_key": pl.key, "alphas": g.alphas.tolist(),
                 "betas": g.betas.tolist(), "bn_mode": bn_mode, "source": g.src.origin,
                 "data": _cache.data_digest(g.src.data), "tolerance": tolerance, "last": g.last}
    if precision != "float32":
        parts["precision"] = precision
    return json.loads(json.dumps(parts, default=str))


def cached_surface(path: Any) -> RunSurface | None:
    """The surface cached at ``path`` (marked ``cached``), None if absent or unreadable."""
    hit = _cache.load(path)
    if hit is None:
        return None
    try:
        return replace(PrecisionSurface.from_arrays(hit), cached=True)
    except (KeyError, ValueError):
        return None


def plane_evaluator(run: Run, g: Geometry, bn_mode: str, precision: str = "float32",
                    **extra: Any) -> Any:
    """The evaluator of ``g``'s plane (``extra``: PlaneEvaluator's ``device``/``path``);
    ``precision="bf16"``: on a bfloat16 copy of the model and data."""
    model, data = g.src.model, g.src.data
    if precision == "bf16":
        model, data = bf16_copy(model, data)
    dtype = next(model.parameters()).dtype
    slices = run.param_slices()

    def as_dict(v: np.ndarray | None) -> dict[str, torch.Tensor] | None:
        if v is None:
            return None
        return {n: torch.from_numpy(np.ascontiguousarray(v[slices[n]])).to(dtype)
                .reshape(run.param_shapes[n]) for n in run.param_names}

    _, center_bufs = snapshot_tensors(run, g.plane.buffer_index, model)
    center, d1, d2 = as_dict(g.plane.origin), as_dict(g.plane.d1), as_dict(g.plane.d2)
    if bn_mode == "recompute":
        from lossview.core.surface.batchnorm import RecomputeBNEvaluator

        return RecomputeBNEvaluator(model, g.src.loss_fn, data, center, d1, d2)
    from lossview.core.surface.evaluate import PlaneEvaluator

    return PlaneEvaluator(model, g.src.loss_fn, data, center, d1, d2, buffers=center_bufs,
                          **{k: v for k, v in extra.items() if v is not None})


def surface_for_run(run: Run, plane: str = "pca", steps: int = 41, span: float | None = None,
                    model_file: str | None = None, center_index: int | None = None,
                    start_index: int | None = None, snapshots: Sequence[int] | None = None,
                    bn_mode: str = "eval", cache: bool = True, tolerance: float | None = None,
                    seed: int = 0, source: ModelSource | None = None, device: Any = None,
                    precision: str = "float32",
                    ) -> Generator[SurfaceProgress, None, RunSurface]:
    """Progressive surface of ``run`` on ``plane`` (see module doc and docs/surface.md).

    Parameters
    ----------
    plane : ``"pca"``, ``"post-plateau"`` (needs ``start_index``), ``"random"``,
        ``"snapshots"`` (``snapshots=(A, B, C)``) or ``"line"`` (``snapshots=(A, B)``).
    steps : grid points per axis.
    span : axes ``linspace(-span, span, steps)``; default: the trajectory's projection
        (and the plane's origin) plus 15% on each side (random plane: 1.0).
    model_file : for foreign folders, the user's model file (runs their code).
    center_index : snapshot the pca/random plane goes through (default the last).
    start_index : first snapshot of the post-plateau segment.
    bn_mode : ``"eval"`` (running statistics) or ``"recompute"`` (slower).
    cache : read and write the on-disk cache (native runs: ``RUN/cache/``).
    tolerance : flat-basin tolerance (default: twice the standard deviation of the
        snapshots' full-data loss after the plateau, ``start_index`` or the detected one;
        else 5% of the surface's median rise above its minimum).
    source : an already loaded model/loss/data (skips ``model_file`` and the run spec).
    device : where the grid is evaluated (None: the model's device; ``"auto"``, ``"cpu"``,
        ``"cuda[:i]"``); float32 results equal the CPU's to rounding (TF32 off).
    precision : ``"float32"`` (default), ``"tf32"`` (CUDA matmuls in TF32; float32 on a
        CPU, see :func:`~lossview.core.surface.precision.effective_precision`) or
        ``"bf16"`` (model and data in bfloat16). A reduced precision returns a
        :class:`~lossview.core.surface.precision_surface.PrecisionSurface` whose
        ``precision`` holds the max error measured against float32 on a sub-grid.
    """
    g = plan_geometry(run, plane, steps, span, model_file, center_index, start_index,
                      snapshots, bn_mode, seed, source, device)
    precision, _ = effective_precision(precision, resolve_device(
        device, getattr(next(g.src.model.parameters(), None), "device", "cpu")))
    src, fp, last, pl = g.src, g.fp, g.last, g.plane
    coords, off, explained, alphas, betas = g.coords, g.off, g.explained, g.alphas, g.betas
    t = len(run)
    path, key = None, None
    if cache:
        key = _cache.surface_key(run, **cache_parts(g, bn_mode, tolerance, precision))
        path = _cache.cache_path(run, key)
        result = cached_surface(path)
        if result is not None:
            yield SurfaceProgress(1.0, result)
            return result

    ev = ev32 = plane_evaluator(run, g, bn_mode, precision, device=device)
    if precision == "bf16":  # the float32 reference: true loss and the sub-grid check
        ev32 = plane_evaluator(run, g, bn_mode, device=device,
                               path=ev.path if bn_mode == "eval" else None)
    # TF32 flags set only while the grid computes, not while the caller holds a yield
    fast = (lambda gen: stepwise(gen, tf32_matmuls)) if precision == "tf32" else (lambda gen: gen)
    n_grid = len(alphas) * len(betas)
    sub = ((subgrid_indices(len(alphas)), subgrid_indices(len(betas)))
           if precision != "float32" else None)
    n_sub = 0 if sub is None else len(sub[0]) * len(sub[1])
    total_work = float(n_grid + n_sub + 2 * t)
    nan_t = np.full(t, np.nan)
    kind = RunSurface if sub is None else PrecisionSurface
    base = kind(alphas, betas, np.full((len(alphas), len(betas)), np.nan), coords, off,
                      nan_t.copy(), nan_t.copy(), np.zeros((len(alphas), len(betas)), bool),
                      {"tolerance": float("nan"), "width_alpha": float("nan"),
                       "width_beta": float("nan"), "inside": [False] * t},
                      pl.description, explained, pl.kind, run.steps, bn_mode,
                      ev.path if sub is None else f"{ev.path}, {precision}", src.origin,
                      skipped=fp.skipped, loss_note=src.loss_note)

    grid = fast(iter_grid(ev, alphas, betas, progressive=True))
    while True:
        try:
            g = next(grid)
        except StopIteration as stop:
            loss = stop.value
            break
        yield SurfaceProgress(g.fraction * n_grid / total_work, replace(base, loss=g.loss))
    base = replace(base, loss=loss)
    if sub is not None:
        base = replace(base, precision=subgrid_check(ev32, alphas, betas, loss, precision))
        yield SurfaceProgress((n_grid + n_sub) / total_work, base)
    n_grid += n_sub

    surface_loss = np.full(t, np.nan)
    done = t - (last + 1)  # snapshots after the finite prefix are not on the plane
    for lo, hi, vals in fast(ev.iter_losses(coords[:last + 1])):
        surface_loss[lo:hi] = vals
        done += hi - lo
        yield SurfaceProgress((n_grid + done) / total_work, replace(base, surface_loss=surface_loss.copy()))
    true_loss = np.full(t, np.nan)
    for i in range(t):
        if i > last and weights_problem(run, i):
            continue  # NaN weights: NaN loss, nothing to evaluate
        p, b = snapshot_tensors(run, i, src.model)
        true_loss[i] = ev32.loss_at(p, b)
        if i % 8 == 7 or i == t - 1:
            yield SurfaceProgress((n_grid + t + i + 1) / total_work,
                                  replace(base, surface_loss=surface_loss.copy(), true_loss=true_loss.copy()))
    if tolerance is None:
        tolerance = run_tolerance(run, start_index, true_loss)
    mask, info = flat_basin(alphas, betas, loss, tolerance, coords)
    result = replace(base, surface_loss=surface_loss, true_loss=true_loss, basin_mask=mask,
                     basin=info, nonfinite=~np.isfinite(loss), suspicious=constant_surface(loss))
    if cache:
        _cache.save(path, result.to_arrays())
    return result


def constant_surface(loss: np.ndarray) -> str | None:
    """Why a surface is suspicious: the same loss (to 1e-12 relative) at every finite grid
    point means the loss does not depend on these weights (a loss_fn or data mistake)."""
    v = np.asarray(loss, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return None
    lo, hi = float(v.min()), float(v.max())
    if hi - lo > CONSTANT_RELATIVE * max(abs(lo), abs(hi)):
        return None
    return (f"the surface is constant (loss {lo:.6g} at all {len(v)} finite grid points): the "
            "loss does not depend on these weights; check loss_fn and the data")


def run_to_end(gen: Generator[SurfaceProgress, None, RunSurface]) -> RunSurface:
    """Exhaust a surface generator and return the final RunSurface."""
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value

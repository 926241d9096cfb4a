"""What the surface views draw, computed once per surface (numpy only, no Qt).

Both the 3D view and the 2D contour view draw the same :class:`SurfaceScene`: the loss
grid with holes filled (progressive refinement leaves NaN where a point is not evaluated
yet), heights on a linear or log scale with a robust ceiling, the trajectory lifted onto
the surface, and the outline of the flat basin. Scrubbing the timeline only moves a
marker along ``trajectory``; nothing here is recomputed on scrub.

Grid points whose loss overflowed (inf/NaN: a diverged run, a plane reaching far out) are
not "not evaluated yet": they are marked in ``SurfaceScene.nonfinite`` (from the core's
``RunSurface.nonfinite``) and drawn in :data:`OVERFLOW_RGB`, a colour of no colour map, at
the height ceiling, never filled from a neighbour or given the ceiling's colour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

#: heights above this many decades over the minimum are clipped in log mode
LOG_DECADES = 6.0
#: isolines drawn by the contour view, evenly spaced in displayed height
N_LEVELS = 9
#: grid points whose loss overflowed: a dark red that no colour map here uses (viridis
#: has no red-dominant colour), and the darker stripes of the contour view's hatching
OVERFLOW_RGB = (160, 45, 45)
OVERFLOW_HATCH_RGB = (70, 18, 18)
#: the legend's words for that colour
OVERFLOW_LABEL = "loss overflowed"


def bilinear(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``z`` (on the grid ``xs`` x ``ys``, both ascending) at ``points`` ``[N, 2]``:
    bilinear inside the grid, extended linearly from the edge cells outside it, NaN for
    non-finite points. The same numbers as scipy's ``RegularGridInterpolator(...,
    bounds_error=False, fill_value=None)``, without importing ``scipy.interpolate``
    (~0.1 s on the GUI thread at the first 3D surface)."""
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(p), np.nan)
    ok = np.isfinite(p).all(axis=1)
    if not ok.any():
        return out
    x, y = p[ok, 0], p[ok, 1]

    def cell(axis: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(axis) < 2:
            return np.zeros(len(v), dtype=np.int64), np.zeros(len(v))
        i = np.clip(np.searchsorted(axis, v) - 1, 0, len(axis) - 2)
        return i, (v - axis[i]) / (axis[i + 1] - axis[i])

    i, tx = cell(xs, x)
    j, ty = cell(ys, y)
    i1 = np.minimum(i + 1, len(xs) - 1)
    j1 = np.minimum(j + 1, len(ys) - 1)
    out[ok] = ((1 - tx) * (1 - ty) * z[i, j] + tx * (1 - ty) * z[i1, j]
               + (1 - tx) * ty * z[i, j1] + tx * ty * z[i1, j1])
    return out


def fill_missing(loss: np.ndarray) -> np.ndarray:
    """Copy of ``loss`` with NaN points replaced by their nearest evaluated neighbour.

    Progressive refinement evaluates a coarse sub-grid first; filling the rest with the
    nearest evaluated value draws that coarse surface as blocks until the fine points
    arrive. Infinite losses (overflowed, see :func:`nonfinite_mask`: pass them as inf)
    are kept, and a point not evaluated yet next to one takes its inf. A grid with
    nothing evaluated comes back as zeros.
    """
    z = np.asarray(loss, dtype=np.float64)
    bad = np.isnan(z)
    if not bad.any():
        return z.copy()
    if bad.all():
        return np.zeros_like(z)
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return z[tuple(idx)]


def grid_evaluated(surface: Any) -> bool:
    """Whether a (partial) surface's grid is complete: the core evaluates the whole grid
    before the snapshots' losses, so a partial surface with any of those has it all."""
    loss = np.asarray(surface.loss, dtype=np.float64)
    if not np.isnan(loss).any():
        return True
    return any(np.isfinite(np.asarray(v, dtype=np.float64)).any()
               for v in (getattr(surface, "surface_loss", None),
                         getattr(surface, "true_loss", None)) if v is not None)


def nonfinite_mask(surface: Any) -> np.ndarray:
    """Grid points whose loss overflowed (inf or NaN), as opposed to NaN for "not
    evaluated yet": the core's ``nonfinite`` on a final surface; on a partial one the
    infinite points, and the NaN ones once the grid is complete (:func:`grid_evaluated`)."""
    raw = np.asarray(surface.loss, dtype=np.float64)
    known = getattr(surface, "nonfinite", None)
    if known is not None and np.shape(known) == raw.shape:
        return np.asarray(known, dtype=bool) | np.isinf(raw)
    return np.isinf(raw) | (np.isnan(raw) & grid_evaluated(surface))


def fraction_evaluated(loss: np.ndarray) -> float:
    """Share of grid points whose loss is known (NaN marks "not evaluated yet")."""
    z = np.asarray(loss)
    return float((~np.isnan(z)).mean()) if z.size else 0.0


@dataclass
class HeightScale:
    """Maps loss values to displayed heights: ``log10`` or linear, clipped at ``ceiling``."""

    log: bool
    floor: float
    ceiling: float
    clipped: bool

    def transform(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=np.float64)
        if self.log:
            tiny = np.finfo(np.float64).tiny
            v = np.log10(np.clip(v, tiny, None))
        v = np.where(np.isfinite(v), v, self.ceiling)
        return np.clip(v, self.floor, self.ceiling)

    def unit(self, values: np.ndarray) -> np.ndarray:
        """Heights in [0, 1] (0 at the lowest point of the surface)."""
        span = self.ceiling - self.floor
        return (self.transform(values) - self.floor) / (span if span > 0 else 1.0)

    def label(self, unit_height: float) -> float:
        """The loss value at a height in [0, 1] (for axis ticks)."""
        v = self.floor + unit_height * (self.ceiling - self.floor)
        return float(10**v) if self.log else float(v)


def height_scale(z: np.ndarray, log: bool) -> HeightScale:
    """A scale that shows the basin: in linear mode a surface whose rim is far above its
    typical values (a diverging direction) is clipped at the 90th percentile, otherwise
    the flat part would be squashed to a sheet; in log mode at ``LOG_DECADES`` decades."""
    v = np.asarray(z, dtype=np.float64)
    if log:
        v = np.log10(np.clip(v, np.finfo(np.float64).tiny, None))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return HeightScale(log, 0.0, 1.0, False)
    lo, hi = float(v.min()), float(v.max())
    ceiling = hi
    if log:
        ceiling = min(hi, lo + LOG_DECADES)
    else:
        p90 = float(np.percentile(v, 90))
        if hi - lo > 20 * max(float(np.median(v)) - lo, 1e-12) and p90 > lo:
            ceiling = p90
    if ceiling <= lo:
        ceiling = lo + (abs(lo) * 1e-3 or 1.0)
    return HeightScale(log, lo, ceiling, ceiling < hi)


def outline_segments(mask: np.ndarray, alphas: np.ndarray, betas: np.ndarray,
                     loss: np.ndarray | None = None, level: float | None = None) -> np.ndarray:
    """Outline of the basin as a polyline in (alpha, beta) coordinates.

    With ``loss`` and ``level`` (minimum + tolerance) the outline is the smooth level
    curve of the loss, kept to the basin's own connected region (other low regions of the
    plane are not outlined); otherwise the boundary of the boolean ``mask``. Returns an
    ``[N, 2]`` array whose pieces are split by NaN rows (draw with ``connect="finite"``);
    empty when the mask is all False or all True.
    """
    m = np.asarray(mask, dtype=bool)
    if m.size == 0 or m.all() or not m.any() or min(m.shape) < 2:
        return np.empty((0, 2))
    if loss is not None and level is not None and np.isfinite(level):
        z = np.asarray(loss, dtype=np.float64)
        near = ndimage.binary_dilation(m, iterations=1)
        top = np.nanmax(np.where(np.isfinite(z), z, -np.inf))
        z = np.where(near & np.isfinite(z), z, max(top, level) + 1.0)
        return iso_segments(z, level, alphas, betas)
    return iso_segments(m.astype(np.float64), 0.5, alphas, betas)


def iso_segments(z: np.ndarray, level: float, alphas: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """The ``level`` isocurve of ``z[alpha, beta]`` as NaN-separated (alpha, beta) points.

    contourpy (matplotlib's contouring engine, in C++) instead of pyqtgraph's
    ``isocurve``: that is marching squares in Python (0.5 s for a surface's isolines,
    holding the GIL) and importing it pulls Qt into the worker process that builds
    scenes. The curves were the same when it was switched (same end points, lengths equal
    to 1e-15); the test checks that every point lies on its level.
    """
    import contourpy

    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 2:
        return np.empty((0, 2))
    gen = contourpy.contour_generator(x=np.asarray(alphas, dtype=np.float64),
                                      y=np.asarray(betas, dtype=np.float64), z=z.T,
                                      line_type=contourpy.LineType.Separate)
    pieces = []
    for line in gen.lines(float(level)):
        if len(line) >= 2:
            pieces += [np.asarray(line, dtype=np.float64), np.full((1, 2), np.nan)]
    return np.concatenate(pieces) if pieces else np.empty((0, 2))


@dataclass
class SurfaceScene:
    """Everything the views draw for one (possibly partial) surface.

    Attributes
    ----------
    alphas, betas : grid coordinates along the two plane directions.
    loss : ``[A, B]`` loss with missing points filled (see :func:`fill_missing`).
    scale : how loss maps to height.
    coords : ``[T, 2]`` the trajectory projected on the plane.
    traj_loss : ``[T]`` the surface's loss at each projected point (the lifted path).
    true_loss, off_plane : ``[T]`` the real loss and distance off the plane, for the
        honesty plot; NaN where unknown.
    basin : NaN-separated (alpha, beta) outline of the flat basin.
    iso : NaN-separated (alpha, beta) isolines at ``N_LEVELS`` heights (contour view).
    complete : True when every grid point is evaluated.
    nonfinite : ``[A, B]`` bool, points drawn as overflowed (``loss`` is inf there): the
        core's non-finite points, and on a partial surface the points not evaluated yet
        that take an overflowed neighbour's place.
    """

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    scale: HeightScale
    coords: np.ndarray
    traj_loss: np.ndarray
    true_loss: np.ndarray
    off_plane: np.ndarray
    basin: np.ndarray
    complete: bool
    iso: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    plane: str = "pca"
    explained: tuple | None = None
    basin_info: dict[str, Any] = field(default_factory=dict)
    nonfinite: np.ndarray | None = None

    @property
    def n_points(self) -> int:
        return len(self.coords)

    @property
    def overflowed(self) -> np.ndarray:
        """``[A, B]`` bool: where the views draw the overflow colour (none if not given)."""
        m = self.nonfinite
        if m is None or np.shape(m) != np.shape(self.loss):
            return np.zeros(np.shape(self.loss), dtype=bool)
        return np.asarray(m, dtype=bool)

    @property
    def nothing_finite(self) -> bool:
        """Every grid point overflowed: there is no surface to draw."""
        m = self.overflowed
        return bool(m.size) and bool(m.all())


def _vec(x: Any, n: int) -> np.ndarray:
    if x is None:
        return np.full(n, np.nan)
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a if len(a) == n else np.full(n, np.nan)


def build_scene(surface: Any, log: bool, isolines: bool = True) -> SurfaceScene:
    """Turn a core ``RunSurface`` (partial or final) into a :class:`SurfaceScene`.

    Pure numpy (no Qt objects), so the surface job builds scenes in its own process and
    the GUI thread only hands arrays to the views; ``isolines=False`` skips the isolines
    (partial scenes: the contour view draws isolines with the final one).
    """
    alphas = np.asarray(surface.alphas, dtype=np.float64)
    betas = np.asarray(surface.betas, dtype=np.float64)
    raw = np.asarray(surface.loss, dtype=np.float64)
    raw = np.where(nonfinite_mask(surface), np.inf, raw)
    complete = not bool(np.isnan(raw).any())
    z = fill_missing(raw)
    bad = ~np.isfinite(z)
    coords = np.asarray(surface.coords, dtype=np.float64).reshape(-1, 2)
    n = len(coords)
    traj = _vec(getattr(surface, "surface_loss", None), n).copy()
    # not evaluated yet on a partial surface: read the filled grid instead (not for a
    # snapshot left off the plane, nor on the final surface: NaN there is an overflow)
    todo = np.isnan(traj) & np.isfinite(coords).all(axis=1)
    if getattr(surface, "nonfinite", None) is None and todo.any():
        ia = np.clip(np.searchsorted(alphas, coords[todo, 0]), 0, len(alphas) - 1)
        ib = np.clip(np.searchsorted(betas, coords[todo, 1]), 0, len(betas) - 1)
        traj[todo] = z[ia, ib]
    scale = height_scale(z, log)
    mask = getattr(surface, "basin_mask", None)
    info = dict(getattr(surface, "basin", None) or {})
    level = None
    if info.get("minimum") is not None and info.get("tolerance") is not None:
        level = float(info["minimum"]) + float(info["tolerance"])
    basin = (outline_segments(mask, alphas, betas, z, level) if mask is not None
             else np.empty((0, 2)))
    iso = np.empty((0, 2))
    if isolines and min(z.shape) >= 2:
        # none around or across the overflowed region (contourpy leaves NaN out)
        h = np.where(bad, np.nan, scale.transform(z))
        levels = np.linspace(scale.floor, scale.ceiling, N_LEVELS + 2)[1:-1]
        segs = [iso_segments(h, lv, alphas, betas) for lv in levels]
        iso = np.concatenate(segs) if segs else iso
    return SurfaceScene(
        alphas=alphas, betas=betas, loss=z, scale=scale, coords=coords, traj_loss=traj,
        iso=iso,
        true_loss=_vec(getattr(surface, "true_loss", None), n),
        off_plane=_vec(getattr(surface, "off_plane", None), n),
        basin=basin, complete=complete, plane=str(getattr(surface, "plane", "pca")),
        explained=getattr(surface, "explained", None),
        basin_info=info, nonfinite=bad,
    )


def honesty_summary(scene: SurfaceScene) -> str:
    """One line telling how faithful the plane is to the real trajectory."""
    t, s, d = scene.true_loss, scene.traj_loss, scene.off_plane
    parts = []
    if scene.explained:
        ev = [float(e) for e in scene.explained if e is not None]
        if ev:
            parts.append(f"plane explains {100 * sum(ev[:2]):.0f}% of the path's variance")
    ok = np.isfinite(t) & np.isfinite(s)
    if ok.any():
        rel = np.abs(t[ok] - s[ok]) / np.maximum(np.abs(t[ok]), 1e-12)
        parts.append(f"surface vs true loss: median error {100 * float(np.median(rel)):.1f}%")
    if np.isfinite(d).any():
        steps = np.linalg.norm(np.diff(scene.coords, axis=0), axis=1)
        path = float(np.nansum(steps))
        dmax = float(np.nanmax(d))
        rel = f" ({dmax / path:.0%} of the in-plane path)" if path > 0 else ""
        parts.append(f"max distance off the plane {dmax:.3g}{rel}")
    return "; ".join(parts) if parts else "no trajectory on this plane"


def _call(surface: Any, name: str) -> str | None:
    f = getattr(surface, name, None)
    return f() if callable(f) else None


def overflow_text(surface: Any) -> str | None:
    """The core's count of overflowed grid points (``nonfinite_text``); on a partial
    surface, the points known so far. None when there are none."""
    text = _call(surface, "nonfinite_text")
    if text or getattr(surface, "nonfinite", None) is not None:
        return text
    n = int(nonfinite_mask(surface).sum())
    return f"{n} grid points so far non-finite (loss overflowed)" if n else None


def surface_notes(surface: Any) -> list[str]:
    """The core's words on what the surface leaves out and why not to trust it: the
    snapshots skipped after a divergence, a suspicious (constant) surface, the loss used
    when a model file gave none. (The overflowed points: :func:`overflow_text`.)"""
    notes = [_call(surface, "skipped_text")]
    why = getattr(surface, "suspicious", None)
    notes += [f"suspicious: {why}" if why else None, getattr(surface, "loss_note", None)]
    return [str(n) for n in notes if n]

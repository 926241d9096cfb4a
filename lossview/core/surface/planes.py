"""Planes (and lines) through a run's weight trajectory, as flat float64 vectors.

- ``pca``: the first two principal components of the trajectory (mean-centred PCA, as
  Li et al.'s ``setup_PCA_directions``), through the final snapshot or a chosen one
  (origin at that snapshot, so it sits at (0, 0)).
- ``post-plateau``: the first two PCs of the snapshots from ``start_index`` on, centred on
  their mean, so the wandering after the plateau shows at its own scale.
- ``random``: two Gaussian filter-normalised directions (Li et al. 2018) at a snapshot.
- ``snapshots``: the plane through three snapshots A, B, C (A at (0,0), B at (1,0), C at (0,1)).
- ``line``: the line from snapshot A (0) to B (1).

Planes span the **finite prefix** only (``last``: the last snapshot with finite weights
and loss, see :mod:`~lossview.core.surface.finite`): the default center is the last finite
snapshot, PCA is fitted to finite snapshots, and a plane asked to pass through a snapshot
after ``last`` is a one-line error.

:func:`project` places every snapshot on the plane (least squares in the plane's own
coordinates) and measures its distance off the plane; snapshots after ``last`` get NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lossview.core.errors import LossviewError
from lossview.core.run import Run
from lossview.core.surface.directions import random_plane

KINDS = ("pca", "post-plateau", "random", "snapshots", "line")


@dataclass
class Plane:
    """``origin + a * d1 + b * d2`` in the run's flat weight space (``d2`` None: a line).

    ``indices`` are the snapshots the plane was fitted to (used for ``explained``);
    ``buffer_index`` is the snapshot whose BatchNorm statistics the surface uses.
    """

    kind: str
    origin: np.ndarray
    d1: np.ndarray
    d2: np.ndarray | None
    description: str
    indices: list[int]
    buffer_index: int
    key: dict

    @property
    def is_line(self) -> bool:
        return self.d2 is None


def _index(run: Run, i: int | None, default: int, last: int | None = None) -> int:
    if i is None:
        return default
    try:
        j = range(len(run))[int(i)]
    except (IndexError, ValueError, TypeError):
        raise LossviewError(f"snapshot index {i!r} is out of range (the run has {len(run)})") from None
    if last is not None and j > last:
        raise LossviewError(f"snapshot {i} (step {int(run.steps[j])}) has non-finite weights or "
                            f"loss; choose snapshots 0..{last} (up to step {int(run.steps[last])})")
    return j


def _last(run: Run, last: int | None) -> int:
    return len(run) - 1 if last is None else int(last)


def _pcs(run: Run, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    from lossview.core.analysis.pca import pca_directions

    if len(indices) < 3:
        raise LossviewError(f"a PCA plane needs at least 3 snapshots, got {len(indices)}")
    try:
        v, mean = pca_directions(run, k=2, indices=indices, center="mean", return_origin=True,
                                 max_snapshots=None)
    except ValueError as e:
        raise LossviewError(f"cannot fit a PCA plane: {e}") from None
    if len(v) < 2:
        raise LossviewError("the trajectory spans fewer than two directions")
    return v, mean


def pca_plane(run: Run, center_index: int | None = None, last: int | None = None) -> Plane:
    e = _last(run, last)
    c = _index(run, center_index, e, last)
    idx = list(range(e + 1))
    v, _ = _pcs(run, idx)
    which = (f"all {len(run)} snapshots" if e == len(run) - 1
             else f"the {e + 1} finite snapshots (steps {run.steps[0]}-{run.steps[e]})")
    return Plane("pca", run.vector(c), v[0], v[1],
                 f"PCA plane (PC1, PC2) of {which} through step {run.steps[c]}",
                 idx, c, {"center": c, "last": e})


def post_plateau_plane(run: Run, start_index: int, last: int | None = None) -> Plane:
    e = _last(run, last)
    s = _index(run, start_index, 0, last)
    idx = list(range(s, e + 1))
    v, mean = _pcs(run, idx)
    return Plane("post-plateau", mean, v[0], v[1],
                 f"PCA plane of the {len(idx)} snapshots from step {run.steps[s]} "
                 + ("on" if e == len(run) - 1 else f"to step {run.steps[e]} (the last finite)")
                 + ", centred on their mean", idx, e, {"start": s, "last": e})


def random_plane_for_run(run: Run, center_index: int | None = None, seed: int = 0,
                         include_biasbn: bool = False, last: int | None = None) -> Plane:
    e = _last(run, last)
    c = _index(run, center_index, e, last)
    w = {n: torch.from_numpy(np.asarray(a, dtype=np.float64)) for n, a in run.params(c).items()}
    if not include_biasbn and all(t.dim() <= 1 for t in w.values()):
        raise LossviewError("a random plane needs a parameter with 2 or more dimensions: filter "
                            "normalisation zeroes the 1-D ones (biases, norm scales; Li et al. "
                            "2018), and this model has only those; use --plane pca")
    d1, d2 = random_plane(w, seed, "filter", include_biasbn)
    flat = [np.concatenate([d[n].numpy().reshape(-1) for n in run.param_names]) for d in (d1, d2)]
    return Plane("random", run.vector(c), flat[0], flat[1],
                 f"random filter-normalised plane (seed {seed}) through step {run.steps[c]}",
                 list(range(e + 1)), c, {"center": c, "seed": seed, "biasbn": include_biasbn})


def snapshots_plane(run: Run, a: int, b: int, c: int, last: int | None = None) -> Plane:
    a, b, c = (_index(run, i, 0, last) for i in (a, b, c))
    if len({a, b, c}) < 3:
        raise LossviewError("the plane through snapshots needs three different snapshots")
    wa = run.vector(a)
    d1, d2 = run.vector(b) - wa, run.vector(c) - wa
    g = np.array([[d1 @ d1, d1 @ d2], [d1 @ d2, d2 @ d2]])
    if np.linalg.cond(g) > 1e12:
        raise LossviewError("the three snapshots are (nearly) on one line: no plane through them")
    s = run.steps
    return Plane("snapshots", wa, d1, d2,
                 f"plane through steps {s[a]} (0,0), {s[b]} (1,0) and {s[c]} (0,1)",
                 list(range(_last(run, last) + 1)), a, {"abc": [a, b, c]})


def line_between(run: Run, a: int, b: int, last: int | None = None) -> Plane:
    a, b = _index(run, a, 0, last), _index(run, b, 0, last)
    wa = run.vector(a)
    d1 = run.vector(b) - wa
    if not np.any(d1):
        raise LossviewError("the two snapshots are identical: no line between them")
    s = run.steps
    return Plane("line", wa, d1, None, f"line from step {s[a]} (0) to step {s[b]} (1)",
                 list(range(_last(run, last) + 1)), a, {"ab": [a, b]})


def make_plane(run: Run, plane: str = "pca", center_index: int | None = None,
               start_index: int | None = None, snapshots: Sequence[int] | None = None,
               seed: int = 0, last: int | None = None) -> Plane:
    """The plane named ``plane`` (one of :data:`KINDS`), through snapshots ``0..last``
    only (default all; see the module doc)."""
    if len(run) < 1:
        raise LossviewError("the run has no snapshots")
    if last is not None and not 0 <= int(last) < len(run):
        raise LossviewError("no finite snapshot to draw a plane through")
    if plane == "pca":
        return pca_plane(run, center_index, last)
    if plane == "post-plateau":
        if start_index is None:
            raise LossviewError("the post-plateau plane needs the plateau's snapshot index")
        return post_plateau_plane(run, start_index, last)
    if plane == "random":
        return random_plane_for_run(run, center_index, seed, last=last)
    if plane == "snapshots":
        if snapshots is None or len(snapshots) != 3:
            raise LossviewError("the snapshots plane needs three snapshot indices A B C")
        return snapshots_plane(run, *snapshots, last=last)
    if plane == "line":
        if snapshots is None or len(snapshots) != 2:
            raise LossviewError("a line needs two snapshot indices A B")
        return line_between(run, *snapshots, last=last)
    raise LossviewError(f"unknown plane {plane!r}; choose one of {', '.join(KINDS)}")


def project(run: Run, plane: Plane, last: int | None = None,
            ) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Plane coordinates ``[T, 2]`` (``[T, 1]`` for a line), distance off the plane ``[T]``,
    and the fraction of the fitted snapshots' variance along each orthonormalised axis.

    Coordinates solve ``min |w - origin - a d1 - b d2|`` (exact for non-orthogonal axes).
    Snapshots after ``last`` (default: none) are not read; their rows are NaN.
    """
    # torch (float64) rather than numpy: numpy's BLAS threads would otherwise keep
    # spinning against torch's during the grid evaluation that follows.
    dirs = [plane.d1] if plane.d2 is None else [plane.d1, plane.d2]
    m = torch.from_numpy(np.stack(dirs))  # k x D
    g = m @ m.T
    if torch.linalg.matrix_rank(g) < len(dirs):
        raise LossviewError(f"the {plane.kind} plane's directions are zero or parallel; "
                            "choose another plane (e.g. --plane pca)")
    q, _ = torch.linalg.qr(m.T)  # orthonormal basis of the same span (explained fractions)
    origin = torch.from_numpy(np.asarray(plane.origin, dtype=np.float64))
    fit = set(plane.indices)
    t = len(run)
    e = t - 1 if last is None else int(last)
    coords = np.full((t, len(dirs)), np.nan)
    off = np.full(t, np.nan)
    s_proj = torch.zeros(len(dirs), dtype=torch.float64)
    s_proj2 = torch.zeros(len(dirs), dtype=torch.float64)
    s_vec = torch.zeros(run.n_params, dtype=torch.float64)
    s_sq, n_fit = 0.0, 0
    for i, w in run.iter_vectors(range(e + 1)):
        r = torch.from_numpy(w) - origin
        rhs = m @ r
        c = torch.linalg.solve(g, rhs)
        rr = float(r @ r)
        coords[i] = c.numpy()
        off[i] = np.sqrt(max(rr - float(c @ rhs), 0.0))
        if i in fit:
            e = q.T @ r
            s_proj += e
            s_proj2 += e * e
            s_sq += rr
            s_vec += r
            n_fit += 1
    total = s_sq - float(s_vec @ s_vec) / max(n_fit, 1)
    along = (s_proj2 - s_proj * s_proj / max(n_fit, 1)).numpy()
    explained = tuple(float(x / total) if total > 0 else float("nan") for x in along)
    return coords, off, explained

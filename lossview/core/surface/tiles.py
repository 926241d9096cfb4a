"""A run's surface as tiles with a stable key: compute tiles anywhere, merge them back.

::

    job = surface_job(run, plane="pca", steps=41, source=src)   # plane, grid, key, plan
    tile = run_to_end(iter_tile(job, n_tiles=8, tile=3))        # arrays of one tile
    save_tile("tiles/3.npz", tile)
    surface = merge_tiles({p: load_tile(p) for p in paths})      # the RunSurface

The job is what :func:`~lossview.core.surface.runsurface.surface_for_run` computes, cut
into work units in the order one process evaluates them: the grid's chunks level by level
(coarse to fine), the chunks of the snapshots' projections, then each snapshot's own loss.
A tile is a contiguous run of units of about equal cost; tile ``I`` of ``N`` is the same
work on every machine. Each unit is evaluated as exactly the chunk one process would
evaluate (same points, same order, same thread count), so the merged surface is
bit-identical to the one-process result, not merely equal to rounding: a batched pass
rounds a point's loss differently depending on the other points of its chunk.

The key hashes everything that determines the values: the cache key (run identity with
its snapshots' sizes and mtimes, plane, grid, model source, data digest, BatchNorm mode),
the plane's arrays, the snapshots' coordinates, the model file's content, the dtype and
the evaluation path. :func:`merge_tiles` refuses tiles of different keys (naming what
differs), different plans (thread counts), and tiles that do not cover the job once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.errors import LossviewError
from lossview.core.surface.results import RunSurface

TILE_FORMAT = "lossview-tile"
TILE_VERSION = 1
#: Parts of the key, in the order a mismatch is named, with the words for it.
PARTS = (("run", "run (folder or snapshot files)"), ("model", "model"), ("data", "data"),
         ("plane", "plane"), ("grid", "grid"), ("bn_mode", "BatchNorm mode"),
         ("dtype", "dtype"), ("evaluation", "evaluation path"), ("settings", "settings"))


def _digest(*arrays: Any) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _file_digest(origin: str) -> str:
    """Content hash of the model file named in ``origin`` ("model file PATH"), else ""."""
    prefix = "model file "
    if not origin.startswith(prefix):
        return ""
    try:
        return hashlib.sha256(Path(origin[len(prefix):]).read_bytes()).hexdigest()[:16]
    except OSError:
        return ""


@dataclass
class SurfaceJob:
    """Everything a tile needs: the run, model source, plane, grid, evaluator and plan."""

    run: Any
    src: Any
    ev: Any
    alphas: np.ndarray
    betas: np.ndarray
    coords: np.ndarray
    off: np.ndarray
    last: int
    units: list[tuple]
    key: str
    meta: dict

    @property
    def cost(self) -> int:
        return sum(_cost(u) for u in self.units)


def _cost(unit: tuple) -> int:
    return len(unit[1]) if unit[0] == "grid" else (unit[2] - unit[1] if unit[0] == "plane" else 1)


def surface_job(run: Any, plane: str = "pca", steps: int = 41, span: float | None = None,
                center_index: int | None = None, start_index: int | None = None,
                snapshots: Sequence[int] | None = None, bn_mode: str = "eval",
                tolerance: float | None = None, seed: int = 0, source: Any = None,
                model_file: str | None = None, path: str | None = None,
                device: Any = None) -> SurfaceJob:
    """The job :func:`surface_for_run` would do with these arguments, planned as units.

    ``path`` (``"batched"``/``"loop"``) and ``device`` go to the evaluator where it takes
    them (None: its default; a timing probe may pick the path, see :func:`pinned_path`).
    """
    from lossview.core.surface import cache as _cache
    from lossview.core.surface.finite import weights_problem
    from lossview.core.surface.grid import grid_order
    from lossview.core.surface.pipelines import balanced_spans
    from lossview.core.surface.runsurface import cache_parts, plan_geometry, plane_evaluator, plateau_index
    from lossview.core.surface.threads import thread_budget

    g = plan_geometry(run, plane, steps, span, model_file, center_index, start_index,
                      snapshots, bn_mode, seed, source, device)
    src, fp, last, pl = g.src, g.fp, g.last, g.plane
    coords, off, explained, alphas, betas = g.coords, g.off, g.explained, g.alphas, g.betas
    parts_of_cache = cache_parts(g, bn_mode, tolerance)
    data = parts_of_cache["data"]
    cache_key = _cache.surface_key(run, **parts_of_cache)

    dtype = next(src.model.parameters()).dtype
    ev = plane_evaluator(run, g, bn_mode, path=path, device=device)
    chunk, workers = (1, 1) if bn_mode == "recompute" else (ev.chunk_size(), ev.workers())
    nb = len(betas)
    units: list[tuple] = []
    for idx in grid_order(len(alphas), nb):  # what iter_grid(progressive=True) evaluates
        flat = idx[:, 0] * nb + idx[:, 1]
        units += [("grid", flat[lo:hi]) for lo, hi in balanced_spans(len(idx), chunk, workers)]
    units += [("plane", lo, hi) for lo, hi in balanced_spans(last + 1, chunk, workers)]
    units += [("true", i) for i in range(len(run))
              if not (i > last and weights_problem(run, i))]
    parts = {"run": _cache.surface_key(run), "model": [src.origin, _file_digest(src.origin)],
             "data": data, "plane": [pl.kind, _digest(pl.origin, pl.d1, pl.d2), _digest(coords)],
             "grid": _digest(alphas, betas), "bn_mode": bn_mode, "dtype": str(dtype),
             "evaluation": ev.path, "settings": cache_key}
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]
    tol_start = None
    if tolerance is None:  # what run_tolerance would use, resolved now: merge has no run
        tol_start = start_index if start_index is not None else plateau_index(run)
    meta = {
        "format": TILE_FORMAT, "version": TILE_VERSION, "key": key, "parts": parts,
        "plan": {"chunk": int(chunk), "workers": int(workers), "units": len(units),
                 "threads": int(thread_budget())},
        "expect": {"grid": int(len(alphas) * nb), "plane": int(last + 1),
                   "true": [int(u[1]) for u in units if u[0] == "true"]},
        "surface": {"plane": pl.description, "explained": list(explained), "kind": pl.kind,
                    "bn_mode": bn_mode, "evaluation": ev.path, "source": src.origin,
                    "skipped": fp.skipped, "loss_note": src.loss_note},
        "tolerance": tolerance, "tolerance_start": tol_start,
        "cache": {"run": str(Path(run.path).resolve()), "key": cache_key, "parts": parts_of_cache},
        "opened_as": run.spec.get("opened_as") or f"opened as {run.format}",
    }
    return SurfaceJob(run, src, ev, alphas, betas, coords, off, last, units, key, meta)


def pinned_path(job: SurfaceJob) -> str | None:
    """The evaluator path this job runs, to pin in other processes (a probe that times the
    paths may choose differently elsewhere; the results would differ in rounding)."""
    if job.meta["surface"]["evaluation"] == "recompute-bn":
        return None
    # the reported name pins the exact variant (e.g. loop+first-layer+channels-last): a
    # loop in the other layout would round differently
    return job.meta["surface"]["evaluation"]


def tile_units(job: SurfaceJob, n_tiles: int, tile: int) -> list[int]:
    """Indices of ``job.units`` in tile ``tile`` of ``n_tiles`` (contiguous, cost-balanced)."""
    n_tiles, tile = int(n_tiles), int(tile)
    if n_tiles < 1:
        raise LossviewError(f"the number of tiles must be at least 1, not {n_tiles}")
    if not 0 <= tile < n_tiles:
        raise LossviewError(f"tile must be between 0 and {n_tiles - 1}, not {tile}")
    total, start, out = max(job.cost, 1), 0, []
    for u, unit in enumerate(job.units):
        c = _cost(unit)
        if min(n_tiles - 1, (2 * start + c) * n_tiles // (2 * total)) == tile:
            out.append(u)
        start += c
    return out


def _one_chunk(ev: Any, pts: np.ndarray) -> np.ndarray:
    """Losses at ``pts`` evaluated as one chunk of ``ev`` (as in one process's plan)."""
    if not hasattr(ev, "chunk_size"):
        return ev.losses(pts)  # point by point: no chunks
    n = len(pts)
    ev.workers, ev.chunk_size = (lambda: 1), (lambda: n)  # instance attributes, removed below
    try:
        return ev.losses(pts)
    finally:
        del ev.workers, ev.chunk_size


def iter_tile(job: SurfaceJob, n_tiles: int, tile: int
              ) -> Generator[float, None, dict[str, np.ndarray]]:
    """Compute tile ``tile`` of ``n_tiles``: yield the fraction done after each unit,
    return its arrays (:func:`save_tile`); ``gen.close()`` cancels."""
    from lossview.core.surface.usermodel import snapshot_tensors

    mine = tile_units(job, n_tiles, tile)
    nb = len(job.betas)
    got: dict[str, list] = {k: [] for k in ("grid", "plane", "true")}
    total, done = max(sum(_cost(job.units[u]) for u in mine), 1), 0
    for u in mine:
        unit = job.units[u]
        if unit[0] == "grid":
            flat = unit[1]
            pts = np.stack([job.alphas[flat // nb], job.betas[flat % nb]], axis=1)
            got["grid"].append((flat, _one_chunk(job.ev, pts)))
        elif unit[0] == "plane":
            lo, hi = unit[1], unit[2]
            got["plane"].append((np.arange(lo, hi), _one_chunk(job.ev, job.coords[lo:hi])))
        else:
            p, b = snapshot_tensors(job.run, unit[1], job.src.model)
            got["true"].append((np.array([unit[1]]), np.array([job.ev.loss_at(p, b)])))
        done += _cost(unit)
        yield done / total
    meta = dict(job.meta, n_tiles=int(n_tiles), tile=int(tile))
    out = {"tile_meta": np.array(json.dumps(meta)), "alphas": job.alphas, "betas": job.betas,
           "coords": job.coords, "off_plane": job.off, "steps": np.asarray(job.run.steps)}
    for k, pairs in got.items():
        out[f"{k}_index"] = (np.concatenate([i for i, _ in pairs]).astype(np.int64) if pairs
                             else np.zeros(0, np.int64))
        out[f"{k}_loss"] = (np.concatenate([v for _, v in pairs]).astype(np.float64) if pairs
                            else np.zeros(0))
    return out


def save_tile(path: str | Path, tile: Mapping[str, np.ndarray]) -> None:
    from lossview.core.surface.cache import save

    if not save(Path(path), dict(tile)):
        raise LossviewError(f"cannot write {path}")


def load_tile(path: str | Path) -> dict[str, np.ndarray]:
    """A tile file's arrays, or a one-line LossviewError for anything else."""
    p = Path(path)
    if not p.is_file():
        raise LossviewError(f"tile file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays["tile_meta"]))
    except Exception:  # noqa: BLE001 - any unreadable file is the same one-line answer
        meta, arrays = {}, {}
    if meta.get("format") != TILE_FORMAT:
        raise LossviewError(f"{p} is not a lossview tile (written by lossview surface RUN "
                            "--tiles N --tile I --out FILE)")
    if meta.get("version") != TILE_VERSION:
        raise LossviewError(f"{p} is a tile of format version {meta.get('version')}; this "
                            f"lossview merges version {TILE_VERSION}: recompute it")
    return arrays


def tile_meta(tile: Mapping[str, np.ndarray]) -> dict:
    return json.loads(str(tile["tile_meta"]))


def _check_same(named: list[tuple[str, dict]]) -> None:
    (n0, m0) = named[0]
    for name, m in named[1:]:
        if m["key"] != m0["key"]:
            what = next((words for part, words in PARTS
                         if m["parts"].get(part) != m0["parts"].get(part)), "settings")
            raise LossviewError(f"{name} and {n0} are tiles of different surfaces "
                                f"(different {what}); merge the tiles of one job only")
        if m["n_tiles"] != m0["n_tiles"]:
            raise LossviewError(f"{name} is one of {m['n_tiles']} tiles, {n0} one of "
                                f"{m0['n_tiles']}; merge tiles cut the same way")
        if m["plan"] != m0["plan"]:
            raise LossviewError(
                f"{name} was planned in chunks of {m['plan']['chunk']} points on "
                f"{m['plan']['workers']} pipelines ({m['plan']['threads']} threads), {n0} in "
                f"chunks of {m0['plan']['chunk']} on {m0['plan']['workers']} "
                f"({m0['plan']['threads']} threads): compute every tile with the same thread "
                "count (OMP_NUM_THREADS)")


def merge_tiles(tiles: Mapping[str, Mapping[str, np.ndarray]]) -> RunSurface:
    """Join tiles (name -> arrays) into the RunSurface one process would have computed."""
    from lossview.core.surface.basin import flat_basin
    from lossview.core.surface.runsurface import constant_surface, run_tolerance

    if not tiles:
        raise LossviewError("no tiles to merge")
    named = [(str(n), tile_meta(t)) for n, t in tiles.items()]
    _check_same(named)
    meta = named[0][1]
    n = meta["n_tiles"]
    seen: dict[int, str] = {}
    for name, m in named:
        if m["tile"] in seen:
            raise LossviewError(f"tile {m['tile']} of {n} is given twice ({seen[m['tile']]}, {name})")
        seen[m["tile"]] = name
    missing = sorted(set(range(n)) - set(seen))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise LossviewError(f"{len(missing)} of {n} tiles missing: {shown}")
    first = next(iter(tiles.values()))
    alphas, betas, coords = first["alphas"], first["betas"], first["coords"]
    t = len(first["steps"])
    exp = meta["expect"]
    values = {"grid": np.full(exp["grid"], np.nan), "plane": np.full(t, np.nan),
              "true": np.full(t, np.nan)}
    count = {"grid": np.zeros(exp["grid"], int), "plane": np.zeros(t, int),
             "true": np.zeros(t, int)}
    for arrays in tiles.values():
        for k in values:
            idx = arrays[f"{k}_index"]
            np.add.at(count[k], idx, 1)
            values[k][idx] = arrays[f"{k}_loss"]
    want_true = np.zeros(t, int)
    want_true[exp["true"]] = 1
    want_plane = (np.arange(t) < exp["plane"]).astype(int)
    if (count["grid"] != 1).any() or (count["plane"] != want_plane).any() \
            or (count["true"] != want_true).any():
        raise LossviewError("the tiles do not cover the grid exactly once (damaged or "
                            "edited tile files?); recompute them")
    loss = values["grid"].reshape(len(alphas), len(betas))
    s = meta["surface"]
    tolerance = meta["tolerance"]
    if tolerance is None and meta["tolerance_start"] is not None:
        tolerance = run_tolerance(None, meta["tolerance_start"], values["true"])  # type: ignore[arg-type]
    mask, info = flat_basin(alphas, betas, loss, tolerance, coords)
    return RunSurface(alphas, betas, loss, coords, first["off_plane"], values["true"],
                      values["plane"], mask, info, s["plane"], tuple(s["explained"]), s["kind"],
                      first["steps"], s["bn_mode"], s["evaluation"], s["source"],
                      nonfinite=~np.isfinite(loss), skipped=list(s["skipped"]),
                      suspicious=constant_surface(loss), loss_note=s["loss_note"])


def save_to_run_cache(meta: dict, surface: RunSurface) -> Path | None:
    """Put a merged surface where ``surface_for_run`` looks for it (the app opens it), if
    the run is still there unchanged; the cache file's path, else None."""
    from lossview.core.io import open_run
    from lossview.core.surface import cache as _cache

    c = meta["cache"]
    if not Path(c["run"]).exists():
        return None
    try:
        run = open_run(c["run"])
    except LossviewError:
        return None
    if _cache.surface_key(run, **c["parts"]) != c["key"]:
        return None  # the run changed since the tiles were computed
    path = _cache.cache_path(run, c["key"])
    return path if _cache.save(path, replace(surface, cached=False).to_arrays()) else None

"""A run's surface computed as Ray tasks, one per tile (``lossview surface RUN --ray``).

::

    gen = ray_surface(run, "local", plane="pca", steps=41)   # or "ray://head:10001", "auto"
    for fraction in gen: ...                                  # a tile finished; gen.close() cancels
    # the RunSurface is the generator's return value, also saved in the run's cache

This process plans the job (:func:`~lossview.core.surface.tiles.surface_job`: plane, grid,
key) and answers from the run's cache when it can. Otherwise every task reopens the run
folder by its path, rebuilds the model and data itself (from the run's spec, the model
file or the Hugging Face folder and ``--data``), checks that it sees the same job (the
key), and computes its tile with this process's thread count and evaluation path, so the
merged surface is bit-identical to one process here. The run folder and files must be at
the same path on every node (a shared file system) and lossview installed there.

Ray is an optional extra (``pip install 'lossview[ray]'``), imported only here.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

from lossview.core.errors import LossviewError
from lossview.core.surface.results import RunSurface
from lossview.core.surface.tiles import PARTS, iter_tile, merge_tiles, pinned_path, surface_job

NEEDS_RAY = "needs ray: pip install 'lossview[ray]'"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise LossviewError(NEEDS_RAY) from None
    return ray


def tile_task(run_path: str, job_kwargs: dict, source_kwargs: dict, n_tiles: int, tile: int,
              key: str, parts: dict, threads: int) -> dict:
    """Body of one Ray task: reopen the run, rebuild the model source, compute one tile."""
    import socket

    import torch

    from lossview.core.io import open_run
    from lossview.core.surface.runsurface import run_to_end
    from lossview.core.surface.usermodel import model_source

    torch.set_num_threads(int(threads))
    run = open_run(run_path)
    job = surface_job(run, source=model_source(run, **source_kwargs), **job_kwargs)
    if job.key != key:
        what = next((words for part, words in PARTS if job.meta["parts"].get(part) != parts.get(part)),
                    "settings")
        raise LossviewError(f"the Ray worker on {socket.gethostname()} sees a different {what} "
                            "than this machine: every node needs the run folder, model file and "
                            "data at the same path (a shared file system) and the same lossview")
    return run_to_end(iter_tile(job, n_tiles, tile))


def connect(ray: Any, address: str) -> bool:
    """Connect to ``address`` (``"local"``: start a Ray instance here); True if this call
    started or joined Ray (and should shut it down), False if it was already running."""
    if ray.is_initialized():
        return False
    _reachable(address)
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise LossviewError(f"cannot start or reach Ray at {address!r}: {str(e).splitlines()[0]}") from None
    return True


def _reachable(address: str) -> None:
    """A ``HOST:PORT`` address that refuses connections is said at once (Ray itself retries
    for minutes); ``local``, ``auto`` and ``ray://`` addresses are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise LossviewError(f"cannot reach Ray at {address!r}: {e.strerror or e}; start it "
                            "with 'ray start --head' or use --ray local") from None


def _get(ray: Any, ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, LossviewError):
            raise LossviewError(str(cause).splitlines()[0]) from None
        raise LossviewError(f"a Ray task failed: {type(cause).__name__}: "
                            f"{str(cause).splitlines()[0] if str(cause) else ''}") from None


def _abs(p: Any) -> str | None:
    return None if p is None else str(Path(p).expanduser().resolve())


def ray_surface(run: Any, address: str, n_tiles: int | None = None, *,
                model_file: str | None = None, data: str | None = None,
                block_size: int | None = None, cache: bool = True, device: Any = None,
                **job_kwargs: Any) -> Generator[float, None, RunSurface]:
    """The surface of ``run`` as :func:`surface_for_run` computes it, its tiles run as Ray
    tasks at ``address``; yields the fraction of tiles done. ``n_tiles`` default: two per
    task slot of the cluster. ``job_kwargs``: :func:`surface_job`'s plane, steps, span..."""
    from lossview.core.surface import cache as _cache
    from lossview.core.surface.runsurface import cached_surface
    from lossview.core.surface.usermodel import model_source

    ray = import_ray()
    if n_tiles is not None and int(n_tiles) < 1:
        raise LossviewError(f"the number of tiles must be at least 1, not {n_tiles}")
    src = model_source(run, model_file, data=data, block_size=block_size)
    job = surface_job(run, source=src, device=device, **job_kwargs)
    path = _cache.cache_path(run, job.meta["cache"]["key"]) if cache else None
    result = cached_surface(path)
    if result is not None:
        yield 1.0
        return result
    threads = int(job.meta["plan"]["threads"])
    started = connect(ray, address)
    try:
        nodes = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        cpus = max(1, min(threads, int(max(nodes, default=1))))  # a task must fit a node
        if n_tiles is None:
            slots = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus)
            n_tiles = max(1, min(2 * slots, len(job.units)))
        n = int(n_tiles)
        remote = ray.remote(tile_task).options(num_cpus=cpus, max_retries=0)
        kwargs = dict(job_kwargs, path=pinned_path(job), device=device)
        sources = {"model_file": _abs(model_file), "data": _abs(data), "block_size": block_size}
        refs = {remote.remote(str(Path(run.path).resolve()), kwargs, sources, n, i, job.key,
                              job.meta["parts"], threads): i for i in range(n)}
        pending, tiles = list(refs), {}
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    tiles[f"tile {refs[ref]}"] = _get(ray, ref)
                yield len(tiles) / n
        finally:
            for ref in pending:  # cancelled (gen.close(), Ctrl-C) or failed
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()
    surface = merge_tiles(tiles)
    if cache:
        _cache.save(path, surface.to_arrays())
    return surface

"""``lossview surface RUN``: the loss surface on a plane through a run's trajectory.

Examples::

    lossview surface runs/mlp                              # PCA plane, 41 x 41
    lossview surface runs/mlp --plane post-plateau --out s.npz
    lossview surface runs/mlp --plane snapshots 0 10 20 --steps 61
    lossview surface runs/mlp --plane line 0 -1
    lossview surface ckpts/ --model mymodel.py             # foreign folder: runs mymodel.py
    lossview surface hf_out/ --data text.txt               # Hugging Face folder: no code
    lossview surface runs/mlp --tiles 8 --tile 3 --out tiles/3.npz   # one tile (SLURM array)
    lossview surface --merge tiles/*.npz --out surface.npz           # join the tiles
    lossview surface runs/mlp --ray local                  # tiles as Ray tasks (lossview[ray])
    lossview surface runs/mlp --device cuda --precision bf16   # faster, error measured
"""

from __future__ import annotations

import argparse
import sys

PLANES = ("pca", "post-plateau", "random", "snapshots", "line")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "surface", help="loss surface on a plane through the trajectory (writes .npz)",
        description="Evaluate the loss exactly on a grid of a plane through a run's weight "
                    "trajectory, place every snapshot on it and report how honest the plane "
                    "is (true loss vs the surface's loss at each projected snapshot).")
    p.add_argument("path", metavar="RUN", nargs="?",
                   help="run folder or checkpoint file (not with --merge)")
    p.add_argument("--plane", nargs="+", default=["pca"], metavar="KIND",
                   help="pca | post-plateau | random | snapshots A B C | line A B "
                        "(A, B, C: snapshot indices, negative from the end)")
    p.add_argument("--steps", type=int, default=41, help="grid points per axis (default 41)")
    p.add_argument("--span", type=float, default=None,
                   help="axes from -SPAN to SPAN (default: the trajectory plus 15%%)")
    p.add_argument("--center", type=int, default=None, help="snapshot the pca/random plane goes through")
    p.add_argument("--start", type=int, default=None,
                   help="first snapshot of the post-plateau plane (default: the detected plateau)")
    p.add_argument("--model", metavar="FILE.py",
                   help="for foreign folders: Python file defining build_model(), batches() and "
                        "optionally loss_fn() (THIS RUNS YOUR CODE)")
    add_data_arguments(p)
    p.add_argument("--bn", choices=("eval", "recompute"), default="eval",
                   help="BatchNorm: running statistics (eval, default) or recomputed per point (slow)")
    p.add_argument("--precision", default="float32", metavar="P",
                   help="float32 (default, exact) | tf32 (CUDA matmuls; float32 on a CPU) | "
                        "bf16 (model and data in bfloat16): the max error against float32 "
                        "on a 5x5 sub-grid is measured and reported")
    p.add_argument("--tolerance", type=float, default=None, help="flat-basin loss tolerance")
    p.add_argument("--seed", type=int, default=0, help="seed of the random plane")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--out", metavar="FILE.npz", help="write the surface and trajectory arrays")
    g = p.add_argument_group("tiles and clusters (docs/surface.md, 'Surfaces on a cluster')")
    g.add_argument("--tiles", type=int, metavar="N",
                   help="cut the grid into N tiles: with --tile I compute one of them; with "
                        "--ray, the number of Ray tasks (default: two per task slot)")
    g.add_argument("--tile", type=int, metavar="I", help="compute tile I (0..N-1) into --out")
    g.add_argument("--merge", nargs="+", metavar="TILE.npz",
                   help="join tile files into one surface (bit-identical to one process)")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="fan the tiles out as Ray tasks: 'local' starts a local Ray "
                        "instance, else a cluster address (needs lossview[ray])")


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """``--data FILE`` and ``--block-size N`` (Hugging Face folders; also ``analyze``)."""
    p.add_argument("--data", metavar="FILE",
                   help="for Hugging Face folders (config.json) without --model: plain text "
                        "(language models) or JSON lines with \"text\" and \"label\" "
                        "(classifiers), tokenized with the folder's tokenizer; no code is run")
    p.add_argument("--block-size", type=int, default=None, metavar="N",
                   help="tokens per block/text with --data (default min(128, the model's positions))")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="where the model runs: auto (a CUDA device when there is one), cpu, "
                        "cuda or cuda:I (default: cpu); float32 results equal the CPU's to rounding")


def _parse_plane(values: list[str]) -> tuple[str, list[int] | None]:
    from lossview.core.errors import LossviewError

    kind, rest = values[0], values[1:]
    if kind not in PLANES:
        raise LossviewError(f"unknown plane {kind!r}; choose one of {', '.join(PLANES)}")
    need = {"snapshots": 3, "line": 2}.get(kind, 0)
    if len(rest) != need:
        raise LossviewError(f"--plane {kind} takes {need} snapshot indices, got {len(rest)}")
    try:
        return kind, [int(v) for v in rest] or None
    except ValueError:
        raise LossviewError(f"snapshot indices must be integers, got {' '.join(rest)}") from None


def _plateau_index(run) -> int:
    from lossview.core.analysis.plateau import find_plateau
    from lossview.core.errors import LossviewError

    info = find_plateau(run.metric("loss", "train_loss"))
    if info.get("step") is None:
        raise LossviewError("no plateau found in the logged loss "
                            f"({info.get('reason', 'unknown')}); pass --start INDEX")
    return run.index_of_step(int(info["step"]))


def _bar(fraction: float) -> None:
    n = int(fraction * 30)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (30 - n)}] {fraction:4.0%}")
    sys.stderr.flush()


def _drive(gen):
    """Exhaust a progress generator (a bar on a terminal); closing it on Ctrl-C cancels."""
    tty = sys.stderr.isatty()
    try:
        while True:
            try:
                prog = next(gen)
            except StopIteration as stop:
                return stop.value
            if tty:
                _bar(float(getattr(prog, "fraction", prog)))
    finally:
        gen.close()
        if tty:
            sys.stderr.write("\n")


def _check_tile_args(args: argparse.Namespace) -> None:
    from lossview.core.errors import LossviewError

    if args.merge:
        if args.path or args.tiles is not None or args.tile is not None or args.ray:
            raise LossviewError("--merge takes tile files only (no RUN, --tiles, --tile or --ray)")
        return
    if not args.path:
        raise LossviewError("name a RUN folder (or join tile files with --merge TILE.npz ...)")
    if args.tiles is not None and args.tiles < 1:
        raise LossviewError(f"--tiles must be at least 1, not {args.tiles}")
    if args.tile is not None:
        if args.ray:
            raise LossviewError("--tile computes one tile here; --ray computes them all")
        if args.tiles is None or not args.out:
            raise LossviewError("--tile I needs --tiles N and --out TILE.npz")
        if not 0 <= args.tile < args.tiles:
            raise LossviewError(f"--tile must be between 0 and {args.tiles - 1}, not {args.tile}")
    elif args.tiles is not None and not args.ray:
        raise LossviewError("--tiles N needs --tile I (one tile) or --ray ADDRESS (all of them)")


def _job_kwargs(args: argparse.Namespace, kind: str, snaps, start) -> dict:
    return dict(plane=kind, steps=args.steps, span=args.span, center_index=args.center,  # noqa: C408
                start_index=start, snapshots=snaps, bn_mode=args.bn, tolerance=args.tolerance,
                seed=args.seed)


def _merge(args: argparse.Namespace) -> int:
    from lossview.core.surface.tiles import load_tile, merge_tiles, save_to_run_cache, tile_meta

    tiles = {name: load_tile(name) for name in args.merge}
    s = merge_tiles(tiles)
    meta = tile_meta(next(iter(tiles.values())))
    _report(s, meta.get("opened_as") or "", args.out)
    if not args.no_cache:
        where = save_to_run_cache(meta, s)
        print(f"saved in the run's cache: {where}" if where else
              "not saved in the run's cache (the run is not here or changed since)")
    return 0


def _one_tile(args: argparse.Namespace, r, src, job_kwargs: dict) -> int:
    from lossview.core.surface.tiles import iter_tile, save_tile, surface_job

    job = surface_job(r, source=src, device=getattr(args, "device", None), **job_kwargs)
    tile = _drive(iter_tile(job, args.tiles, args.tile))
    save_tile(args.out, tile)
    print(f"tile {args.tile} of {args.tiles}: {len(tile['grid_index'])} of "
          f"{len(job.alphas) * len(job.betas)} grid points, {len(tile['plane_index'])} + "
          f"{len(tile['true_index'])} snapshot losses; {job.meta['surface']['evaluation']}, "
          f"{job.meta['plan']['threads']} threads; key {job.key}")
    print(f"wrote {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    from lossview.core.errors import LossviewError
    from lossview.core.io import open_run
    from lossview.core.surface.runsurface import surface_for_run
    from lossview.core.surface.usermodel import model_source

    _check_tile_args(args)
    if args.merge:
        return _merge(args)
    kind, snaps = _parse_plane(args.plane)
    if args.steps < 2 or args.steps > 1001:
        raise LossviewError("--steps must be between 2 and 1001")
    _check_precision(args)
    r = open_run(args.path)
    if args.model:
        print(f"lossview surface: running your model file {args.model}", file=sys.stderr)
    start = args.start
    if kind == "post-plateau" and start is None:
        start = _plateau_index(r)
    if args.ray:
        from lossview.core.surface.ray_tiles import ray_surface

        s = _drive(ray_surface(r, args.ray, args.tiles, model_file=args.model, data=args.data,
                               block_size=args.block_size, cache=not args.no_cache,
                               device=getattr(args, "device", None),
                               **_job_kwargs(args, kind, snaps, start)))
        return _report(s, r.spec.get("opened_as") or f"opened as {r.format}", args.out)
    src = model_source(r, args.model, data=args.data, block_size=args.block_size)
    if args.tile is not None:
        return _one_tile(args, r, src, _job_kwargs(args, kind, snaps, start))
    _precision_note(args.precision, args.device, src.model)
    s = _drive(surface_for_run(r, plane=kind, steps=args.steps, span=args.span, source=src,
                               center_index=args.center, start_index=start, snapshots=snaps,
                               bn_mode=args.bn, cache=not args.no_cache,
                               tolerance=args.tolerance, seed=args.seed, device=args.device,
                               precision=args.precision))
    return _report(s, r.spec.get("opened_as") or f"opened as {r.format}", args.out)


def _check_precision(args: argparse.Namespace) -> None:
    """A known ``--precision``; a reduced one only for a surface computed here."""
    from lossview.core.errors import LossviewError
    from lossview.core.surface.precision import check_precision

    if check_precision(args.precision) != "float32" and (args.tiles is not None or args.ray):
        raise LossviewError(f"--precision {args.precision} is for a surface computed in one "
                            "process; tiles and Ray compute float32")


def _precision_note(precision: str, device, model) -> None:
    """One line on stderr when the precision asked for does not apply (tf32 off CUDA)."""
    from lossview.core.surface.loop import resolve_device
    from lossview.core.surface.precision import effective_precision

    _, note = effective_precision(precision, resolve_device(
        device, getattr(next(model.parameters(), None), "device", "cpu")))
    if note:
        print(f"lossview surface: note: {note}", file=sys.stderr)


def _report(s, head: str, out: str | None) -> int:
    """Print the surface's summary (what the loader read first), write ``out`` if asked."""
    import numpy as np

    from lossview.core.errors import LossviewError

    gap = np.abs(s.true_loss - s.surface_loss)
    gap = gap[np.isfinite(gap)]
    fin = s.loss[np.isfinite(s.loss)]
    ex = "" if s.explained is None else ", ".join(f"{x:.1%}" for x in s.explained)
    lines = [
        head,  # what the loader read and skipped
        f"{s.plane}" + (f"  (variance captured per axis: {ex})" if ex else ""),
        f"grid {len(s.alphas)} x {len(s.betas)}, alpha {s.alphas[0]:.4g}..{s.alphas[-1]:.4g}"
        + (f", beta {s.betas[0]:.4g}..{s.betas[-1]:.4g}" if len(s.betas) > 1 else "")
        + (f"; loss {fin.min():.4g}..{fin.max():.4g}" if len(fin) else "; no finite loss")
        + f"; BatchNorm {s.bn_mode}; {s.evaluation}{' (cached)' if s.cached else ''}",
    ]
    if getattr(s, "precision", None):
        from lossview.core.surface.precision import error_text

        lines.append(error_text(s.precision))
    lines += [t for t in (s.skipped_text(), s.nonfinite_text()) if t]
    if s.loss_note:
        lines.append(s.loss_note)
    lines += [
        (f"honesty: |true - surface| loss at the snapshots: median {np.median(gap):.3g}, "
         f"max {gap.max():.3g}; distance off the plane: max {np.nanmax(s.off_plane):.3g}")
        if len(gap) else "honesty: no snapshot has a finite true and surface loss",
        f"flat basin (tolerance {s.basin['tolerance']:.3g}): width {s.basin['width_alpha']:.3g}"
        + (f" x {s.basin['width_beta']:.3g}" if len(s.betas) > 1 else "")
        + f"; {sum(s.basin['inside'])} of {len(s.true_loss)} snapshots inside",
    ]
    if s.suspicious:
        lines.append(f"suspicious: {s.suspicious}")
    print("\n".join(line for line in lines if line))
    if out:
        from pathlib import Path

        from lossview.core.surface.cache import save

        if not save(Path(out), s.to_arrays()):
            raise LossviewError(f"cannot write {out}")
        print(f"wrote {out}")
    return 0

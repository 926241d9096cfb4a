"""The MLP fast path of an earlier commit against the working tree's, side by side.

Run:  python benchmarks/bench_surface_ab.py REV [--pairs 8] [--no-numba]

The medium case's 41 x 41 grid (issue 21 item 7) evaluated by `PlaneEvaluator` on its
pipelines, alternating: the fast path (`lossview/core/surface/fastpath.py`) as it was at
git revision REV, then as it is now, so both see the same load of a shared machine; the
rest of lossview is the working tree's. The working tree's side runs with the numba
kernels loaded (`fastkernels.preload()`: a process's steady state; `--no-numba`: torch's
operations), REV's side without them (a fast path from before them takes no kernels).
Prints medians, fastest runs, the % of the matmul
peak (performed FLOPs, as bench_surface counts them) and the largest difference between
the two surfaces.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _cases import matmul_peak, medium_case
from bench_surface import medium_flops

import lossview.core.surface.evaluate as evaluate
import lossview.core.surface.fastpath as fastpath
from lossview.core.surface import fastkernels
from lossview.core.surface.directions import random_plane


def fastpath_at(rev: str) -> types.ModuleType:
    root = Path(__file__).resolve().parent.parent
    src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:lossview/core/surface/fastpath.py"],
                         capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType(f"fastpath_{rev}")
    exec(compile(src, f"fastpath@{rev}", "exec"), mod.__dict__)
    if "kernels: Any = None" not in src:  # from before the numba kernels: loss_sum takes none
        class Tail(mod.MLPTail):
            def loss_sum(self, *args, kernels=None):
                return super().loss_sum(*args[:8])

        mod.MLPTail = Tail
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rev")
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--no-numba", action="store_true")
    args = ap.parse_args()
    kernels = None if args.no_numba else fastkernels.preload()
    fastkernels._state["forgone"] = -1e18  # never loaded by the rule in between
    old = fastpath_at(args.rev)
    model, loss_fn, x, y = medium_case()
    d1, d2 = random_plane({n: p.detach() for n, p in model.named_parameters()}, 0, "filter", False)
    grid = np.linspace(-1, 1, 41)
    pts = np.array([(a, b) for a in grid for b in grid])
    peak = matmul_peak()
    times: dict[str, list[float]] = {args.rev: [], "now": []}
    out = {}
    for _ in range(args.pairs):
        for name, mod in ((args.rev, old), ("now", fastpath)):
            evaluate.MLPTail = mod.MLPTail
            fastkernels._state["module"] = kernels if mod is fastpath else None
            ev = evaluate.PlaneEvaluator(model, loss_fn, (x, y), None, d1, d2)
            if mod is not fastpath:  # REV's MLPTail knows no kernels
                ev._numba_pin = ev._numba = False
            t = time.perf_counter()
            out[name] = ev.losses(pts)
            times[name].append(time.perf_counter() - t)
    evaluate.MLPTail = fastpath.MLPTail
    peak = max(peak, matmul_peak())
    flops = medium_flops(41, len(x))[0]
    for name, ts in times.items():
        med, best = statistics.median(ts), min(ts)
        print(f"{name}: median {med:.3f} s ({flops / med / 1e9 / peak:.0%} of the {peak:.0f} "
              f"GFLOP/s peak), fastest {best:.3f} s ({flops / best / 1e9 / peak:.0%})")
    pairs = [a / b for a, b in zip(times[args.rev], times["now"])]
    diff = np.max(np.abs(out["now"] - out[args.rev]) / np.abs(out[args.rev]))
    print(f"{args.rev} / now: {statistics.median(pairs):.2f}x (median of {args.pairs} pairs); "
          f"largest relative difference of the surfaces {diff:.1e}")


if __name__ == "__main__":
    main()

"""The MLP fast path's numba kernels, each alone and together, against torch's operations.

Run:  python benchmarks/bench_surface_numba.py [--rounds 5]

The medium case's 41 x 41 grid (issue 21 item 7) evaluated by `PlaneEvaluator` in one
process, alternating the four settings every round (torch's operations only; the
combination kernel alone; the cross-entropy kernel alone; both), on the pipelines of
torch's default thread count and then on one thread. Prints medians, fastest runs, the %
of the matmul peak (performed FLOPs, as bench_surface counts them; peak measured before
and after in this process, the better kept), the largest difference between the settings'
surfaces, and the one-time price of the kernels in a fresh process (numba import and first
calls, machine code cached on disk, then into an empty cache: compiling).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _cases import matmul_peak, medium_case
from bench_surface import medium_flops

from lossview.core.surface import fastkernels
from lossview.core.surface.directions import random_plane
from lossview.core.surface.evaluate import PlaneEvaluator

SETTINGS = {"torch": None, "combine": {"combine"}, "ce": {"ce"}, "both": {"combine", "ce"}}

FIRST = ("import time; t = time.perf_counter(); "
         "from lossview.core.surface import fastkernels; "
         "assert fastkernels.preload() is not None; print(time.perf_counter() - t)")


def fresh_process_cost(cache_dir: str | None = None) -> float:
    env = dict(os.environ)
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", FIRST], capture_output=True, text=True,
                         check=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    return float(out.stdout.strip())


def grid_times(ev, pts, rounds):
    times = {k: [] for k in SETTINGS}
    surf = {}
    kernels = fastkernels.preload()
    for _ in range(rounds):
        for name, which in SETTINGS.items():
            fastkernels._state["module"] = kernels if which else None
            fastkernels._state["forgone"] = -1e18  # torch: never loads in between
            if which:
                fastkernels.KERNELS = which
            ev._numba = None  # decided again (once per evaluator otherwise)
            t = time.perf_counter()
            surf[name] = ev.losses(pts)
            times[name].append(time.perf_counter() - t)
            assert (ev._kernels is not None) == bool(which)
    fastkernels._state["module"] = kernels
    fastkernels.KERNELS = {"combine", "ce"}
    return times, surf


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    warm = [fresh_process_cost() for _ in range(3)]
    with tempfile.TemporaryDirectory() as d:
        cold = fresh_process_cost(d)
    model, loss_fn, x, y = medium_case()
    d1, d2 = random_plane({n: p.detach() for n, p in model.named_parameters()}, 0, "filter", False)
    grid = np.linspace(-1, 1, 41)
    pts = np.array([(a, b) for a in grid for b in grid])
    ev = PlaneEvaluator(model, loss_fn, (x, y), None, d1, d2)
    ev.losses(pts[:64])
    load = os.getloadavg()[0]
    peak = matmul_peak()
    flops = medium_flops(41, len(x))[0]
    results = {}
    saved = torch.get_num_threads()
    for threads in (saved, 1):
        torch.set_num_threads(threads)
        results[threads] = grid_times(ev, pts, args.rounds)
    torch.set_num_threads(saved)
    peak = max(peak, matmul_peak())
    print(f"peak {peak:.0f} GFLOP/s (2048^3, torch's {saved} threads); load {load:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; {args.rounds} rounds, settings alternating")
    for threads, (times, surf) in results.items():
        base = statistics.median(times["torch"])
        share = peak * threads / saved  # one thread: its share of the peak
        print(f"\n{threads} thread(s) ({'2 pipelines' if threads > 1 else '1 pipeline'}): "
              f"% of {share:.0f} GFLOP/s")
        for name, ts in times.items():
            med, best = statistics.median(ts), min(ts)
            pairs = statistics.median(a / b for a, b in zip(times["torch"], ts))
            diff = np.max(np.abs(surf[name] - surf["torch"]) / np.abs(surf["torch"]))
            print(f"  {name:8s} median {med:.3f} s ({flops / med / 1e9 / share:.0%}), fastest "
                  f"{best:.3f} s ({flops / best / 1e9 / share:.0%}); torch / this "
                  f"{base / med:.3f}x (median of pairs {pairs:.3f}x); max rel. diff {diff:.1e}")
    print(f"\nfresh process, numba import + first calls: {statistics.median(warm):.2f} s "
          f"(cached machine code; runs {', '.join(f'{t:.2f}' for t in warm)}), "
          f"{cold:.2f} s into an empty cache (compiling)")


if __name__ == "__main__":
    main()

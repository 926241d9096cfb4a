"""Streaming PCA of a run on disk: lossview against scikit-learn's PCA on the matrix in memory.

    python benchmarks/bench_pca.py                       # 500 x 1M float32 (2 GB matrix)
    python benchmarks/bench_pca.py --n 50 --params 100000  # quick check

Writes a native lossview run (``RunWriter``, float32 safetensors) holding a random walk of
``--n`` snapshots of ``--params`` parameters, then measures, each in a fresh child process
(so that the peak memory belongs to one measurement only):

* ``lossview``: ``open_run`` + centred Gram matrix streamed in column blocks + eigh
  (``lossview.core.analysis.pca``), exact; explained-variance ratios of 10 components;
* ``sklearn-full fit``: ``sklearn.decomposition.PCA(10, svd_solver="full")`` (exact, the same
  answer) fitted on the float32 matrix already in memory (fit timed alone);
* ``sklearn-full load+fit``: the same, timing also reading every snapshot into the matrix;
* ``sklearn-auto fit`` / ``load+fit``: scikit-learn's default solver (randomized SVD for
  this shape, approximate).

lossview and sklearn-auto run ``--repeat`` times, alternating, and the best time of each is
kept (the machine may be shared); the exact sklearn solver runs once.

Peak memory is the child's peak resident set size minus its size after imports (for the
fit-only rows the matrix load is excluded from the time but not from the memory). The run
is written just before, so every side reads from a warm page cache. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _shapes(n_params: int) -> dict[str, tuple[int, ...]]:
    """Two Linear layers (weight + bias) with about ``n_params`` parameters."""
    hidden = max(n_params // 1000, 1)
    first = hidden * 768
    rest = max(n_params - first - hidden, 1)
    out = max(rest // (hidden + 1), 1)
    return {"l1.weight": (hidden, 768), "l1.bias": (hidden,), "l2.weight": (out, hidden), "l2.bias": (out,)}


def write_run(path: Path, n: int, n_params: int, seed: int = 0) -> int:
    from lossview.core.io import RunWriter

    shapes = _shapes(n_params)
    rng = np.random.default_rng(seed)
    w = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    with RunWriter(path, overwrite=True) as wr:
        for i in range(n):
            wr.snapshot(i * 10, w)
            w = {k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in w.items()}
    return sum(int(np.prod(s)) for s in shapes.values())


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _load_matrix(run) -> np.ndarray:
    x = np.empty((len(run), run.n_params), dtype=np.float32)
    for i in range(len(run)):
        x[i] = run.vector(i, dtype=np.float32)
    return x


def child(method: str, path: str) -> dict:
    from sklearn.decomposition import PCA

    from lossview.core.analysis.gram import centred_gram
    from lossview.core.analysis.pca import pca_from_gram
    from lossview.core.io import open_run

    base = _rss_mb()
    t0 = time.perf_counter()
    run = open_run(path)
    if method == "lossview":
        res = pca_from_gram(centred_gram(run), k=10)
        ratios = res.explained_variance_ratio
        t_load, t_fit = 0.0, time.perf_counter() - t0
    else:
        x = _load_matrix(run)
        t1 = time.perf_counter()
        solver = "full" if method == "sklearn-full" else "auto"
        ratios = PCA(n_components=10, svd_solver=solver, random_state=0).fit(x).explained_variance_ratio_
        t_load, t_fit = t1 - t0, time.perf_counter() - t1
    return {"method": method, "load_s": t_load, "fit_s": t_fit, "total_s": t_load + t_fit,
            "peak_mb": _peak_mb() - base, "ratios": [float(r) for r in ratios]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="snapshots")
    ap.add_argument("--params", type=int, default=1_000_000, help="parameters per snapshot")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the run")
    ap.add_argument("--keep", action="store_true", help="keep the run folder")
    ap.add_argument("--repeat", type=int, default=2, help="runs of lossview and sklearn-auto (best kept)")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    root = Path(args.dir or tempfile.mkdtemp(prefix="lossview-bench-pca-"))
    path = root / "run"
    try:
        t0 = time.perf_counter()
        d = write_run(path, args.n, args.params)
        matrix_mb = args.n * d * 4 / 2**20
        print(f"wrote {args.n} snapshots x {d:,} float32 parameters ({matrix_mb:,.0f} MB matrix) "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        results: dict[str, dict] = {}
        load0 = os.getloadavg()[0]
        # lossview and sklearn-auto alternate, twice each (best kept: the machine may be
        # shared); the exact sklearn solver, much slower, runs once
        order = ["lossview", "sklearn-auto"] * args.repeat + ["sklearn-full"]
        for method in order:
            out = subprocess.run([sys.executable, __file__, "--child", method, str(path)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{method}: {r['total_s']:.1f} s", file=sys.stderr)
            if method not in results or r["total_s"] < results[method]["total_s"]:
                results[method] = r
        load1 = os.getloadavg()[0]
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    lv = results["lossview"]
    ref = np.array(results["sklearn-full"]["ratios"])
    print(f"\n{args.n} snapshots x {d:,} parameters, float32 matrix {matrix_mb:,.0f} MB; "
          f"times in seconds (best of {args.repeat} for lossview and sklearn-auto), peak = resident "
          f"memory above the child's baseline; {os.cpu_count()} CPUs, load average "
          f"{load0:.1f} at start, {load1:.1f} at end\n")
    print("| method | time (s) | time / lossview time | peak memory (MB) | peak / matrix "
          "| max rel. diff of 10 ratios vs sklearn-full |")
    print("|---|---|---|---|---|---|")
    rows = [("lossview streaming (open + read + Gram + eigh)", lv["total_s"], lv)]
    for m in ("sklearn-full", "sklearn-auto"):
        r = results[m]
        rows.append((f"{m} fit only (matrix in memory)", r["fit_s"], r))
        rows.append((f"{m} load + fit", r["total_s"], r))
    for name, t, r in rows:
        diff = float(np.max(np.abs(np.array(r["ratios"]) - ref) / ref))
        print(f"| {name} | {t:.1f} | {t / lv['total_s']:.2f}x | {r['peak_mb']:,.0f} | "
              f"{r['peak_mb'] / matrix_mb:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()

"""Opening a run of 1,000 snapshots of a 1M-parameter model: lossview against naive loading.

    python benchmarks/bench_open.py                 # 1,000 x 1M float32 (~4 GB per format)
    python benchmarks/bench_open.py --n 100 --keep  # smaller, keep the folders

Writes a native lossview run (``RunWriter``) and a folder of ``torch.save`` state_dicts of
the same weights, then measures, each in a fresh child process (so peak RSS belongs to
one measurement only):

* lossview ``open_run`` on each folder (reads headers only; median of 3 opens),
* lossview ``open_run`` + one streaming pass over every snapshot (``distances``),
* lossview ``open_run`` + reading every snapshot into one reused flat vector
  (``Run.vector(i, out=buf)``, no analysis): the I/O floor of a streaming pass,
* the peer: what a script without lossview does, loading every snapshot into a list with
  ``safetensors.numpy.load_file`` or ``torch.load(weights_only=True)``.

The folders are written just before, so every side reads from a warm page cache; that
favours the peers (cold reads of 4 GB would make them slower still). Results are printed
as a Markdown table; the folders are deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPES = {"l1.weight": (1024, 768), "l1.bias": (1024,), "l2.weight": (208, 1024), "l2.bias": (208,)}


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write(root: Path, n: int, seed: int = 0) -> dict:
    import torch

    from lossview.core.io import RunWriter

    rng = np.random.default_rng(seed)
    w = {k: rng.normal(scale=0.05, size=s).astype(np.float32) for k, s in SHAPES.items()}
    native, tdir = root / "native", root / "torch"
    tdir.mkdir(parents=True)
    t0 = time.perf_counter()
    with RunWriter(native, spec={"name": "bench"}) as wr:
        for i in range(n):
            step = 10 * i
            wr.log(step, loss=1.0 / (i + 1))
            wr.snapshot(step, w)
            torch.save({k: torch.from_numpy(v) for k, v in w.items()}, tdir / f"model_{step}.pt")
            for v in w.values():  # a random walk, in place
                v += rng.normal(scale=1e-3, size=v.shape).astype(np.float32)
    return {"write_s": time.perf_counter() - t0,
            "bytes": sum(f.stat().st_size for f in root.rglob("*") if f.is_file())}


def measure(side: str, root: Path) -> dict:
    """One measurement in this (fresh) process."""
    import torch  # imported before the baseline: every side pays for it (torch.load uses it)
    from safetensors.numpy import load_file

    from lossview.core.analysis.distances import distances
    from lossview.core.io import open_run

    base_rss, base_peak = _rss_mb(), _peak_mb()
    native, tdir = root / "native", root / "torch"
    out: dict = {"side": side}
    if side.startswith("lossview-open"):
        folder = native if side.endswith("native") else tdir
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            run = open_run(folder)
            times.append(time.perf_counter() - t0)
            out["n"], out["n_params"] = len(run), run.n_params
        out["seconds"] = statistics.median(times)
    elif side.startswith("lossview-stream"):
        folder = native if side.endswith("native") else tdir
        t0 = time.perf_counter()
        run = open_run(folder)
        d = distances(run)
        out["seconds"] = time.perf_counter() - t0
        out["n"], out["path_length"] = len(run), d.path_length
    elif side.startswith("lossview-read"):
        folder = native if side.endswith("native") else tdir
        t0 = time.perf_counter()
        run = open_run(folder)
        buf = np.empty(run.n_params, dtype=run.float_dtype)
        for i in range(len(run)):
            run.vector(i, out=buf)
        out["seconds"] = time.perf_counter() - t0
        out["n"] = len(run)
    elif side == "peer-safetensors-list":
        t0 = time.perf_counter()
        snaps = [load_file(str(f)) for f in sorted((native / "checkpoints").glob("*.safetensors"))]
        out["seconds"] = time.perf_counter() - t0
        out["n"] = len(snaps)
    elif side == "peer-torch-list":
        t0 = time.perf_counter()
        snaps = [torch.load(f, map_location="cpu", weights_only=True)
                 for f in sorted(tdir.glob("*.pt"))]
        out["seconds"] = time.perf_counter() - t0
        out["n"] = len(snaps)
    else:
        raise SystemExit(f"unknown side {side}")
    out["peak_rss_mb"] = _peak_mb()
    out["rss_growth_mb"] = max(_peak_mb() - max(base_peak, base_rss), 0.0)
    return out


SIDES = ("lossview-open-native", "peer-safetensors-list", "lossview-read-native",
         "lossview-stream-native", "lossview-open-torch", "peer-torch-list",
         "lossview-read-torch", "lossview-stream-torch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="snapshots (default 1000)")
    ap.add_argument("--dir", type=Path, help="where to write (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the folders afterwards")
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.dir)))
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="lossview-bench-"))
    try:
        info = write(root, args.n)
        print(f"wrote {args.n} snapshots x {sum(np.prod(s) for s in SHAPES.values()):,} float32 "
              f"parameters in 2 formats: {info['bytes'] / 2**30:.2f} GiB in {info['write_s']:.0f} s",
              flush=True)
        results = {}
        load0 = os.getloadavg()[0]
        for side in SIDES:
            proc = subprocess.run([sys.executable, __file__, "--measure", side, "--dir", str(root)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            results[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            r = results[side]
            print(f"{side:26s} {r['seconds']:8.3f} s  peak RSS {r['peak_rss_mb']:8.0f} MiB  "
                  f"(+{r['rss_growth_mb']:.0f} MiB over the interpreter)", flush=True)
        print(f"\n{os.cpu_count()} CPUs, load average {load0:.1f} at start, "
              f"{os.getloadavg()[0]:.1f} at end\n")
        print("| what | time | peak RSS | RSS growth |")
        print("|---|---:|---:|---:|")
        for side, r in results.items():
            print(f"| {side} | {r['seconds']:.3f} s | {r['peak_rss_mb']:.0f} MiB | "
                  f"{r['rss_growth_mb']:.0f} MiB |")
        for fmt, peer in (("native", "peer-safetensors-list"), ("torch", "peer-torch-list")):
            a, b = results[f"lossview-open-{fmt}"], results[peer]
            print(f"\n{fmt}: open_run is {b['seconds'] / a['seconds']:.0f}x faster than {peer} "
                  f"and grows RSS by {a['rss_growth_mb']:.0f} MiB against {b['rss_growth_mb']:.0f} MiB")
            r, s_ = results[f"lossview-read-{fmt}"], results[f"lossview-stream-{fmt}"]
            print(f"{fmt}: the streaming pass takes {s_['seconds'] / r['seconds']:.1f}x the bare read "
                  f"({1e3 * s_['seconds'] / s_['n']:.1f} ms against {1e3 * r['seconds'] / r['n']:.1f} ms "
                  f"per snapshot)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Surface precision: float32 against bf16 (and tf32 where CUDA is present), same run,
same grid, one process (issue 21 item 2).

Run:  python benchmarks/bench_precision.py [--steps 21] [--repeats 3] [--device cpu]

For the built-in MLP (64-32-32-10) and CNN (8/16 channels) on the 8x8 digits, each trained
briefly into a run folder, ``surface_for_run`` is timed in float32 and in each reduced
precision, runs interleaved (float32, bf16, float32, ...) so both see the same machine
load; medians are reported, with the ratio float32 / reduced (above 1: the reduced
precision is faster) and the max error the reduced surface measured against float32 on
its 5x5 sub-grid (and, here, against the whole float32 grid). The reduced runs include
their float32 sub-grid check.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lossview.cli import main as cli
from lossview.core.io import open_run
from lossview.core.surface.runsurface import run_to_end, surface_for_run


def timed(run, steps, device, precision):
    t = time.perf_counter()
    s = run_to_end(surface_for_run(run, steps=steps, cache=False, device=device,
                                   precision=precision))
    return time.perf_counter() - t, s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=21)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    precisions = ["bf16"] + (["tf32"] if torch.device(a.device).type == "cuda" else [])
    print(f"### Surface precision ({platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}, device {a.device}, {torch.get_num_threads()} threads, "
          f"{a.steps}x{a.steps} grid, median of {a.repeats})\n")
    print("| run | precision | path | float32 s | reduced s | float32/reduced | "
          "sub-grid max abs / rel error | whole-grid max rel error |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for problem in ("mlp", "cnn"):
            d = Path(tmp) / problem
            with contextlib.redirect_stdout(io.StringIO()):
                assert cli(["train", problem, "--steps", "200", "--every", "20", "--out",
                            str(d), "--quiet"]) == 0
            run = open_run(d)
            for p in precisions:
                timed(run, 3, a.device, "float32")  # warm-up of both (first-call set-up)
                timed(run, 3, a.device, p)
                t32, tp = [], []
                for _ in range(a.repeats):
                    t, s32 = timed(run, a.steps, a.device, "float32")
                    t32.append(t)
                    t, sp = timed(run, a.steps, a.device, p)
                    tp.append(t)
                m32, mp = statistics.median(t32), statistics.median(tp)
                whole = float(np.max(np.abs(sp.loss - s32.loss) / np.abs(s32.loss)))
                e = sp.precision
                print(f"| {problem} | {p} | {sp.evaluation} | {m32:.3f} | {mp:.3f} | "
                      f"{m32 / mp:.2f}x | {e['max_abs_error']:.3g} / {e['max_rel_error']:.3g} | "
                      f"{whole:.3g} |")


if __name__ == "__main__":
    main()

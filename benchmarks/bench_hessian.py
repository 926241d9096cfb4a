"""Top Hessian eigenvalue: lossview.sharpness vs PyHessian (issue 5, case d).

Run:  python benchmarks/bench_hessian.py [--repeats 5]

The medium MLP of bench_surface.py (64-128-128-10 ReLU, 2048 samples, cross-entropy),
briefly trained. Both libraries build the full-batch gradient graph and do Hessian-vector
products by double backward; PyHessian runs power iteration (maxIter 100, tol 1e-3, its
defaults), lossview Lanczos with its default residual tolerance 1e-3. Times include
building the graph. Runs alternate; medians reported. The reference eigenvalue is
lossview's Lanczos at tol 1e-10, cross-checked with scipy ARPACK.

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _cases import medium_case, peer_args  # noqa: E402

import lossview  # noqa: E402
from lossview.core.surface.curvature import HessianOperator, top_eigenvalues  # noqa: E402


def main() -> None:
    args = peer_args(__doc__.splitlines()[0])
    warnings.filterwarnings("ignore")
    from pyhessian import hessian

    ph_mod = sys.modules["pyhessian.hessian"]
    calls = [0]
    orig = ph_mod.hessian_vector_product

    def counted(*a):
        calls[0] += 1
        return orig(*a)

    ph_mod.hessian_vector_product = counted
    model, loss_fn, x, y = medium_case()
    load = os.getloadavg()
    op = HessianOperator(model, loss_fn, (x, y))
    ref = float(top_eigenvalues(op, 1, tol=1e-10)[0][0])
    arpack = float(top_eigenvalues(HessianOperator(model, loss_fn, (x, y)), 1, method="arpack",
                                   tol=1e-10)[0][0])
    pt, ot, pv, ov, pc, oc = [], [], [], [], [], []
    for r in range(args.repeats):
        torch.manual_seed(r)  # PyHessian's start vector comes from torch's global RNG
        calls[0] = 0
        t = time.perf_counter()
        h = hessian(model, loss_fn, data=(x, y), cuda=False)
        ev, _ = h.eigenvalues(top_n=1)
        pt.append(time.perf_counter() - t)
        pv.append(float(ev[0]))
        pc.append(calls[0])
        model.zero_grad(set_to_none=True)
        t = time.perf_counter()
        lam = lossview.sharpness(model, loss_fn, (x, y), seed=r)
        ot.append(time.perf_counter() - t)
        ov.append(lam)
        op = HessianOperator(model, loss_fn, (x, y))  # same computation, to count products
        top_eigenvalues(op, 1, seed=r)
        oc.append(op.calls)
    load_after = os.getloadavg()
    mp, mo = statistics.median(pt), statistics.median(ot)
    rel = max(abs(a - b) / abs(b) for a, b in zip(ov, pv))
    print("## Curvature\n")
    thr = f" --threads {args.threads}" if args.threads else ""
    print(f"Command: `python benchmarks/bench_hessian.py --repeats {args.repeats}{thr}` (one process, "
          f"runs alternate, medians). Conditions: {os.cpu_count()} cores shared with other jobs "
          f"(load average {load[0]:.1f} before, {load_after[0]:.1f} after), torch "
          f"{torch.__version__} with {torch.get_num_threads()} threads, float32, PyHessian 0.1.\n")
    print("| top eigenvalue, MLP 64-128-128-10, 2048 samples | PyHessian `eigenvalues()` | "
          "lossview `sharpness()` |")
    print("|---|---|---|")
    print(f"| time (median) | {mp:.3f} s | {mo:.3f} s |")
    print(f"| Hessian-vector products (median) | {statistics.median(pc):.0f} | "
          f"{statistics.median(oc):.0f} |")
    print(f"| eigenvalue (median) | {statistics.median(pv):.6f} | {statistics.median(ov):.6f} |")
    print(f"| relative error vs reference {ref:.6f} | "
          f"{max(abs(v - ref) / ref for v in pv):.1e} | {max(abs(v - ref) / ref for v in ov):.1e} |")
    print("")
    print(f"Agreement between the two: at most {rel:.2%} apart (goal within 1%: "
          f"{'met' if rel <= 0.01 else 'NOT met'}); speed {mp / mo:.2f}x PyHessian's "
          f"(goal not slower: {'met' if mo <= mp else 'NOT met'}). Reference: Lanczos at "
          f"tol 1e-10 = {ref:.8f}, scipy ARPACK = {arpack:.8f}.\n")
    print("Raw times (s): PyHessian " + ", ".join(f"{v:.3f}" for v in pt) + "; lossview "
          + ", ".join(f"{v:.3f}" for v in ot) + "\n")


if __name__ == "__main__":
    main()

"""Top Hessian eigenvalue: lossview.sharpness vs PyHessian (issue 5, case d).

Run:  python benchmarks/bench_hessian.py [--repeats 5]
      python benchmarks/bench_hessian.py --memory [--repeats 3] [--samples 512]
      python benchmarks/bench_hessian.py --hvp [--repeats 7]

``--memory`` (issue 21, item 4): peak memory and time of the top-k solver before (the
unbounded Lanczos loop, kept below as ``unbounded_lanczos``) and after (thick-restart
Lanczos, at most ``ncv`` vectors) on a ~0.93M-parameter MLP 784-512-512-512-10, k = 1
and 5, default tolerance 1e-3. Each solve runs in its own subprocess; variants alternate.
The child builds the operator and its gradient graph, reads its resident set (VmRSS),
resets the high-water mark (``/proc/self/clear_refs`` 5) and reports VmHWM after the
solve: the peak memory the solver added.

``--hvp``: time of one Hessian-vector product formed three ways on the same model and
data, alternating in one process (medians): through the kept gradient graph (double
backward), and without kept graphs by ``torch.func`` forward-over-reverse (``jvp`` of
``grad``) and reverse-over-reverse (``vjp`` of ``grad``); for the 0.93M-parameter MLP
(256 and 1024 samples) and the medium MLP of issue 5.

The medium MLP of bench_surface.py (64-128-128-10 ReLU, 2048 samples, cross-entropy),
briefly trained. Both libraries build the full-batch gradient graph and do Hessian-vector
products by double backward; PyHessian runs power iteration (maxIter 100, tol 1e-3, its
defaults), lossview Lanczos with its default residual tolerance 1e-3. Times include
building the graph. Runs alternate; medians reported. The reference eigenvalue is
lossview's Lanczos at tol 1e-10, cross-checked with scipy ARPACK.

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _cases import medium_case, peer_args

import lossview
from lossview.core.surface.curvature import HessianOperator, top_eigenvalues


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


def unbounded_lanczos(op, k, v0, tol=1e-3, maxiter=300):
    """The solver before issue 21 (commit 33df041), verbatim in substance: every basis
    vector kept, the basis stacked anew each step."""
    from scipy.linalg import eigh_tridiagonal

    v = torch.as_tensor(v0, dtype=torch.float64)
    qs = [v / v.norm()]
    alpha, beta = [], []
    theta = s = None
    for j in range(min(maxiter, op.n)):
        w = op.matvec(qs[j]).double()
        a = float(qs[j] @ w)
        alpha.append(a)
        w -= a * qs[j]
        if j > 0:
            w -= beta[-1] * qs[j - 1]
        basis = torch.stack(qs)
        w -= basis.T @ (basis @ w)
        w -= basis.T @ (basis @ w)
        b = float(w.norm())
        if j:
            theta, s = eigh_tridiagonal(np.array(alpha), np.array(beta))
        else:
            theta, s = np.array(alpha), np.ones((1, 1))
        order = np.argsort(theta)[::-1][:k]
        if j + 1 >= k:
            res = b * np.abs(s[-1, order])
            if np.all(res <= tol * np.maximum(np.abs(theta[order]), 1e-30)):
                break
        qs.append(w / b)
        beta.append(b)
    order = np.argsort(theta)[::-1][:k]
    m = len(alpha)
    vecs = (torch.stack(qs[:m]).T @ torch.from_numpy(np.ascontiguousarray(s[:, order]))).numpy()
    return theta[order], vecs


def _proc_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def big_mlp_case(samples: int):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(samples, 784, generator=g)
    y = torch.randint(0, 10, (samples,), generator=g)
    torch.manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512),
                                torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                                torch.nn.Linear(512, 10))
    return model, torch.nn.CrossEntropyLoss(), x, y


def child(variant: str, k: int, samples: int, tol: float) -> None:
    import gc

    from lossview.core.surface.curvature import default_ncv

    model, loss_fn, x, y = big_mlp_case(samples)
    op = HessianOperator(model, loss_fn, (x, y))
    op.matvec(torch.zeros(op.n))  # builds the gradient graph: the operator's memory
    op.calls = 0
    v0 = np.random.default_rng(0).standard_normal(op.n)
    gc.collect()
    base = _proc_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t = time.perf_counter()
    if variant == "before":
        w, _ = unbounded_lanczos(op, k, v0, tol=tol)
    elif variant == "products only":  # the operator's own transient memory, no solver
        v = torch.from_numpy(v0)
        for _ in range(20):
            out = op.matvec(v).double()
        w = [float(v @ out) / float(v @ v)]
    else:
        w, _ = top_eigenvalues(op, k, tol=tol)
    dt = time.perf_counter() - t
    peak = _proc_kb("VmHWM")
    info = getattr(op, "last_solve", {})
    print(json.dumps({"n": op.n, "base_mb": base / 1024, "added_mb": (peak - base) / 1024,
                      "time": dt, "products": op.calls, "eigs": [float(e) for e in w],
                      "max_vectors": info.get("max_vectors"), "ncv": default_ncv(k)}))


def hvp_main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Hessian-vector products, three ways")
    ap.add_argument("--hvp", action="store_true")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    modes = ("kept graph", "forward-over-reverse", "reverse-over-reverse")
    print("| model, samples | " + " | ".join(modes) + " | reverse vs forward |")
    print("|---|---:|---:|---:|---:|")
    cases = [("MLP 784-512-512-512-10, 256", big_mlp_case(256)),
             ("MLP 784-512-512-512-10, 1024", big_mlp_case(1024)),
             ("MLP 64-128-128-10, 2048", medium_case())]
    for name, (model, loss_fn, x, y) in cases:
        ops = {m: HessianOperator(model, loss_fn, (x, y), graph_cache_samples=0 if i else 1 << 30)
               for i, m in enumerate(modes)}
        for m in modes[1:]:
            ops[m].mode = m
        v = torch.randn(ops[modes[0]].n)
        ref = ops[modes[0]].matvec(v)
        ts: dict = {m: [] for m in modes}
        for _ in range(args.repeats):
            for m in modes:
                t = time.perf_counter()
                out = ops[m].matvec(v)
                ts[m].append(time.perf_counter() - t)
                assert float((out - ref).abs().max()) <= 1e-4 * float(ref.abs().max())
        med = {m: statistics.median(ts[m]) for m in modes}
        print(f"| {name} | " + " | ".join(f"{med[m] * 1e3:.0f} ms" for m in modes)
              + f" | {med[modes[1]] / med[modes[2]]:.2f}x |")
    print(f"\n{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}; medians of {args.repeats}.\n")


VARIANTS = ((1, "products only"), (1, "before"), (1, "after"), (5, "before"), (5, "after"))


def memory_main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="bounded-memory Lanczos, before vs after")
    ap.add_argument("--memory", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    load = os.getloadavg()
    res: dict = {}
    for _ in range(args.repeats):
        for k, variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--child", variant, str(k),
                                  str(args.samples), str(args.tol)],
                                 capture_output=True, text=True, check=True)
            res.setdefault((k, variant), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    load_after = os.getloadavg()
    n = res[(1, "after")][0]["n"]
    vec_mb = n * 8 / 2 ** 20
    print("## Curvature at scale: bounded-memory Lanczos\n")
    print(f"Command: `python benchmarks/bench_hessian.py --memory --repeats {args.repeats} "
          f"--samples {args.samples}`; MLP 784-512-512-512-10 ReLU ({n:,} parameters, one "
          f"float64 vector = {vec_mb:.1f} MiB), {args.samples} samples, cross-entropy, "
          f"tol {args.tol:g}; one subprocess per solve, variants alternating, medians. "
          f"{os.cpu_count()} cores shared with other jobs (load average {load[0]:.1f} before, "
          f"{load_after[0]:.1f} after), torch {torch.__version__}, float32 model.\n")
    print("| k | solver | peak memory added (median) | in float64 vectors | time, median (min) | "
          "products | top eigenvalue |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for k, variant in VARIANTS:
        rs = res[(k, variant)]
        mb = statistics.median(r["added_mb"] for r in rs)
        print(f"| {k if variant != 'products only' else '-'} | {variant} | {mb:.0f} MiB | "
              f"{mb / vec_mb:.1f} | {statistics.median(r['time'] for r in rs):.2f} s "
              f"({min(r['time'] for r in rs):.2f} s) | "
              f"{statistics.median(r['products'] for r in rs):.0f} | {rs[0]['eigs'][0]:.6f} |")
    print("")
    for k in (1, 5):
        b, a = res[(k, "before")], res[(k, "after")]
        mb_b = statistics.median(r["added_mb"] for r in b)
        mb_a = statistics.median(r["added_mb"] for r in a)
        t_b = statistics.median(r["time"] for r in b)
        t_a = statistics.median(r["time"] for r in a)
        diff = max(abs(x - y) / abs(y) for x, y in zip(a[0]["eigs"], b[0]["eigs"]))
        best = min(r["time"] for r in b) / min(r["time"] for r in a)
        print(f"k = {k}: memory {mb_b / max(mb_a, 1e-9):.2f}x lower after, time "
              f"{t_b / t_a:.2f}x (before/after, medians; {best:.2f}x on minima); "
              f"eigenvalues agree to {diff:.1e}; solver's "
              f"counted maximum {a[0]['max_vectors']} vectors (bound ncv + 1 = "
              f"{a[0]['ncv'] + 1}).\n")
    print("Raw (MiB added / s): " + "; ".join(
        f"k={k} {v}: " + ", ".join(f"{r['added_mb']:.0f}/{r['time']:.2f}" for r in rs)
        for (k, v), rs in res.items()) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
    elif "--hvp" in sys.argv:
        hvp_main()
    elif "--memory" in sys.argv:
        memory_main()
    else:
        main()

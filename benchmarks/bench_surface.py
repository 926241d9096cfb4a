"""Loss-surface speed: lossview.loss_surface vs loss_landscapes.random_plane (issue 5).

Run:  python benchmarks/bench_surface.py [--repeats 5] [--no-numba]

lossview runs with its numba kernels loaded (``fastkernels.preload()`` before the runs:
the steady state of a process that has paid their one-time price, printed here and
measured by bench_surface_numba.py); ``--no-numba``: torch's operations only.

Same model, data and grid size in one process; runs alternate (peer, lossview, peer, ...)
so both see the same machine load; medians are reported. Both evaluate the full grid
exactly (loss_landscapes: a Python loop of forward passes; lossview: batched, with the
first layer's three products computed once). The grids' directions differ (each library
draws its own), so loss values are not compared between libraries; lossview's values are
checked against brute force (one deep copy per point) at a few grid points.

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _cases import matmul_peak, medium_case, peer_args, small_case

import lossview
from lossview.core.surface import fastkernels
from lossview.core.surface.evaluate import PlaneEvaluator
from lossview.core.surface.fastpath import block_rows, ce_sum_pcn
from lossview.core.surface.grid import iter_grid
from lossview.core.surface.pipelines import Workspace, balanced_spans, run_chunks


def peer(model, loss_fn, x, y, steps):
    import loss_landscapes
    import loss_landscapes.metrics as metrics

    return loss_landscapes.random_plane(model, metrics.Loss(loss_fn, x, y), distance=1,
                                        steps=steps, normalization="filter", deepcopy_model=True)


def ours(model, loss_fn, x, y, steps):
    return lossview.loss_surface(model, loss_fn, (x, y), steps=steps, span=1.0)


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def brute_error(model, loss_fn, x, y, s, n=6) -> float:
    rng = np.random.default_rng(0)
    center = {k: p.detach().clone() for k, p in model.named_parameters()}
    err = 0.0
    for _ in range(n):
        i, j = rng.integers(0, len(s.alphas), 2)
        m = copy.deepcopy(model)
        with torch.no_grad():
            for k, p in m.named_parameters():
                p.copy_(center[k] + s.alphas[i] * s.d1[k] + s.betas[j] * s.d2[k])
            ref = float(loss_fn(m(x), y))
        err = max(err, abs(ref - s.loss[i, j]) / abs(ref))
    return err


def gemm_floor(model, x, steps):
    """The medium case's matrix products alone, as lossview runs them: the same chunks of
    points, blocks of rows and shapes on the same single-threaded pipelines, no activation
    and no loss (per chunk the combined weights, then per block the 3-term first-layer
    combination, the 129 x 128 and the 128 x 10 products)."""
    ev = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, torch.zeros(len(x), dtype=torch.long)))
    n, hid, out = len(x), model[2].in_features, model[4].out_features
    spans = balanced_spans(steps * steps, ev.chunk_size(), ev.workers())
    z = torch.randn(3, n * (hid + 1))
    stacks = torch.randn(3, (hid + 1) * hid), torch.randn(3, hid * out)

    def work(lo, hi, ws):
        p = hi - lo
        coef = torch.randn(p, 3)
        w1 = torch.mm(coef, stacks[0], out=ws.get("w1", (p, (hid + 1) * hid), z)).view(p, hid + 1, hid)
        w2 = torch.mm(coef, stacks[1], out=ws.get("w2", (p, hid * out), z)).view(p, out, hid)
        rows = block_rows(p, n, (hid + 1) * 4)
        zv = z.view(3, n, hid + 1)
        for r0 in range(0, n, rows):
            r = min(rows, n - r0)
            h = torch.mm(coef, zv[:, r0:r0 + r].reshape(3, -1),
                         out=ws.get("h", (p, r * (hid + 1)), z)).view(p, r, hid + 1)
            g = torch.bmm(h, w1, out=ws.get("g", (p, r, hid), z))
            torch.bmm(w2, g.transpose(1, 2), out=ws.get("o", (p, out, r), z))
        return None

    def run():
        with torch.no_grad():
            for _ in run_chunks(work, spans, ev.workers()):
                pass
    return run


def breakdown(model, loss_fn, x, y, reps=40):
    """Where one pipeline's time goes on the medium case: each operation of one chunk
    (the chunk size and row blocks lossview uses) timed alone on one thread, the best of
    ``reps``, in microseconds per grid point; then the whole chunk as lossview runs it.
    Returns ``[(name, us_per_point, flops_per_point or 0)]``."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ev = PlaneEvaluator(model, loss_fn, (x, y))
        ev._kernels = fastkernels.decide(ev, 41 * 41)  # as iter_losses sets them (once loaded)
        p, n = ev.chunk_size(), len(x)
        g = torch.Generator().manual_seed(0)
        ab = torch.rand(p, 2, generator=g) * 2 - 1
        coef = torch.cat([torch.ones(p, 1), ab], dim=1)
        ws = Workspace()
        zstack, (_, width) = ev._precomputed(0)
        rows = block_rows(p, n, width * 4)
        blocks = -(-n // rows)
        (w1, _), (w2, b2) = ev._tail.weights(coef, ws)
        hid, out = w1.shape[2], w2.shape[1]
        zb = zstack.view(3, n, width)[:, :rows].reshape(3, rows * width)
        h = torch.mm(coef, zb).view(p, rows, width)
        hg = torch.bmm(h.relu(), w1)
        o = torch.empty(p, out, rows)
        idx = y[:rows].view(1, 1, -1).expand(p, 1, -1)
        k = fastkernels.loaded()

        def best(fn, per_block=True):
            with torch.no_grad():
                fn()
                t = min(timed(fn)[0] for _ in range(reps))
            return t * 1e6 * (blocks if per_block else 1) / p

        if k is None:
            first = [("first layer: 3-term combination (mm, K = 3)",
                      best(lambda: torch.mm(coef, zb, out=h.view(p, -1))), 2 * n * 3 * width),
                     ("ReLU 1", best(lambda: h.relu_()), 0)]
            last = [(f"output layer product ({hid} x {out}) + bias",
                     best(lambda: torch.bmm(w2, hg.transpose(1, 2), out=o).add_(b2)),
                     2 * n * hid * out),
                    ("cross-entropy (log_softmax, gather, sum)", best(lambda: ce_sum_pcn(o, idx)), 0)]
        else:
            c, z0, z1, z2, hn = coef.numpy(), *zb.numpy(), h.view(p, -1).numpy()
            bn, on, yn = b2.squeeze(2).numpy(), o.numpy(), np.ascontiguousarray(y[:rows].numpy())
            tot, scr, fl = np.zeros(p), np.empty((4, rows), np.float32), np.zeros(p, np.uint8)
            first = [("first layer: 3-term combination + ReLU 1 (numba, one pass)",
                      best(lambda: k.combine(c, z0, z1, z2, hn, True)), 2 * n * 3 * width)]
            last = [(f"output layer product ({hid} x {out})",
                     best(lambda: torch.bmm(w2, hg.transpose(1, 2), out=o)), 2 * n * hid * out),
                    ("output bias + cross-entropy (numba, one pass)",
                     best(lambda: k.ce_sum(on, bn, yn, tot, scr, fl, k.log_run(out))), 0)]
        rows_ = [
            *first,
            (f"hidden layer product ({width} x {hid})",
             best(lambda: torch.bmm(h, w1, out=hg)), 2 * n * width * hid),
            ("ReLU 2", best(lambda: hg.relu_()), 0),
            *last,
            ("layer weights at the chunk's points (once a chunk)",
             best(lambda: ev._tail.weights(coef, ws), per_block=False), 0),
        ]
        whole = best(lambda: ev._chunk(ab, ws), per_block=False)
        return [*rows_, ("whole chunk as lossview runs it", whole, 0)], p, rows, blocks
    finally:
        torch.set_num_threads(saved)


def compare(name, case, steps, repeats, floor=None):
    model, loss_fn, x, y = case
    peer(model, loss_fn, x, y, 5)  # warm-up all
    ours(model, loss_fn, x, y, 5)
    if floor:
        floor()
    rows = {"peer": [], "ours": [], "peer_cpu": [], "ours_cpu": [], "floor": []}
    s = None
    for _ in range(repeats):
        w, c, _ = timed(lambda: peer(model, loss_fn, x, y, steps))
        rows["peer"].append(w)
        rows["peer_cpu"].append(c)
        w, c, s = timed(lambda: ours(model, loss_fn, x, y, steps))
        rows["ours"].append(w)
        rows["ours_cpu"].append(c)
        if floor:
            rows["floor"].append(timed(floor)[0])
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    return med, rows, s


def medium_flops(steps: int, n: int) -> tuple[float, float]:
    """(performed, brute-force) multiply-add FLOPs of a 64-128-128-10 grid."""
    per_point_brute = 2 * n * (64 * 128 + 128 * 128 + 128 * 10)
    # 3-term first layer (plus the ones column that carries the next bias), then GEMMs
    per_point_ours = 2 * n * (3 * 129 + 129 * 128 + 128 * 10)
    pre = 3 * 2 * n * 64 * 128
    pts = steps * steps
    return pre + pts * per_point_ours, pts * per_point_brute


def main() -> None:
    numba = "--no-numba" not in sys.argv
    if not numba:
        sys.argv.remove("--no-numba")
    args = peer_args(__doc__.splitlines()[0])
    kernel_s = time.perf_counter()
    if numba and fastkernels.preload() is None:
        sys.exit("numba kernels unavailable (run with --no-numba)")
    kernel_s = time.perf_counter() - kernel_s
    torch.manual_seed(0)
    peak = matmul_peak()
    load = os.getloadavg()
    out = []
    small = small_case()
    med_s, rows_s, s_small = compare("small", small, 51, args.repeats)
    err_s = brute_error(*small, s_small)
    medium = medium_case()
    med_m, rows_m, s_med = compare("medium", medium, 41, args.repeats,
                                   gemm_floor(medium[0], medium[2], 41))
    err_m = brute_error(*medium, s_med)
    performed, brute = medium_flops(41, 2048)
    # (c) coarse preview and the progressive generator's first yield
    model, loss_fn, x, y = medium
    prev = [timed(lambda: ours(model, loss_fn, x, y, 11))[0] for _ in range(args.repeats)]
    first = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ev = PlaneEvaluator(model, loss_fn, (x, y), None, s_med.d1, s_med.d2)
        g = iter_grid(ev, s_med.alphas, s_med.betas)
        next(g)
        first.append(time.perf_counter() - t0)
        g.close()
    parts, p_chunk, rows, blocks = breakdown(*medium)
    load_after = os.getloadavg()
    peak = max(peak, matmul_peak())  # a peak: the better of before and after the runs

    def fmt(v):
        return f"{v:.3f}"

    out.append("## Loss surfaces\n")
    thr = f" --threads {args.threads}" if args.threads else ""
    thr += "" if numba else " --no-numba"
    out.append("Command: `python benchmarks/bench_surface.py --repeats "
               f"{args.repeats}{thr}` (one process, runs alternate peer/lossview, medians of "
               f"{args.repeats}).\n")
    out.append(f"lossview's numba kernels: {'loaded before the runs, ' if numba else 'off'}"
               f"{f'{kernel_s:.2f} s (numba import and first calls, once a process)' if numba else ''}.\n")
    out.append(f"Conditions: {platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores shared with other jobs (load average "
               f"{load[0]:.1f} before, {load_after[0]:.1f} after), torch {torch.__version__} "
               f"with {torch.get_num_threads()} threads, float32; peer loss-landscapes "
               f"{_version('loss-landscapes')}. Measured float32 matmul peak (best of 2 x 9 2048^3 GEMMs "
               f"before and after, same process, torch's threads): {peak:.0f} GFLOP/s.\n")
    out.append("| case | grid | loss_landscapes.random_plane | lossview.loss_surface | speed-up | goal | "
               "CPU-time speed-up | max rel. error vs brute force |")
    out.append("|---|---|---|---|---|---|---|---|")
    for name, grid, med, goal, err in (
            ("(a) MLP 2-32-32-1 tanh, 512 samples, MSE", "51 x 51", med_s, 5.0, err_s),
            ("(b) MLP 64-128-128-10 ReLU, 2048 samples, CE", "41 x 41", med_m, 2.5, err_m)):
        sp = med["peer"] / med["ours"]
        out.append(f"| {name} | {grid} | {fmt(med['peer'])} s | {fmt(med['ours'])} s | "
                   f"{sp:.1f}x | >= {goal}x {'met' if sp >= goal else 'NOT met'} | "
                   f"{med['peer_cpu'] / med['ours_cpu']:.1f}x | {err:.1e} |")
    t = med_m["ours"]
    out.append("")
    out.append(f"(b) throughput: {performed / t / 1e9:.0f} GFLOP/s of matmul work actually "
               f"performed ({performed / t / 1e9 / peak:.0%} of the measured peak); counted as "
               f"a brute-force evaluation would need ({brute / 1e9:.0f} GFLOP), "
               f"{brute / t / 1e9:.0f} GFLOP/s ({brute / t / 1e9 / peak:.0%} of peak). The first "
               f"layer's exact algebra removes {1 - performed / brute:.0%} of the FLOPs. "
               f"Fastest of the {args.repeats} runs (a best, as the peak is): "
               f"{min(rows_m['ours']):.3f} s, {performed / min(rows_m['ours']) / 1e9 / peak:.0%} "
               f"of the peak (floor {performed / min(rows_m['floor']) / 1e9 / peak:.0%}).\n")
    fl = med_m["floor"]
    out.append(f"(b) floor: the same matrix products alone (same chunks, row blocks, shapes and "
               f"pipelines, no activation or loss) {fl:.3f} s = {performed / fl / 1e9:.0f} "
               f"GFLOP/s ({performed / fl / 1e9 / peak:.0%} of the 2048^3 peak); lossview / "
               f"floor = {t / fl:.2f}x, i.e. lossview runs at {fl / t:.0%} of the rate of its "
               f"own GEMMs.\n")
    out.extend(breakdown_table(parts, p_chunk, rows, blocks, performed / 41 ** 2,
                               peak / torch.get_num_threads()))
    pm = statistics.median(prev)
    out.append(f"(c) coarse 11 x 11 preview of (b): {pm:.3f} s (goal < 1 s: "
               f"{'met' if pm < 1 else 'NOT met'}); the progressive 41 x 41 generator yields "
               f"its first coarse partial after {statistics.median(first):.3f} s.\n")
    out.append("Raw times (s): " + "; ".join(
        f"{k} {name}: " + ", ".join(f"{v:.3f}" for v in r[k])
        for name, r in (("small", rows_s), ("medium", rows_m)) for k in ("peer", "ours", "floor")
        if r[k]) + "\n")
    print("\n".join(out))


def breakdown_table(parts, p, rows, blocks, flops_point, peak_thread):
    """Markdown lines for :func:`breakdown`'s parts."""
    whole = parts[-1][1]
    ops = parts[:-1]
    lines = [f"(b) where the time goes: one pipeline on one thread, a chunk of {p} points in "
             f"{blocks} blocks of {rows} rows, each operation alone (best of 40), per grid "
             f"point; peak share per thread {peak_thread:.0f} GFLOP/s:\n",
             "| operation | us / point | share of the chunk | GFLOP/s |", "|---|---:|---:|---:|"]
    for name, us, fl in ops:
        rate = f"{fl / us / 1e3:.0f} ({fl / us / 1e3 / peak_thread:.0%})" if fl else ""
        lines.append(f"| {name} | {us:.0f} | {us / whole:.0%} | {rate} |")
    rest = whole - sum(us for _, us, _ in ops)
    lines.append(f"| rest (Python, dispatch, cache misses between the operations) | {rest:.0f} | "
                 f"{rest / whole:.0%} | |")
    lines.append(f"| **whole chunk** | **{whole:.0f}** | 100% | {flops_point / whole / 1e3:.0f} "
                 f"({flops_point / whole / 1e3 / peak_thread:.0%}) |")
    gemm = sum(us for _, us, fl in ops if fl)
    lines.append(f"\nThe matrix products take {gemm / whole:.0%} of the chunk; with the "
                 f"element-wise work free, one pipeline would run at "
                 f"{flops_point / gemm / 1e3 / peak_thread:.0%} of its share of the peak.\n")
    return lines


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return "?"


if __name__ == "__main__":
    main()

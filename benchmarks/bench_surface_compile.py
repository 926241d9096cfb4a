"""Would torch.compile pay on the MLP fast path? One row block of the medium case, eager
against inductor.

Run:  python benchmarks/bench_surface_compile.py [--mode default|max-autotune-no-cudagraphs]

The block is what the fast path runs for each block of rows of a chunk (issue 21 item 7):
the 3-term first-layer combination, ReLU, the hidden product, ReLU, the output product and
bias, the cross-entropy sum, with the chunk size and rows lossview picks, on one thread
(each pipeline runs one). inductor fuses the element-wise work into C++ loops (it needs a
C++ compiler); the question is whether the fused block is faster by more than its compile
time over one surface (1,681 points of this case: about 100 chunks of 9 blocks each).
Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _cases import medium_case

from lossview.core.surface.evaluate import PlaneEvaluator
from lossview.core.surface.fastpath import block_rows
from lossview.core.surface.pipelines import Workspace


def block_inputs():
    model, loss_fn, x, y = medium_case()
    ev = PlaneEvaluator(model, loss_fn, (x, y))
    p, n = ev.chunk_size(), len(x)
    g = torch.Generator().manual_seed(0)
    coef = torch.cat([torch.ones(p, 1), torch.rand(p, 2, generator=g) * 2 - 1], dim=1)
    zstack, (_, width) = ev._precomputed(0)
    rows = block_rows(p, n, width * 4)
    (w1, _), (w2, b2) = ev._tail.weights(coef, Workspace())
    zb = zstack.view(3, n, width)[:, :rows].reshape(3, rows * width).contiguous()
    idx = y[:rows].view(1, 1, -1).expand(p, 1, -1)
    return (coef, zb, w1.contiguous(), w2.contiguous(), b2.contiguous(), idx), p, rows, -(-n // rows)


def block(coef, zb, w1, w2, b2, idx):
    p, width = coef.shape[0], w1.shape[1]
    h = torch.mm(coef, zb).view(p, -1, width).relu_()
    g = torch.bmm(h, w1).relu_()
    o = torch.bmm(w2, g.transpose(1, 2)).add_(b2)
    return torch.log_softmax(o, 1).gather(1, idx).sum((1, 2)).neg()


def best(fn, reps=30):
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="default")
    args = ap.parse_args()
    torch.set_num_threads(1)
    inputs, p, rows, blocks = block_inputs()
    per_point = blocks / p * 1e6
    with torch.no_grad():
        eager = best(lambda: block(*inputs))
        ref = block(*inputs)
        t0 = time.perf_counter()
        try:
            fast = torch.compile(block, mode=args.mode, fullgraph=True)
            got = fast(*inputs)
            compile_s = time.perf_counter() - t0
            compiled = best(lambda: fast(*inputs))
            err = float(((got - ref) / ref).abs().max())
        except Exception as exc:  # noqa: BLE001 - no compiler etc.: say so
            print(f"torch.compile failed: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            return
    saved = (eager - compiled) * per_point * 1681 / 1e6  # seconds over one 41 x 41 surface
    print(f"One block of the medium MLP: {p} points x {rows} rows, one thread, torch "
          f"{torch.__version__}, inductor mode {args.mode!r}.\n")
    print("| | us / point | compile | one 41 x 41 surface (1,681 points, one pipeline) |")
    print("|---|---:|---:|---|")
    print(f"| eager (lossview) | {eager * per_point:.0f} | | {eager * per_point * 1681 / 1e6:.2f} s |")
    print(f"| torch.compile | {compiled * per_point:.0f} | {compile_s:.1f} s | "
          f"{'saves' if saved >= 0 else 'costs'} {abs(saved):.3f} s against {compile_s:.1f} s "
          f"of compiling; max rel. difference {err:.1e} |")


if __name__ == "__main__":
    main()

"""Loss surface of a BatchNorm CNN: lossview vs a plain forward loop (the floor) vs
loss_landscapes.random_plane (issue 21, item 1).

Run:  python benchmarks/bench_surface_cnn.py [--repeats 3] [--threads 2] [--steps 7]

Case: a CNN of 5 conv blocks (conv 3x3, BatchNorm, ReLU; channels 16-32-64-64-128, stride
2 from the second block), global average pooling and a linear head, in eval mode (running
statistics from one train-mode pass), 512 images 3x32x32 in one batch, cross-entropy, a
``steps x steps`` grid. Three contenders in one process, alternating (floor, lossview,
peer, floor, ...), medians reported:

- floor: the plain loop a user would write: one model, for each point every parameter set
  in place (``p.copy_(center); p.add_(d1, alpha=a); p.add_(d2, alpha=b)``) under
  ``torch.inference_mode``, one forward pass, the loss (lossview's directions);
- lossview: ``lossview.loss_surface(model, loss_fn, (x, y), steps=steps)`` with its
  default ``path="auto"`` (the probe's time included), the path it took reported;
- peer: ``loss_landscapes.random_plane(model, Loss(loss_fn, x, y), distance=1,
  steps=steps, normalization="layer", deepcopy_model=True)`` as its README shows it,
  except "layer" for "filter" normalization (which divides by zero on this model: its
  second direction's BatchNorm filters come out all zero); autograd left on, as its
  metric does; one in-place add per point along a snake path; its grid is ``steps x
  steps`` points too, shifted by one step along its second direction.

lossview's values are checked against brute force (``functional_call`` at the point's
weights) at a few grid points. Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

import lossview


def block(i: int, o: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o),
            nn.ReLU(inplace=True)]


class CNN(nn.Module):
    def __init__(self, widths=(16, 32, 64, 64, 128), classes: int = 10) -> None:
        super().__init__()
        layers, c = [], 3
        for k, w in enumerate(widths):
            layers += block(c, w, 1 if k == 0 else 2)
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


def cnn_case(n: int = 512):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    torch.manual_seed(0)
    model = CNN()
    with torch.no_grad():
        model.train()(x)  # running statistics
    model.eval()
    return model, nn.CrossEntropyLoss(), x, y


def floor(model, loss_fn, x, y, d1, d2, grid) -> np.ndarray:
    params = dict(model.named_parameters())
    center = {n: p.detach().clone() for n, p in params.items()}
    out = np.empty((len(grid), len(grid)))
    with torch.inference_mode():
        for i, a in enumerate(grid):
            for j, b in enumerate(grid):
                for n, p in params.items():
                    p.copy_(center[n])
                    p.add_(d1[n], alpha=float(a))
                    p.add_(d2[n], alpha=float(b))
                out[i, j] = float(loss_fn(model(x), y))
        for n, p in params.items():
            p.copy_(center[n])
    return out


def peer(model, loss_fn, x, y, steps):
    import loss_landscapes
    import loss_landscapes.metrics as metrics

    return loss_landscapes.random_plane(model, metrics.Loss(loss_fn, x, y), distance=1,
                                        steps=steps, normalization="layer", deepcopy_model=True)


def brute_error(model, loss_fn, x, y, s, n: int = 3) -> float:
    rng = np.random.default_rng(0)
    center = {k: p.detach() for k, p in model.named_parameters()}
    bufs = dict(model.named_buffers())
    err = 0.0
    with torch.no_grad():
        for _ in range(n):
            i, j = rng.integers(0, len(s.alphas), 2)
            p = {k: center[k] + s.alphas[i] * s.d1[k] + s.betas[j] * s.d2[k] for k in center}
            ref = float(loss_fn(functional_call(model, (p, bufs), (x,)), y))
            err = max(err, abs(ref - s.loss[i, j]) / abs(ref))
    return err


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, loss_fn, x, y = cnn_case()
    steps = args.steps
    s = lossview.loss_surface(model, loss_fn, (x, y), steps=2)  # warm-up (and directions)
    d1, d2 = s.d1, s.d2
    grid = np.linspace(-1.0, 1.0, steps)
    floor(model, loss_fn, x, y, d1, d2, grid[:1])
    peer(model, loss_fn, x, y, 2)
    load = os.getloadavg()
    times: dict[str, list[float]] = {"floor": [], "lossview": [], "peer": []}
    paths, surf = [], None
    for _ in range(args.repeats):
        t = time.perf_counter()
        ref = floor(model, loss_fn, x, y, d1, d2, grid)
        times["floor"].append(time.perf_counter() - t)
        t = time.perf_counter()
        surf = lossview.loss_surface(model, loss_fn, (x, y), directions=(d1, d2), steps=steps,
                                     span=1.0, device=args.device)
        times["lossview"].append(time.perf_counter() - t)
        paths.append(surf.path)
        t = time.perf_counter()
        peer(model, loss_fn, x, y, steps)
        times["peer"].append(time.perf_counter() - t)
    load_after = os.getloadavg()
    med = {k: statistics.median(v) for k, v in times.items()}
    err = brute_error(model, loss_fn, x, y, surf)
    floor_err = float(np.max(np.abs(surf.loss - ref) / np.abs(ref)))
    print("## Loss surface of a BatchNorm CNN (issue 21, item 1)\n")
    print(f"Command: `python benchmarks/bench_surface_cnn.py --repeats {args.repeats} --threads "
          f"{args.threads} --steps {steps}` (one process; floor, lossview and peer alternate; "
          f"medians of {args.repeats}).\n")
    print(f"Machine: {cpu_model()}, {os.cpu_count()} cores shared with other jobs (load "
          f"average {load[0]:.1f} before, {load_after[0]:.1f} after), torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads for all three, float32, device "
          f"{args.device}; {time.strftime('%Y-%m-%d', time.gmtime())}.\n")
    print(f"| case | grid | floor (forward loop) | lossview ({', '.join(sorted(set(paths)))}) | "
          "loss_landscapes | lossview / floor | lossview / peer |")
    print("|---|---|---|---|---|---|---|")
    print(f"| CNN 5 conv blocks + BatchNorm (eval), 512 x 3x32x32, CE | {steps} x {steps} | "
          f"{med['floor']:.2f} s | {med['lossview']:.2f} s | {med['peer']:.2f} s | "
          f"{med['lossview'] / med['floor']:.2f}x | {med['lossview'] / med['peer']:.2f}x |")
    print(f"\nlossview vs brute force (functional_call at the point): max relative error "
          f"{err:.1e}; vs the floor's values: {floor_err:.1e}.\n")
    print("Raw times (s): " + "; ".join(f"{k}: " + ", ".join(f"{v:.2f}" for v in ts)
                                        for k, ts in times.items()))


if __name__ == "__main__":
    main()

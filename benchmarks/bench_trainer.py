"""Overhead of lossview's trainer and Recorder against a bare PyTorch loop doing the same work.

The work: the ``mlp`` problem with its defaults (SGD lr 0.1, batch 32, snapshot every
20 steps), the same batches, one torch thread. Three variants run in one process,
interleaved, ``--repeats`` times each:

- ``bare``: forward, backward, optimizer step; no metrics, nothing written;
- ``trainer``: ``Trainer(config, folder).run()``: per-step metrics (loss, lr, grad/update/
  param norms) to metrics.jsonl, full train/val loss and a snapshot every 20 steps;
- ``recorder``: the bare loop plus ``lossview.Recorder(folder, model, every=20)`` and
  ``rec.log(step, loss=loss.item(), lr=lr)`` every step.

- ``trainer-no-eval``: the trainer with ``eval_snapshots=False`` (no full-data losses).

Prints wall seconds (median and best of the repeats) and the ratios to ``bare`` (goal
<= 1.10): of wall time, of the main (training) thread's CPU time, and of the CPU time of
all threads (the trainer evaluates and writes snapshots in a second thread, which is free
on an idle multi-core machine and not free on a saturated one).

    python benchmarks/bench_trainer.py [--steps 3000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

import lossview
from lossview.core.train.config import TrainConfig
from lossview.core.train.problems import build_problem
from lossview.core.train.trainer import Trainer, run_to_end


def bare(problem, cfg, steps: int, recorder_dir: Path | None = None) -> tuple[float, float, float]:
    model = problem.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, foreach=True)
    x, y = problem.train_data
    g = torch.Generator().manual_seed(cfg.seed)
    per = problem.n_train // cfg.batch_size
    rows: list[torch.Tensor] = []
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    rec = lossview.Recorder(recorder_dir, model, every=cfg.every) if recorder_dir else None
    for step in range(steps):
        if not rows:
            rows = list(torch.randperm(problem.n_train, generator=g)[: per * cfg.batch_size]
                        .view(per, cfg.batch_size).unbind(0))
        idx = rows.pop()
        loss = problem.loss_fn(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rec is not None:
            rec.log(step, loss=loss.item(), lr=cfg.lr)
    if rec is not None:
        rec.close()
    return time.perf_counter() - t0, time.thread_time() - c0, time.process_time() - p0


def trainer(problem, cfg, out: Path) -> tuple[float, float, float]:
    t = Trainer(cfg, out, problem=problem)
    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    s = run_to_end(t.run())
    assert s.status == "finished"
    return time.perf_counter() - t0, time.thread_time() - c0, time.process_time() - p0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    problem = build_problem("mlp")
    cfg, _ = TrainConfig("mlp", steps=args.steps, progress_interval=0.1).resolve(problem)
    cfg_noeval, _ = TrainConfig("mlp", steps=args.steps, progress_interval=0.1,
                                eval_snapshots=False).resolve(problem)
    variants = {
        "bare": lambda r, tmp: bare(problem, cfg, args.steps),
        "trainer": lambda r, tmp: trainer(problem, cfg, tmp / f"t{r}"),
        "trainer-no-eval": lambda r, tmp: trainer(problem, cfg_noeval, tmp / f"n{r}"),
        "recorder": lambda r, tmp: bare(problem, cfg, args.steps, tmp / f"r{r}"),
    }
    times: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for f in variants.values():  # warm-up
            f("w", tmp)
        for r in range(args.repeats):
            for k, f in variants.items():
                times[k].append(f(r, tmp))
    print(f"mlp, {args.steps} steps, batch {cfg.batch_size}, snapshot every {cfg.every}, "
          f"{args.repeats} interleaved repeats, torch {torch.__version__}, 1 torch thread, "
          f"{os.cpu_count()} CPUs")
    print(f"{'variant':16s} {'wall med':>9s} {'wall best':>9s} {'us/step':>8s} {'ratio med':>9s} "
          f"{'ratio best':>10s} {'main-thread CPU':>15s} {'all-thread CPU':>14s}")
    stat = {k: [statistics.median(c) for c in zip(*v)] for k, v in times.items()}
    best = {k: [min(c) for c in zip(*v)] for k, v in times.items()}
    b, bb = stat["bare"], best["bare"]
    for k in variants:
        m, mb = stat[k], best[k]
        print(f"{k:16s} {m[0]:9.3f} {mb[0]:9.3f} {1e6 * m[0] / args.steps:8.0f} {m[0] / b[0]:9.3f} "
              f"{mb[0] / bb[0]:10.3f} {m[1] / b[1]:15.3f} {m[2] / b[2]:14.3f}")


if __name__ == "__main__":
    main()

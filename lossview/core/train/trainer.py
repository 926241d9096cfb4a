"""The trainer: a plain generator that trains a built-in problem and writes a native run.

::

    trainer = Trainer(TrainConfig("mlp", lr=0.05), "runs/mlp")
    for event in trainer.run():      # TrainProgress events, at most every progress_interval s
        ...                          # another thread may call trainer.stop()
    # or: summary = run_to_end(train(config, "runs/mlp"))

Cancel: :meth:`Trainer.stop` (thread-safe, a ``threading.Event``) is checked before
every step, so the run stops within one step; closing the generator also stops it. A
stopped or diverged run is a complete run folder with its status in ``run.json``.

Step convention: ``w_t`` are the weights after ``t`` updates. The metrics record of step
``t`` holds the mini-batch ``loss`` and ``grad_norm`` at ``w_t``, ``param_norm`` = |w_t|,
the ``lr`` of the update taken at ``t`` and ``update_norm`` = |w_{t+1} - w_t|; a snapshot
step also gets ``train_loss`` and ``val_loss`` (full data, eval mode) of ``w_t`` in a
separate record, computed by the writer thread on its own copy of the model.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossview.core.io.native import RunWriter
from lossview.core.train.config import TrainConfig, snapshot_steps
from lossview.core.train.events import STEP_METRICS, TrainProgress, TrainSummary
from lossview.core.train.optim import lr_at, make_optimizer
from lossview.core.train.problems import Problem
from lossview.core.train.sinks import AsyncWriter, MemorySink


class _Batches:
    """Batch indices from a seeded torch.Generator, drawn in chunks (no DataLoader)."""

    def __init__(self, n: int, batch: int | None, sampling: str, gen: torch.Generator) -> None:
        self.n, self.batch, self.sampling, self.gen = n, batch, sampling, gen
        self._rows: list[torch.Tensor] = []
        self._i = 0

    def next(self) -> torch.Tensor | None:
        if self.batch is None:
            return None
        if self._i >= len(self._rows):
            if self.sampling == "replacement":
                idx = torch.randint(self.n, (256, self.batch), generator=self.gen)
            else:
                per = self.n // self.batch
                idx = torch.randperm(self.n, generator=self.gen)[: per * self.batch]
                idx = idx.view(per, self.batch)
            self._rows = list(idx.unbind(0))
            self._i = 0
        self._i += 1
        return self._rows[self._i - 1]


class Trainer:
    """Trains one :class:`TrainConfig`; ``out`` is a folder, a RunWriter, or None (in memory)."""

    def __init__(self, config: TrainConfig, out: str | Path | RunWriter | None = None,
                 overwrite: bool = False, problem: Problem | None = None) -> None:
        self.config, self.problem = config.resolve(problem)
        self.out = out
        self.overwrite = overwrite
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the run to stop; honoured before the next step (thread-safe)."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def run_spec(self) -> dict[str, Any]:
        c, p = self.config, self.problem
        return {
            "problem": p.spec,
            "data": {"n_train": p.n_train,
                     "n_val": None if p.val_data is None else int(p.val_data[0].shape[0]),
                     "source": p.opts.get("data", "generated")},
            "optimizer": {"name": c.optimizer, "lr": c.lr, "momentum": c.momentum,
                          "nesterov": c.nesterov, "weight_decay": c.weight_decay},
            "schedule": {"name": c.schedule, "warmup_steps": c.warmup_steps,
                         "step_every": c.lr_step_every, "gamma": c.lr_gamma, "min_lr": c.min_lr},
            "training": {"steps": c.steps, "batch_size": c.batch_size, "sampling": c.sampling,
                         "label_noise": c.label_noise, "clip_grad": c.clip_grad},
            "snapshots": ({"log_spaced": c.log_snapshots} if c.log_snapshots else {"every": c.every}),
            "seed": c.seed,
            "config": c.to_dict(),
            "step_convention": "metrics and snapshot of step t describe the weights after t updates",
        }

    def _open_sink(self, evaluate: Any) -> AsyncWriter:
        if self.out is None:
            sink: Any = MemorySink(self.run_spec())
        elif isinstance(self.out, RunWriter):
            sink = self.out
            sink.update_spec(**self.run_spec())
        else:
            sink = RunWriter(self.out, self.run_spec(), overwrite=self.overwrite)
        # metrics reach the file at every snapshot and at least every 0.5 s
        return AsyncWriter(sink, evaluate, row_keys=STEP_METRICS, flush_interval=0.5)

    def _evaluator(self):
        """Full-data train/val loss of a snapshot, on a separate model (writer thread)."""
        p = self.problem
        model = p.make_model()
        params = dict(model.named_parameters())
        bufs = dict(model.named_buffers())

        @torch.no_grad()
        def evaluate(arrays: dict, buffers: dict) -> dict[str, float]:
            for k, v in arrays.items():
                params[k].copy_(torch.from_numpy(v))
            for k, v in buffers.items():
                bufs[k].copy_(torch.from_numpy(v))
            m = {"train_loss": p.full_loss(model, p.train_data)}
            if p.val_data is not None:
                m["val_loss"] = p.full_loss(model, p.val_data)
            return m

        return evaluate

    def run(self) -> Generator[TrainProgress, None, TrainSummary]:
        """Train, yielding :class:`TrainProgress`; returns a :class:`TrainSummary`."""
        old_threads = torch.get_num_threads()
        if self.config.threads is not None:
            torch.set_num_threads(self.config.threads)
        try:
            return (yield from self._run())
        finally:
            torch.set_num_threads(old_threads)

    def _run(self) -> Generator[TrainProgress, None, TrainSummary]:
        c, p = self.config, self.problem
        t0 = time.perf_counter()
        model = p.make_model()
        model.train()
        names = [n for n, q in model.named_parameters() if q.requires_grad]
        params = [q for q in model.parameters() if q.requires_grad]
        buffers = dict(model.named_buffers())
        # Gradients, weights, previous weights and the last update are the rows of one
        # tensor (the parameters and their .grad are views into it; backward accumulates in
        # place), so the per-step norms cost one op.
        work = torch.zeros(4, sum(q.numel() for q in params), dtype=params[0].dtype)
        g_row, flat, w_prev, u_row = work.unbind(0)
        flat.copy_(torch.cat([q.detach().reshape(-1) for q in params]))
        views: dict[str, torch.Tensor] = {}
        off = 0
        for n, q in zip(names, params):
            k = q.numel()
            q.data = flat[off:off + k].view_as(q)
            q.grad = g_row[off:off + k].view_as(q)
            views[n] = q.data
            off += k
        opt = make_optimizer(c.optimizer, params, c.lr, c.momentum, c.nesterov, c.weight_decay)
        group = opt.param_groups[0]
        gen = torch.Generator().manual_seed(c.seed)
        x, y = p.train_data
        batches = _Batches(p.n_train, c.batch_size, c.sampling, gen)
        snaps = [int(s) for s in snapshot_steps(c.steps, c.every, c.log_snapshots)]
        snap_i = 0
        const_lr = c.schedule == "constant"
        interval = c.progress_interval
        stop = self._stop
        sink = self._open_sink(self._evaluator() if c.eval_snapshots else None)

        pending: list[tuple] = []  # per-step rows since the last event
        evaluated: dict[int, dict[str, float]] = {}
        last_snap: dict[str, Any] = {}
        last_written = [-1]
        n_snaps = 0
        last_event = time.perf_counter()
        status, div_step, step = "finished", None, 0
        loss_v = math.nan

        def write_snapshot(t: int) -> None:
            nonlocal n_snaps
            arrays = {k: v.numpy().copy() for k, v in views.items()}
            sink.snapshot(t, arrays, buffers)
            n_snaps += 1
            last_written[0] = t
            last_snap.update(step=t, params=arrays)

        def event(t: int, st: str = "running") -> TrainProgress:
            arr = np.array(pending, dtype=np.float64).reshape(-1, 1 + len(STEP_METRICS))
            mets = {"step": arr[:, 0].astype(np.int64)}
            mets.update({k: arr[:, i + 1] for i, k in enumerate(STEP_METRICS)})
            done = dict(sink.results())
            evaluated.update(done)
            ev = TrainProgress(t, c.steps, loss_v, time.perf_counter() - t0, st, mets,
                               snapshot_metrics=done)
            if last_snap:
                ev.snapshot_step = last_snap["step"]
                ev.params = last_snap["params"]
                last_snap.clear()
            pending.clear()
            return ev

        def finish_snapshot(t: int) -> None:
            # the weights w_t at a stop, the end or a divergence: kept if finite and new
            if last_written[0] != t and bool(torch.isfinite(flat).all()):
                write_snapshot(t)
                sink.log(t, param_norm=float(flat.norm()))

        try:
            for step in range(c.steps):
                if stop.is_set():
                    status = "stopped"
                    break
                if step == snaps[snap_i]:
                    write_snapshot(step)
                    snap_i += 1
                idx = batches.next()
                if idx is None:
                    xb, yb = x, y
                else:
                    xb, yb = x[idx], y[idx]
                if c.label_noise > 0:
                    yb = p.noisy_targets(yb, c.label_noise, gen)
                w_prev.copy_(flat)
                loss = p.loss_fn(model(xb), yb)
                g_row.zero_()
                loss.backward()
                if c.clip_grad > 0:
                    gnorm = float(g_row.norm())
                    if gnorm > c.clip_grad:
                        g_row.mul_(c.clip_grad / gnorm)
                lr = c.lr if const_lr else lr_at(step, c.lr, c.schedule, c.steps, c.warmup_steps,
                                                 c.lr_step_every, c.lr_gamma, c.min_lr)
                group["lr"] = lr
                opt.step()
                torch.sub(flat, w_prev, out=u_row)
                gn, _, pn, un = torch.linalg.vector_norm(work, dim=1).tolist()
                loss_v = loss.item()
                if c.clip_grad > 0:
                    gn = gnorm
                row = (step, loss_v, lr, gn, un, pn)
                sink.log_row(row)
                pending.append(row)
                if not math.isfinite(loss_v):
                    status, div_step = "diverged", step
                    break
                if not math.isfinite(un):
                    status, div_step = "diverged", step + 1
                    break
                now = time.perf_counter()
                if now - last_event >= interval:
                    last_event = now
                    sink.flush_if_due()
                    yield event(step + 1)
            else:
                step = c.steps
            if status == "diverged":
                flat.copy_(w_prev)  # back to w_step, the last weights known to be finite
                step = min(div_step, step)
            finish_snapshot(step)
            fields: dict[str, Any] = {"steps_done": step}
            if div_step is not None:
                fields["divergence_step"] = div_step
            if status == "stopped":
                fields["stopped_step"] = step
            sink.close(status, **fields)
        except GeneratorExit:  # closed at a progress event, i.e. after the update of `step`
            done = step + 1
            try:
                finish_snapshot(done)
            finally:
                sink.close("stopped", steps_done=done, stopped_step=done)
            raise
        except BaseException:
            sink.close("failed", steps_done=step)
            raise
        yield event(step, status)
        final = evaluated[max(evaluated)] if evaluated else {}
        return TrainSummary(
            status=status, steps_done=step, total=c.steps, divergence_step=div_step,
            train_loss=final.get("train_loss"), val_loss=final.get("val_loss"),
            n_snapshots=n_snaps, elapsed=time.perf_counter() - t0,
            path=sink.path, config=c,
            run=sink.sink.run() if isinstance(sink.sink, MemorySink) else None)


def train(config: TrainConfig, out: str | Path | RunWriter | None = None,
          overwrite: bool = False) -> Generator[TrainProgress, None, TrainSummary]:
    """Shortcut for ``Trainer(config, out).run()`` (stop it with ``generator.close()``)."""
    return Trainer(config, out, overwrite=overwrite).run()


def run_to_end(gen: Generator[TrainProgress, None, TrainSummary]) -> TrainSummary:
    """Exhaust a training generator and return its summary."""
    while True:
        try:
            next(gen)
        except StopIteration as e:
            return e.value

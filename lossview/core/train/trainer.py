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
the ``lr`` of the update taken at ``t`` and ``update_norm`` = |w_{t+1} - w_t|; at snapshot
steps also ``train_loss`` and ``val_loss`` (full data, eval mode) of ``w_t``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lossview.core.io.native import RunWriter
from lossview.core.train.config import TrainConfig, snapshot_steps
from lossview.core.train.optim import lr_at, make_optimizer
from lossview.core.train.problems import Problem
from lossview.core.train.sinks import BackgroundSnapshots, MemorySink

STEP_METRICS = ("loss", "lr", "grad_norm", "update_norm", "param_norm")


@dataclass
class TrainProgress:
    """What the trainer reports, at most every ``progress_interval`` seconds.

    ``metrics`` holds every per-step record since the previous event as arrays
    (``"step"`` plus :data:`STEP_METRICS`); ``params`` is a copy of the latest snapshot
    written since the previous event (``snapshot_step``), with its ``snapshot_metrics``
    (``train_loss``, ``val_loss``), or None when none was written.
    """

    step: int
    total: int
    loss: float
    elapsed: float
    status: str = "running"
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    snapshot_step: int | None = None
    params: dict[str, np.ndarray] | None = None
    snapshot_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


@dataclass
class TrainSummary:
    """What a finished, stopped or diverged training run returns."""

    status: str  # "finished" | "stopped" | "diverged"
    steps_done: int
    total: int
    divergence_step: int | None
    train_loss: float | None
    val_loss: float | None
    n_snapshots: int
    elapsed: float
    path: Path | None
    config: TrainConfig
    run: Any = None  # lossview.core.run.Run of an in-memory run (out=None)


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

    def _open_sink(self):
        if self.out is None:
            return MemorySink(self.run_spec())
        if isinstance(self.out, RunWriter):
            self.out.update_spec(**self.run_spec())
            return BackgroundSnapshots(self.out)
        return BackgroundSnapshots(RunWriter(self.out, self.run_spec(), overwrite=self.overwrite))

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
        # All weights live in one flat tensor and all gradients in row 0 of `work`
        # (row 1: previous weights, row 2: the update), so the per-step norms are one op.
        flat = torch.cat([q.detach().reshape(-1) for q in params])
        work = torch.zeros(3, flat.numel(), dtype=flat.dtype)
        views: dict[str, torch.Tensor] = {}
        off = 0
        for n, q in zip(names, params):
            k = q.numel()
            q.data = flat[off:off + k].view_as(q)
            q.grad = work[0, off:off + k].view_as(q)
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
        sink = self._open_sink()

        pending: list[tuple] = []
        last_snap: dict[str, Any] = {}
        n_snaps = 0
        last_written = [-1]
        last_event = time.perf_counter()
        status, div_step, step = "finished", None, 0
        loss_v = math.nan
        snap_metrics: dict[str, float] = {}

        def write_snapshot(t: int) -> dict[str, float]:
            nonlocal n_snaps
            last_written[0] = t
            m = {"train_loss": p.full_loss(model, p.train_data)}
            if p.val_data is not None:
                m["val_loss"] = p.full_loss(model, p.val_data)
            arrays = {k: v.numpy().copy() for k, v in views.items()}
            sink.snapshot(t, arrays, buffers)
            n_snaps += 1
            last_snap.update(step=t, params=arrays, metrics=m)
            return m

        def event(t: int, st: str = "running") -> TrainProgress:
            arr = np.array(pending, dtype=np.float64).reshape(-1, 1 + len(STEP_METRICS))
            mets = {"step": arr[:, 0].astype(np.int64)}
            mets.update({k: arr[:, i + 1] for i, k in enumerate(STEP_METRICS)})
            ev = TrainProgress(t, c.steps, loss_v, time.perf_counter() - t0, st, mets)
            if last_snap:
                ev.snapshot_step = last_snap["step"]
                ev.params = last_snap["params"]
                ev.snapshot_metrics = last_snap["metrics"]
                last_snap.clear()
            pending.clear()
            return ev

        try:
            for step in range(c.steps):
                if stop.is_set():
                    status = "stopped"
                    break
                if step == snaps[snap_i]:
                    snap_metrics = write_snapshot(step)
                    snap_i += 1
                idx = batches.next()
                if idx is None:
                    xb, yb = x, y
                else:
                    xb, yb = x[idx], y[idx]
                if c.label_noise > 0:
                    yb = p.noisy_targets(yb, c.label_noise, gen)
                work[1].copy_(flat)
                loss = p.loss_fn(model(xb), yb)
                work[0].zero_()
                loss.backward()
                if c.clip_grad > 0:
                    gnorm = float(work[0].norm())
                    if gnorm > c.clip_grad:
                        work[0].mul_(c.clip_grad / gnorm)
                lr = c.lr if const_lr else lr_at(step, c.lr, c.schedule, c.steps, c.warmup_steps,
                                                 c.lr_step_every, c.lr_gamma, c.min_lr)
                group["lr"] = lr
                opt.step()
                torch.sub(flat, work[1], out=work[2])
                loss_v, gn, pn, un = torch.cat(
                    (loss.detach().reshape(1), torch.linalg.vector_norm(work, dim=1))).tolist()
                if c.clip_grad > 0:
                    gn = gnorm
                rec = {"loss": loss_v, "lr": lr, "grad_norm": gn, "update_norm": un, "param_norm": pn}
                if snap_metrics:
                    rec.update(snap_metrics)
                    snap_metrics = {}
                sink.log(step, **rec)
                pending.append((step, loss_v, lr, gn, un, pn))
                if not math.isfinite(loss_v):
                    status, div_step = "diverged", step
                    break
                if not math.isfinite(un):
                    status, div_step = "diverged", step + 1
                    break
                now = time.perf_counter()
                if now - last_event >= interval:
                    last_event = now
                    yield event(step + 1)
            else:
                step = c.steps
            if status == "diverged":
                flat.copy_(work[1])  # back to w_step, the last weights known to be finite...
                step = min(div_step, step)
            # ...saved if they are finite and not saved yet (last, stopped or diverged step)
            if last_written[0] != step and bool(torch.isfinite(flat).all()):
                m = write_snapshot(step)
                sink.log(step, param_norm=float(flat.norm()), **m)
            fields = {"steps_done": step}
            if div_step is not None:
                fields["divergence_step"] = div_step
            if status == "stopped":
                fields["stopped_step"] = step
            sink.close(status, **fields)
        except GeneratorExit:  # closed at a progress event, i.e. after the update of `step`
            done = step + 1
            try:
                if last_written[0] != done and bool(torch.isfinite(flat).all()):
                    sink.log(done, param_norm=float(flat.norm()), **write_snapshot(done))
            finally:
                sink.close("stopped", steps_done=done, stopped_step=done)
            raise
        except BaseException:
            sink.close("failed", steps_done=step)
            raise
        final = last_snap.get("metrics", {}) if last_snap else {}
        yield event(step, status)
        return TrainSummary(
            status=status, steps_done=step, total=c.steps, divergence_step=div_step,
            train_loss=final.get("train_loss"), val_loss=final.get("val_loss"),
            n_snapshots=n_snaps, elapsed=time.perf_counter() - t0,
            path=getattr(sink, "path", None) if self.out is not None else None,
            config=c, run=sink.run() if isinstance(sink, MemorySink) else None)


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

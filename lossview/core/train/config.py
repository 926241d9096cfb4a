"""TrainConfig: everything the trainer needs, JSON-able, with problem defaults filled in."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from lossview.core.errors import LossviewError
from lossview.core.train.names import OPTIMIZERS, SCHEDULES

if TYPE_CHECKING:  # the problems need torch; a config is checked without it
    from lossview.core.train.problems import Problem

AUTO = "auto"
SAMPLINGS = ("shuffle", "replacement")


@dataclass
class TrainConfig:
    """A training run of a built-in problem.

    Fields set to ``"auto"`` take the problem's defaults (``Problem.default_*``), chosen
    to show its phenomenon; :meth:`resolve` fills them in and checks every value.

    Parameters
    ----------
    problem : a name from ``PROBLEMS`` or a full problem spec (``Problem.spec``).
    problem_options : options of the problem (``dim``, ``hidden``, ``data``...).
    optimizer : ``sgd``, ``adam``, ``adamw`` or ``rmsprop``.
    lr, momentum, nesterov, weight_decay : optimizer settings (``momentum`` is Adam's beta1).
    schedule : ``constant``, ``step``, ``cosine`` or ``warmup`` (linear warm-up), with
        ``warmup_steps``, ``lr_step_every``, ``lr_gamma``, ``min_lr``.
    batch_size : samples per step; ``None`` or 0 = full batch.
    sampling : ``shuffle`` (a new permutation each epoch, last partial batch dropped) or
        ``replacement`` (i.i.d. batches: the noise the quadratic's closed forms assume).
    steps : number of updates; snapshots are taken of the weights after 0..steps updates.
    every : snapshot every ``every`` steps (plus step 0 and the last step).
    log_snapshots : if > 0, about this many log-spaced snapshot steps instead of ``every``.
    seed : seeds the problem (data split, initial weights; unless ``problem`` is a spec,
        which carries its own) and the batch order / label noise.
    label_noise : regression: std of Gaussian noise added to the targets at each step;
        classification: probability of replacing a label by a random class at each step.
    clip_grad : clip the gradient to this global norm (0 = no clipping).
    eval_snapshots : compute the full-data ``train_loss`` / ``val_loss`` of every snapshot
        (in the writer thread, on its own copy of the model).
    threads : torch threads while training (tiny models are fastest on 1); None = leave.
    progress_interval : seconds between progress events (0 = an event every step).
    """

    problem: str | dict = "mlp"
    problem_options: dict = field(default_factory=dict)
    optimizer: str = AUTO
    lr: float | str = AUTO
    momentum: float | str = AUTO
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    lr_step_every: int = 0
    lr_gamma: float = 0.1
    min_lr: float = 0.0
    batch_size: int | str | None = AUTO
    sampling: str = AUTO
    steps: int | str = AUTO
    every: int | str = AUTO
    log_snapshots: int = 0
    seed: int = 0
    label_noise: float = 0.0
    clip_grad: float = 0.0
    eval_snapshots: bool = True
    threads: int | None = 1
    progress_interval: float = 0.1

    def build_problem(self) -> Problem:
        from lossview.core.train.problems import build_problem, problem_from_spec

        if isinstance(self.problem, dict):
            return problem_from_spec({**self.problem, **self.problem_options})
        if not isinstance(self.problem, str):
            raise LossviewError(f"problem must be a name or a spec, not {type(self.problem).__name__}")
        return build_problem(self.problem, self.seed, **self.problem_options)

    def resolve(self, problem: Problem | None = None) -> tuple[TrainConfig, Problem]:
        """A copy with every ``"auto"`` replaced and all values checked, and the problem.

        Raises LossviewError with one line naming the bad value.
        """
        p = problem if problem is not None else self.build_problem()
        c = replace(self, problem=p.spec, problem_options={})
        auto = {"optimizer": p.default_optimizer, "lr": p.default_lr, "momentum": p.default_momentum,
                "batch_size": p.default_batch_size, "sampling": p.default_sampling,
                "steps": p.default_steps, "every": p.default_every}
        for k, v in auto.items():
            if getattr(c, k) == AUTO:
                setattr(c, k, v)
        if c.batch_size == 0:
            c.batch_size = None
        _check(c, p)
        return c, p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise LossviewError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)


def _num(c: TrainConfig, name: str, lo: float = 0.0, lo_open: bool = False,
         hi: float = math.inf, hi_open: bool = False) -> None:
    v = getattr(c, name)
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
        raise LossviewError(f"{name} must be a finite number, not {v!r}")
    if v < lo or (lo_open and v == lo) or v > hi or (hi_open and v == hi):
        lo_s = f"> {lo:g}" if lo_open else f">= {lo:g}"
        hi_s = "" if hi == math.inf else (f" and < {hi:g}" if hi_open else f" and <= {hi:g}")
        raise LossviewError(f"{name} must be {lo_s}{hi_s}, not {v!r}")


def _int(c: TrainConfig, name: str, lo: int) -> None:
    v = getattr(c, name)
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise LossviewError(f"{name} must be an integer >= {lo}, not {v!r}")
    setattr(c, name, int(v))


def _check(c: TrainConfig, p: Problem) -> None:
    if c.optimizer not in OPTIMIZERS:
        raise LossviewError(f"unknown optimizer {c.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
    if c.schedule not in SCHEDULES:
        raise LossviewError(f"unknown schedule {c.schedule!r} (choose from {', '.join(SCHEDULES)})")
    if c.sampling not in SAMPLINGS:
        raise LossviewError(f"unknown sampling {c.sampling!r} (choose from {', '.join(SAMPLINGS)})")
    _num(c, "lr", 0.0, lo_open=True)
    _num(c, "momentum", 0.0, hi=1.0, hi_open=True)
    _num(c, "weight_decay")
    _num(c, "lr_gamma", 0.0, lo_open=True)
    _num(c, "min_lr")
    _num(c, "clip_grad")
    _num(c, "progress_interval")
    _num(c, "label_noise", hi=1.0 if p.task == "classification" else math.inf)
    for name, lo in (("steps", 1), ("every", 1), ("log_snapshots", 0), ("seed", 0),
                     ("warmup_steps", 0), ("lr_step_every", 0)):
        _int(c, name, lo)
    if c.nesterov and (c.optimizer != "sgd" or c.momentum == 0):
        raise LossviewError("nesterov needs the sgd optimizer with momentum > 0")
    if c.batch_size is not None:
        _int(c, "batch_size", 1)
        if c.batch_size > p.n_train:
            raise LossviewError(f"batch_size {c.batch_size} is larger than the {p.n_train} "
                                f"training samples of {p.name!r}")
    if c.threads is not None:
        _int(c, "threads", 1)


def snapshot_steps(steps: int, every: int, log_snapshots: int = 0) -> np.ndarray:
    """Steps whose weights are saved: 0, every ``every`` (or ~``log_snapshots`` log-spaced,
    dense early and sparse late) and ``steps``."""
    if log_snapshots > 0:
        s = np.unique(np.round(np.geomspace(1, steps, log_snapshots)).astype(np.int64))
    else:
        s = np.arange(0, steps + 1, every, dtype=np.int64)
    return np.unique(np.concatenate([[0], s, [steps]]))

"""What the trainer reports and returns: plain data, no torch.

Kept apart from :mod:`~lossview.core.train.trainer` (which needs torch) so that a process
following a training run in a worker process (the desktop app) unpickles its events
without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lossview.core.train.config import TrainConfig

STEP_METRICS = ("loss", "lr", "grad_norm", "update_norm", "param_norm")


@dataclass
class TrainProgress:
    """What the trainer reports, at most every ``progress_interval`` seconds.

    ``metrics`` holds every per-step record since the previous event as arrays
    (``"step"`` plus :data:`STEP_METRICS`); ``params`` is a copy of the latest snapshot
    taken since the previous event (``snapshot_step``), or None when none was taken.
    Snapshots are evaluated (full-data ``train_loss``, ``val_loss``) in a background
    thread; ``snapshot_metrics`` maps the steps whose evaluation finished since the
    previous event to those values (it may lag the snapshot by an event).
    """

    step: int
    total: int
    loss: float
    elapsed: float
    status: str = "running"
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    snapshot_step: int | None = None
    params: dict[str, np.ndarray] | None = None
    snapshot_metrics: dict[int, dict[str, float]] = field(default_factory=dict)

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

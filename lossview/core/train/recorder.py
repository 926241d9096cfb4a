"""Record your own training loop in lossview's run format.

::

    import lossview
    with lossview.Recorder("runs/my-run", model, every=10) as rec:
        for step in range(n_steps):
            ...                                   # your forward, backward, optimizer step
            rec.log(step, loss=loss.item(), lr=lr)

Every ``log`` call appends its metrics to ``metrics.jsonl``. The model's current weights
are saved at the first logged step (normally 0), at every step that is a multiple of
``every``, and, when the recorder closes, at the last logged step. Files are written by a
background thread (numpy copies of the weights are taken at ``log`` time; metrics reach
``metrics.jsonl`` at each snapshot and at least once a second), so the loop barely slows
down. A process killed mid-run leaves a run readable up to its last complete snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossview.core.errors import LossviewError
from lossview.core.io.native import RunWriter
from lossview.core.train.sinks import AsyncWriter


class Recorder:
    """Writes a native run folder from a user's training loop.

    Parameters
    ----------
    path : the run folder to create.
    model : a ``torch.nn.Module``; its trainable parameters are the snapshot's weights and
        its buffers (BatchNorm statistics) are stored beside them.
    every : snapshot interval in steps.
    spec : extra fields for ``run.json`` (model description, optimizer, data, seed...).
    overwrite : replace an existing lossview run at ``path``.
    """

    def __init__(self, path: str | Path, model: Any, every: int = 10,
                 spec: Mapping[str, Any] | None = None, overwrite: bool = False) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise LossviewError(f"every must be a positive integer, not {every!r}")
        if not hasattr(model, "named_parameters"):
            raise LossviewError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self.every = every
        info = {"recorder": {"every": every, "model": type(model).__name__,
                             "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}}
        info.update(spec or {})
        self._sink = AsyncWriter(RunWriter(path, info, overwrite=overwrite))
        self.path = self._sink.path
        self.last_step: int | None = None
        self.last_snapshot_step: int | None = None
        self.closed = False

    # -- recording ---------------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Append ``{"step": step, **metrics}`` and snapshot the weights if it is time."""
        if self.closed:
            raise LossviewError("this Recorder is closed")
        step = int(step)
        self._sink.log(step, **metrics)
        first = self.last_step is None
        self.last_step = step
        if first or step % self.every == 0:
            self.snapshot(step)

    def log_metrics(self, step: int, **metrics: Any) -> None:
        """Append metrics only (no snapshot, step bookkeeping unchanged): e.g. validation."""
        if self.closed:
            raise LossviewError("this Recorder is closed")
        self._sink.log(int(step), **metrics)

    def snapshot(self, step: int, epoch: float | None = None) -> None:
        """Save the model's current weights as the snapshot of ``step`` now."""
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        buffers = {n: b for n, b in self.model.named_buffers()}
        self._sink.snapshot(int(step), params, buffers, epoch)
        self.last_snapshot_step = int(step)

    def update_spec(self, **fields: Any) -> None:
        """Add fields to ``run.json`` (e.g. hyper-parameters known only later)."""
        self._sink.update_spec(**fields)

    def close(self, status: str = "finished") -> None:
        """Snapshot the last logged step if needed, wait for the writes, mark the run."""
        if self.closed:
            return
        self.closed = True
        try:
            if self.last_step is not None and self.last_snapshot_step != self.last_step:
                self.snapshot(self.last_step)
        finally:
            self._sink.close(status, **({} if self.last_step is None else {"steps_done": self.last_step}))

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close("failed" if exc_type is not None else "finished")

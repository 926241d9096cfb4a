"""Record your own training loop in lossview's run format.

::

    import lossview
    with lossview.Recorder("runs/my-run", model, every=10, optimizer=opt) as rec:
        for step in range(n_steps):
            ...                                   # your forward, backward, optimizer step
            rec.log(step, loss=loss.item())

Every ``log`` call appends its metrics to ``metrics.jsonl``. The model's current weights
are saved at the first logged step (normally 0), at every step that is a multiple of
``every``, and, when the recorder closes, at the last logged step. The training thread
only appends each record to a list and, at a snapshot, copies the weights (one copy into one buffer);
every 20 ms it writes what it holds to a writer process's pipe (``writer_process.py``; a
thread where no process can be started, e.g. a frozen app) as far as the pipe takes it
without waiting, and queues the rest for a feeder thread (at most 8 hand-overs and
256 MiB of weights wait; then ``log`` blocks). The process encodes the JSON lines and
writes the checkpoints atomically, so no serialisation shares the loop's GIL. ``close()`` (or
leaving the ``with`` block) waits until everything is written; an error in the writer is
raised in the training thread at the next ``log``/``snapshot`` call or at ``close()``. A
process killed mid-run leaves a run readable up to its last complete snapshot.

Given the optimizer, the recorder writes its class and settings (the first param group's,
``params`` left out) to ``run.json``'s ``optimizer`` and logs its current ``lr`` with every
``log`` call that does not pass one, so a schedule is on record.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lossview.core.errors import LossviewError
from lossview.core.io.native import RunWriter
from lossview.core.train.model_tensors import ModelTensors
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
    optimizer : the ``torch.optim.Optimizer`` the loop steps (optional): its settings go to
        ``run.json`` (``optimizer``; a dict there in ``spec`` overrides single keys) and its
        current lr is logged as ``lr`` by :meth:`log` unless the call passes ``lr``.
    """

    def __init__(self, path: str | Path, model: Any, every: int = 10,
                 spec: Mapping[str, Any] | None = None, overwrite: bool = False,
                 optimizer: Any = None, _writer: str = "process") -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise LossviewError(f"every must be a positive integer, not {every!r}")
        if not hasattr(model, "named_parameters"):
            raise LossviewError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        self._tensors = ModelTensors(model)  # read again only when the model changes
        self.every = every
        info = {"recorder": {"every": every, "model": type(model).__name__,
                             "n_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}}
        info.update(spec or {})
        self.optimizer = _unwrap(optimizer)
        if self.optimizer is not None:
            given = info.get("optimizer")
            info["optimizer"] = optimizer_spec(self.optimizer)
            if isinstance(given, Mapping):
                info["optimizer"].update(given)
        # run.json's fsync is the writer's (the process's), not the training thread's
        self._sink = _open_writer(RunWriter(path, info, overwrite=overwrite, sync=False), _writer)
        # (step, metrics dict): the process writer takes the dict as it is
        self._record = getattr(self._sink, "record", None) or (lambda s, m: self._sink.log(s, **m))
        self.path = self._sink.path
        self.last_step: int | None = None
        self.last_snapshot_step: int | None = None
        self.closed = False

    # -- recording ---------------------------------------------------------------------
    def log(self, step: int, **metrics: Any) -> None:
        """Append ``{"step": step, **metrics}`` and snapshot the weights if it is time."""
        if self.closed:
            raise LossviewError("this Recorder is closed")
        if type(step) is not int:
            step = int(step)
        opt = self.optimizer
        if opt is not None and "lr" not in metrics and "learning_rate" not in metrics:
            lr = opt.param_groups[0].get("lr")
            metrics["lr"] = lr if type(lr) is float else _float(lr)
        self._record(step, metrics)
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
        params, buffers = self._tensors.get()
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


def _open_writer(run: RunWriter, kind: str) -> Any:
    """The writer process (the default), or the writer thread where no process can be
    started (a frozen app) or ``kind`` is ``"thread"`` (benchmarks compare the two)."""
    if kind == "process":
        from lossview.core.train.writer_process import ProcessWriter

        try:
            return ProcessWriter(run)
        except OSError:
            pass
    run.sync_spec()
    return AsyncWriter(run)


def _unwrap(optimizer: Any) -> Any:
    """The torch optimizer inside a wrapper (Lightning's, accelerate's), None for None."""
    if optimizer is None:
        return None
    inner = optimizer
    for _ in range(3):
        deeper = getattr(inner, "optimizer", None)  # accelerate's wrapper has param_groups too
        if hasattr(inner, "param_groups") and hasattr(inner, "state_dict") and \
                not hasattr(deeper, "param_groups"):
            return inner
        inner = deeper if deeper is not None else inner
    raise LossviewError("optimizer must be a torch.optim.Optimizer (something with "
                        f"param_groups), not {type(optimizer).__name__}")


def _float(v: Any) -> float | None:
    if hasattr(v, "item"):
        v = v.item()
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _plain(v: Any) -> Any:
    """A JSON value for a param-group setting, None for what JSON cannot hold (functions)."""
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        items = [_plain(x) for x in v]
        return None if any(x is None for x in items) else items
    return None


def optimizer_spec(optimizer: Any) -> dict[str, Any]:
    """``run.json``'s ``optimizer`` for a torch optimizer: the keys lossview's trainer and
    readers use (``name`` = class name in lower case, ``lr``, ``momentum``, ``nesterov``,
    ``betas``, ``eps``, ``weight_decay``), then every other setting of the first param group
    (``params`` left out), ``class`` and ``source``."""
    from lossview.core.io.optimizer import settings_from_group

    group = optimizer.param_groups[0]
    cls = type(optimizer).__name__
    out = settings_from_group(group, cls.lower())
    for k, v in group.items():
        if k != "params" and k not in out:
            out[k] = _plain(v)
    n = len(optimizer.param_groups)
    out["class"] = f"{type(optimizer).__module__}.{cls}"
    out["source"] = (f"lossview.Recorder(optimizer={cls}): param_groups[0] at the start"
                     + (f" (the first of {n} param groups)" if n > 1 else ""))
    return out

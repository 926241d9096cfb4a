"""Live training: the trainer in a child process feeding a Run that grows as snapshots arrive.

:class:`LiveRun` is an in-memory :class:`~lossview.core.run.Run` to which snapshots and
metric records are appended on the GUI thread; the panels call ``set_run`` on it like on
any other run. :class:`LiveTraining` drives one :class:`~lossview.core.train.trainer.Trainer`
in a child process (:func:`lossview.core.tasks.jobs.train_stream` in a
:class:`~lossview.gui.workers.ProcessWorker`), so training does not share the GUI
thread's GIL. The trainer yields every step; the worker batches those events to at most
~30 deliveries a second, so ``run_updated`` is throttled the same way. The run folder the
trainer writes is the durable result: ``run_finished`` carries its path, whether training
finished, diverged or was stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from lossview.core.io.memory import MemoryReader
from lossview.core.run import MetricSeries, Run, Snapshot
from lossview.core.tasks.jobs import train_stream
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker


class LiveRun(Run):
    """A Run that grows: :meth:`append_snapshot`, :meth:`append_metrics`, then :meth:`publish`.

    :attr:`live` until :meth:`finish` records how training ended (:attr:`status`); views
    that need the whole run (the loss surface) wait for it. Only the GUI thread touches it.
    """

    def __init__(self, path: Path | str, spec: Mapping[str, Any] | None = None) -> None:
        self._reader = MemoryReader([])
        super().__init__(Path(path), "lossview", [], self._reader, {}, (), {},
                         dict(spec or {}), cache_size=0)
        #: how training ended ("finished", "diverged", "stopped", "failed"); None while
        #: it runs
        self.status: str | None = None
        self.spec.setdefault("name", Path(path).name)
        # name -> [steps buffer, values buffer, count]; buffers grow by doubling, and the
        # published MetricSeries are views of their filled prefix (never written again)
        self._cols: dict[str, list] = {}
        self._dirty = False

    def append_snapshot(self, step: int, params: Mapping[str, np.ndarray],
                        epoch: float | None = None) -> None:
        """Add the weights after ``step`` updates (``params``: name -> array, not copied)."""
        tensors = {k: np.asarray(v) for k, v in params.items()}
        if not self.param_shapes:
            # sorted by name, the order the native reader gives the saved run, so a
            # snapshot's flat vector is the same live and reopened from disk
            self.param_shapes = {k: tuple(tensors[k].shape) for k in sorted(tensors)
                                 if np.issubdtype(tensors[k].dtype, np.floating)}
            self.param_names = list(self.param_shapes)
            sizes = [int(np.prod(s, dtype=np.int64)) for s in self.param_shapes.values()]
            self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        if self.snapshots and int(step) <= self.snapshots[-1].step:
            return  # the trainer re-reports a snapshot it already sent
        self._reader._tensors.append(tensors)
        self.snapshots.append(Snapshot(step=int(step), source=self.path, epoch=epoch,
                                       meta={"index": len(self.snapshots)}))

    def append_metrics(self, steps: np.ndarray, **columns: np.ndarray) -> None:
        """Add per-step records (``steps`` and equally long value arrays)."""
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        k = len(steps)
        for name, values in columns.items():
            vals = np.asarray(values, dtype=np.float64).reshape(-1)
            if len(vals) != k or k == 0:
                continue
            col = self._cols.get(name)
            if col is None:
                col = self._cols[name] = [np.empty(256, np.int64), np.empty(256), 0]
            n = col[2]
            if n + k > len(col[0]):
                cap = max(2 * len(col[0]), n + k)
                col[0] = np.concatenate([col[0][:n], np.empty(cap - n, np.int64)])
                col[1] = np.concatenate([col[1][:n], np.empty(cap - n)])
            col[0][n:n + k] = steps
            col[1][n:n + k] = vals
            col[2] = n + k
        self._dirty = self._dirty or k > 0

    def append_point(self, step: int, **values: float) -> None:
        """One record of scalar metrics at ``step`` (e.g. full-data losses at a snapshot)."""
        ok = {k: np.array([v]) for k, v in values.items() if v is not None}
        if ok:
            self.append_metrics(np.array([step]), **ok)

    def publish(self) -> None:
        """Rebuild :attr:`metrics` from what was appended (call before notifying views)."""
        if not self._dirty:
            return
        out = {}
        for k, (steps_buf, vals_buf, n) in self._cols.items():
            steps, vals = steps_buf[:n], vals_buf[:n]
            if n > 1 and (np.diff(steps) < 0).any():
                order = np.argsort(steps, kind="stable")
                steps, vals = steps[order], vals[order]
            out[k] = MetricSeries(steps, vals)
        self.metrics = out
        self._dirty = False

    @property
    def live(self) -> bool:
        """Training has not ended: more snapshots may arrive."""
        return self.status is None

    def finish(self, status: str) -> None:
        self.publish()
        self.status = status
        self.spec["status"] = status


class LiveTraining(QObject):
    """One training run in a child process (a thread where there are none), mirrored
    into a :class:`LiveRun`.

    Signals
    -------
    run_started(object) : the LiveRun, before its first snapshot.
    run_updated(object) : the LiveRun grew (at most ~30 times a second).
    progress(object) : the latest ``TrainProgress`` event.
    run_finished(object) : ``Path`` of the run folder (finished, diverged or stopped).
    failed(str) : one-line reason training could not run or crashed.
    finished(object) : the ``TrainSummary`` (None when stopped).
    """

    run_started = Signal(object)
    run_updated = Signal(object)
    progress = Signal(object)
    run_finished = Signal(object)
    failed = Signal(str)
    finished = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker: GeneratorWorker | ProcessWorker | None = None
        self.run: LiveRun | None = None
        self.path: Path | None = None
        self.summary: Any = None
        self.error: str | None = None
        self.last_event: Any = None

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def start(self, config: Any, out_dir: Path | str) -> None:
        """Train ``config`` (a TrainConfig) into the new folder ``out_dir``.

        Everything, including checking the configuration and building the problem (which
        may load a data set), happens in the worker; a bad setting arrives as ``failed``
        with one line, and ``run_started`` comes once the trainer is set up.
        """
        if self.is_running():
            raise RuntimeError("training is already running")
        self.path = Path(out_dir)
        self.summary = None
        self.error = None
        self.run = None
        worker = make_worker(train_stream, config, self.path, parent=self)
        worker.progress.connect(self._on_events)
        worker.finished.connect(self._on_finished)
        worker.errored.connect(self._on_error)
        worker.done.connect(self._on_done)
        self.worker = worker
        worker.start()

    def stop(self) -> None:
        """Stop within one step; what was saved stays in the run folder."""
        if self.worker is not None:
            self.worker.cancel()

    def wait(self, msecs: int = -1) -> bool:
        return True if self.worker is None else self.worker.wait(msecs)

    # -- GUI thread ------------------------------------------------------------------
    def _on_events(self, events: list) -> None:
        if events and isinstance(events[0], dict):  # the run spec: the trainer is set up
            self.run = LiveRun(self.path, events[0])
            self.run_started.emit(self.run)
            events = events[1:]
        run = self.run
        if run is None or not events:
            return
        for ev in events:
            mets = ev.metrics or {}
            if "step" in mets and len(mets["step"]):
                run.append_metrics(mets["step"], **{k: v for k, v in mets.items() if k != "step"})
            if ev.params is not None and ev.snapshot_step is not None:
                run.append_snapshot(ev.snapshot_step, ev.params)
            # full-data losses of snapshots, evaluated in the background: {step: {name: v}}
            for step, vals in (ev.snapshot_metrics or {}).items():
                run.append_point(int(step), **{k: v for k, v in vals.items()
                                               if v is not None and math.isfinite(v)})
        self.last_event = events[-1]
        run.publish()
        self.progress.emit(events[-1])
        self.run_updated.emit(run)

    def _on_finished(self, summary: Any) -> None:
        self.summary = summary

    def _on_error(self, message: str) -> None:
        self.error = message
        self.failed.emit(message)

    def _on_done(self) -> None:
        run, worker = self.run, self.worker
        self.worker = None
        if worker is not None:
            worker.wait()
        status = getattr(self.summary, "status", None) or (
            "stopped" if worker is not None and worker.cancel_requested else "failed")
        if run is not None:
            run.finish(status)
            self.run_updated.emit(run)
        self.finished.emit(self.summary)
        if self.path is not None and (self.path / "run.json").is_file():
            self.run_finished.emit(self.path)

"""Showing a run while it trains: the panels follow a growing LiveRun.

The loss panel and timeline update on every ``run_updated`` (already throttled to ~30/s by
the training worker). PCA and the diagnostics need the whole trajectory, so they are
recomputed on a frozen copy of the run in a worker, one at a time and at most every
``ANALYSIS_INTERVAL`` seconds; the loss surface waits for the finished run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from PySide6.QtCore import QObject

from lossview.core.run import MetricSeries, Run
from lossview.gui.loader import analyze_run
from lossview.gui.workers import GeneratorWorker

log = logging.getLogger("lossview.gui")

ANALYSIS_INTERVAL = 2.0


def frozen_copy(run: Any) -> Run | None:
    """A Run over the snapshots a live run holds now (no arrays copied), or None."""
    from lossview.core.io.memory import MemoryReader

    tensors = getattr(run.reader, "_tensors", None)
    if tensors is None:
        return None
    n = len(run.snapshots)
    metrics = {k: MetricSeries(s.steps.copy(), s.values.copy()) for k, s in run.metrics.items()}
    return Run(run.path, run.format, list(run.snapshots[:n]), MemoryReader(list(tensors[:n])),
               run.param_shapes, run.buffer_names, metrics, dict(run.spec), list(run.warnings),
               cache_size=0)


class LiveView(QObject):
    """Drives ``window``'s panels from a training run; see the module docstring."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.run: Any = None
        self._worker: GeneratorWorker | None = None
        self._last = 0.0

    def start(self, run: Any) -> None:
        self.run = run
        self.win.set_run(run, None, step=None)
        self.win.statusBar().showMessage(f"Training {run.name} live…")

    def update(self, run: Any) -> None:
        if run is not self.run:
            return
        w = self.win
        w.timeline_bar.set_steps(run.steps, [s.epoch for s in run.snapshots])
        w.loss_panel.set_run(run, w.report)
        w.timeline.set_count(len(run), keep_end=True)
        if self._worker is None and time.monotonic() - self._last >= ANALYSIS_INTERVAL \
                and len(run) >= 3:
            self._analyse()

    def stop(self) -> None:
        """Training ended (the saved folder is opened next) or the window closes."""
        self.run = None
        if self._worker is not None:
            self._worker.cancel()

    def wait(self, msecs: int = 5000) -> None:
        if self._worker is not None:
            self._worker.wait(msecs)

    def _analyse(self) -> None:
        frozen = frozen_copy(self.run)
        if frozen is None:
            return
        live = self.run
        worker = GeneratorWorker(lambda: analyze_run(frozen), parent=self)
        worker.finished.connect(lambda rep: self._on_report(live, frozen, rep))
        worker.errored.connect(lambda msg: log.info("live analysis failed: %s", msg))
        worker.done.connect(lambda: self._on_done(worker))
        self._worker = worker
        self._last = time.monotonic()
        worker.start()

    def _on_report(self, live: Any, frozen: Run, report: dict) -> None:
        if live is not self.run:
            return
        w = self.win
        w.report = report
        w.trajectory_panel.set_run(frozen, report)
        w.diagnostics_panel.set_run(frozen, report)
        w.loss_panel.set_run(live, report)

    def _on_done(self, worker: GeneratorWorker) -> None:
        if worker is self._worker:
            self._worker = None
            self._last = time.monotonic()
        worker.deleteLater()

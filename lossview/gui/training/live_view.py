"""Showing a run while it trains: the panels follow a growing LiveRun.

``run_updated`` arrives up to ~30 times a second; the window's loss panel, timeline and
timeline bar are refreshed from it at most once per ``REFRESH_INTERVAL`` seconds (the
updates in between are coalesced; the last one lands unless the finished run is about to
be reopened from its folder), as steps of the window's update path
(:mod:`~lossview.gui.plotkit.frames`, one per frame): the timeline, the loss panel's plots,
then each follower (the train dialog's plot). A refresh repaints most of
the window, which costs tens of milliseconds on a software-rendered display; refreshing
at 30 Hz kept the GUI thread painting without a pause for seconds (timers and input
starved), so the interval also grows to ``REFRESH_LOAD`` times the measured cost of
the last refresh, repaints included. PCA and the diagnostics need the whole trajectory, so
they are recomputed on a frozen copy of the run in a worker, one at a time, at most
every ``ANALYSIS_INTERVAL`` seconds and ``ANALYSIS_LOAD`` times what the last one took
(its report shown included); the loss surface waits for the finished run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer

from lossview.core.analysis.report_model import RunReport
from lossview.core.run import MetricSeries, Run
from lossview.core.tasks.jobs import analysis
from lossview.gui.plotkit.frames import frames
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker

log = logging.getLogger("lossview.gui")

#: the live analysis reruns at most this often (seconds) after the last one ended ...
ANALYSIS_INTERVAL = 0.75
#: ... and leaves at least (ANALYSIS_LOAD - 1) times as long as the last one took between
#: two (every 2 s, the trajectory of a 5 s run showed its first 14 of 151 snapshots until
#: the run ended: the analysis itself took 0.1 s)
ANALYSIS_LOAD = 3.0
#: the window follows a live run at most this often (seconds) ...
REFRESH_INTERVAL = 0.2
#: ... and leaves the GUI thread idle at least (REFRESH_LOAD - 1) times as long as a
#: refresh (its repaint included) took
REFRESH_LOAD = 4.0


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


def _settled(fn: Callable[[], None], panel: Any) -> Callable[[], Any]:
    """``fn``, returning ``panel``: the update path lays it out and ranges it at once, so
    that it paints once."""
    def step() -> Any:
        fn()
        return panel
    return step


class LiveView(QObject):
    """Drives ``window``'s panels from a training run; see the module docstring."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.run: Any = None
        self._worker: GeneratorWorker | ProcessWorker | None = None
        self._last = 0.0  # when the last live analysis ended (monotonic seconds)
        self._analysis_cost = 0.0  # ... and how long it took, its report shown included
        self._t_analysis = 0.0  # when the last one started
        self._pending = False
        self._cost = 0.0  # seconds the latest refresh's parts took, repaints included
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer)
        #: more views of the run (the train dialog's plot), each refreshed in a turn of
        #: its own after the window's
        self.followers: list[Callable[[], None]] = []

    def start(self, run: Any) -> None:
        frames().cancel(self)
        self.run = run
        self._pending = False
        self.win.set_run(run, None, step=None)
        self.win.statusBar().showMessage(f"Training {run.name} live…")

    def update(self, run: Any) -> None:
        """``run`` grew: refresh now, or once the refresh interval has passed. The update
        after training ended is never deferred, and skipped when the run was saved (the
        saved run is shown next)."""
        if run is not self.run:
            return
        if not run.live and (Path(run.path) / "run.json").is_file():
            # training ended and its folder is complete: the window opens the saved run
            # next, which replaces every panel; a last live refresh would be painted
            # just before that (~100 ms of the GUI thread for nothing)
            self._pending = False
            self._timer.stop()
            return
        if self._timer.isActive() and run.live:
            self._pending = True
            return
        self._refresh()

    def _on_timer(self) -> None:
        if self._pending and self.run is not None:
            self._refresh()

    def _refresh(self) -> None:
        """Show the grown run over event-loop turns: the timeline and its bar (cheap, but
        they move every panel's cursor), then the loss panel a plot a turn (curves,
        ranges and repaint: the costly part), then each follower. In one turn the
        window's part blocked the GUI thread for 40-55 ms, with the train dialog's plot
        often in the same pass."""
        if frames().active(self, "report") and self.run is not None and self.run.live:
            # a new report is being shown panel by panel (the loss panel among them):
            # refreshing now would paint in one of its turns; come back after it
            self._pending = True
            self._timer.start(int(1000 * REFRESH_INTERVAL / 2))
            return
        self._pending = False
        run = self.run
        w = self.win
        # the next refresh waits on what the last one's parts cost, repaints included
        self._timer.start(int(1000 * max(REFRESH_INTERVAL, REFRESH_LOAD * self._cost)))
        self._cost = 0.0

        def timeline() -> None:
            w.timeline.set_steps(run.steps, keep_end=True)
            w.timeline_bar.set_labels([s.epoch for s in run.snapshots])

        def current(part):
            return lambda: part() if run is self.run else None

        loss = [current(_settled(part, w.loss_panel))
                for part in w.loss_panel.run_parts(run, w.report)]
        steps = [timeline, *loss, *self.followers]
        frames().submit(self, "refresh", [self._measured(step) for step in steps],
                        reveal=False)
        due = max(ANALYSIS_INTERVAL, ANALYSIS_LOAD * self._analysis_cost)
        if self._worker is None and time.monotonic() - self._last >= due and len(run) >= 3:
            self._analyse()

    def _measured(self, step):
        """``step``, adding what it costs, its repaint included, to the refresh's cost."""
        def measured() -> Any:
            t0 = time.perf_counter()
            shown = step()
            # the repaint runs after this returns: measured when the event loop is back
            QTimer.singleShot(0, self, lambda: self._add_cost(time.perf_counter() - t0))
            return shown
        return measured

    def _add_cost(self, seconds: float) -> None:
        self._cost += seconds

    def stop(self) -> None:
        """Training ended (the saved folder is opened next) or the window closes."""
        self.run = None
        self._pending = False
        self._timer.stop()
        frames().cancel(self)
        if self._worker is not None:
            self._worker.stop()  # the analysis only reads: killed if it lingers

    def wait(self, msecs: int = 5000) -> None:
        if self._worker is not None:
            self._worker.wait(msecs)

    def _analyse(self) -> None:
        frozen = frozen_copy(self.run)
        if frozen is None:
            return
        live = self.run
        # in a child process (the frozen run is sent there whole: a few MB for the built-in
        # problems): its Python-level loops would hold the GIL against the live refreshes
        worker = make_worker(analysis, frozen, parent=self)
        worker.finished.connect(lambda rep: self._on_report(live, rep))
        worker.errored.connect(lambda msg: log.info("live analysis failed: %s", msg))
        worker.done.connect(lambda: self._on_done(worker))
        self._worker = worker
        self._last = self._t_analysis = time.monotonic()
        worker.start()

    def _on_report(self, live: Any, report: RunReport | dict) -> None:
        """The panels get the new report (of the snapshots the live run had when the
        analysis started; the panels show the live run) one plot per frame (together they
        blocked the GUI thread for 260-300 ms while training): the trajectory (its baseline
        plot follows by itself), the diagnostics, then the loss panel's markers. Nothing
        is veiled: each plot shows its old data until its turn (veiled plots blinked blank
        every time an analysis came back)."""
        if live is not self.run:
            return
        w = self.win
        w.report = report = RunReport.of(report)

        def whole(p, run):
            return _settled(lambda: p.set_run(run, report), p)

        diag = w.diagnostics_panel
        parts = [whole(w.trajectory_panel, live)]
        if hasattr(diag, "run_parts"):  # (a placeholder panel where a build lacks one)
            parts += [_settled(f, diag) for f in diag.run_parts(live, report)]
        else:
            parts.append(whole(diag, live))
        parts += [_settled(f, w.loss_panel) for f in w.loss_panel.run_parts(live, report)]

        def shown() -> None:  # the next analysis is timed from here
            self._last = time.monotonic()
            self._analysis_cost = self._last - self._t_analysis

        # (stop() and start() cancel what is left: the saved run or a new one is shown next)
        frames().submit(self, "report", [*parts, shown], reveal=False)

    def _on_done(self, worker: GeneratorWorker | ProcessWorker) -> None:
        if worker is self._worker:
            self._worker = None
            self._last = time.monotonic()
        worker.deleteLater()

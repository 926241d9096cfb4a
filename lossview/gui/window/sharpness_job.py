"""Sharpness of a shown run, measured in a worker once its panels are painted.

The largest Hessian eigenvalue at a few snapshots against 2/lr (Cohen et al. 2021) needs
the model and data, so it runs after loading, in a child process (a thread for runs that
cannot be reopened there: :func:`lossview.core.tasks.jobs.run_arg`); the table goes into the
run's new report, with the answers and the diagnosis core recomputed with it
(:meth:`~lossview.core.analysis.report_model.RunReport.with_sharpness`), so that what the window
says is what ``lossview analyze --json`` says. One measurement at a time: a new run
cancels the previous one.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from lossview.core.analysis.report_model import RunReport
from lossview.core.tasks import jobs
from lossview.core.tasks.loader import can_measure_sharpness
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker


class SharpnessJob(QObject):
    """``measured(run, new_report, table)`` / ``failed(run, message)``; ``progress(list)``
    carries the worker's progress items (for the status bar)."""

    measured = Signal(object, object, object)
    failed = Signal(object, str)
    progress = Signal(list)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker: GeneratorWorker | ProcessWorker | None = None

    @staticmethod
    def possible(run: Any, report: RunReport | None, model_file: str | None,
                 data: Any = None) -> bool:
        """A report without sharpness yet, for a run whose model can be rebuilt (``data``:
        a Hugging Face folder's :class:`~lossview.core.tasks.loader.DataFile`)."""
        return report is not None and not report.sharpness \
            and can_measure_sharpness(run, model_file, data)

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def start(self, run: Any, report: RunReport, model_file: str | None, data: Any = None) -> None:
        self.cancel()
        arg, in_child = jobs.run_arg(run)
        worker = make_worker(jobs.sharpness, arg, parent=self, in_child=in_child,
                             model_file=model_file, data=data)
        # a cancelled measurement's late signals are dropped here: nothing of it arrives
        worker.progress.connect(lambda items, w=worker: self._current(w)
                                and self.progress.emit(items))
        worker.finished.connect(lambda table, w=worker: self._current(w)
                                and self._on_finished(run, report, table))
        worker.errored.connect(lambda msg, w=worker: self._current(w)
                               and self.failed.emit(run, msg))
        worker.done.connect(lambda w=worker: self._on_done(w))
        self._worker = worker
        worker.start()

    def cancel(self, msecs: int = 0) -> None:
        """Stop the measurement; nothing of it arrives afterwards. ``msecs``: wait up to
        that long for the worker to end; 0: do not wait (a child still measuring a
        second later is killed: :meth:`~lossview.gui.workers.ProcessWorker.stop`)."""
        w, self._worker = self._worker, None
        if w is None:
            return
        if msecs:
            w.cancel()
            w.wait(msecs)
        else:
            w.stop()

    def _current(self, worker: GeneratorWorker | ProcessWorker) -> bool:
        return worker is self._worker

    def _on_finished(self, run: Any, report: RunReport, table: dict) -> None:
        # a new report: the stability answer, and the diagnosis built on it, recomputed
        self.measured.emit(run, report.with_sharpness(table), table)

    def _on_done(self, worker: GeneratorWorker | ProcessWorker) -> None:
        if worker is self._worker:
            self._worker = None
        worker.deleteLater()

"""Run a core generator in a worker thread: batched progress, cooperative cancel, errors.

Core computations are plain generators (yield progress, return the result). A
:class:`GeneratorWorker` iterates one on a QThread and reports back on the GUI thread:

- ``progress(list)``: everything yielded since the last emission, at most one emission
  per ``min_interval`` seconds (so the UI updates at a bounded rate) and nothing dropped;
- ``finished(object)``: the generator's return value;
- ``errored(str)``: a one-line message (the traceback goes to the ``lossview`` logger);
- ``cancelled()``: after :meth:`cancel`, once the generator has been closed;
- ``done()``: always last, whatever happened, once the worker thread has ended.

Cancel is cooperative: the generator is closed (``GeneratorExit`` at its current
``yield``) before it is resumed again, so a generator that yields once per step stops
within one step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

log = logging.getLogger("lossview.gui.workers")


class _Thread(QThread):
    def __init__(self, worker: GeneratorWorker) -> None:
        super().__init__()
        self._worker = worker

    def run(self) -> None:  # runs on the worker thread
        self._worker._work()


class GeneratorWorker(QObject):
    """Iterate ``make_generator()`` on a worker thread; see the module docstring."""

    progress = Signal(list)
    finished = Signal(object)
    errored = Signal(str)
    cancelled = Signal()
    done = Signal()
    _ended = Signal()  # from the worker thread; re-emitted as ``done`` once it has ended

    def __init__(
        self,
        make_generator: Callable[[], Generator[Any, Any, Any]],
        min_interval: float = 1 / 30,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._make = make_generator
        self._min_interval = float(min_interval)
        self._cancel = threading.Event()
        self._thread: _Thread | None = None
        self._ended.connect(self._on_ended)

    # -- control (GUI thread) -----------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a GeneratorWorker runs once; make a new one")
        self._thread = _Thread(self)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the generator to stop; it is closed at its next ``yield``."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the thread ends (``msecs < 0``: no limit). True if it ended."""
        if self._thread is None:
            return True
        return self._thread.wait() if msecs < 0 else self._thread.wait(int(msecs))

    # -- work (worker thread) -----------------------------------------------------
    def _work(self) -> None:
        pending: list[Any] = []
        last_emit = 0.0
        try:
            gen = self._make()
            try:
                while True:
                    if self._cancel.is_set():
                        gen.close()
                        if pending:
                            self.progress.emit(pending)
                        self.cancelled.emit()
                        return
                    try:
                        item = next(gen)
                    except StopIteration as stop:
                        if pending:
                            self.progress.emit(pending)
                        if self._cancel.is_set():
                            self.cancelled.emit()
                        else:
                            self.finished.emit(stop.value)
                        return
                    pending.append(item)
                    now = time.monotonic()
                    if now - last_emit >= self._min_interval:
                        self.progress.emit(pending)
                        pending = []
                        last_emit = now
            finally:
                gen.close()
        except Exception as e:  # noqa: BLE001 - any failure becomes a message, never a crash
            log.exception("worker failed")
            if pending:
                self.progress.emit(pending)
            lines = str(e).strip().splitlines()
            self.errored.emit(lines[0] if lines else type(e).__name__)
        finally:
            self._ended.emit()

    def _on_ended(self) -> None:  # GUI thread
        # ``done`` means the thread has ended, not merely that its work has: a listener
        # that quits the application on ``done`` must not destroy a QThread still
        # returning from run() (Qt aborts: "QThread: Destroyed while thread is still running")
        if self._thread is not None:
            self._thread.wait()
        self.done.emit()

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

:class:`ProcessWorker` has the same signals and runs the generator in a child process
(:mod:`lossview.core.tasks.processes`): heavy work (training, surfaces, sharpness) then does not
compete with the GUI thread for the GIL. :func:`make_worker` picks it where it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal

log = logging.getLogger("lossview.gui.workers")


class _Thread(QThread):
    def __init__(self, worker: GeneratorWorker | ProcessWorker) -> None:
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

    def stop(self, kill_after_ms: int = 1000) -> None:
        """As :meth:`ProcessWorker.stop`; a thread cannot be killed: only cancelled."""
        self.cancel()

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
        except Exception as e:
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


class ProcessWorker(QObject):
    """``func(*args, **kwargs)``, a generator, iterated in a child process.

    Same signals, ``cancel``/``wait``/``is_running`` as :class:`GeneratorWorker`. ``func``
    and its arguments are pickled by reference, so ``func`` is a module-level function of
    a module that does not import Qt, and what it yields and returns must be picklable.
    A thread of this process reads the child's messages and emits the signals; a child
    that dies (killed, crashed) arrives as ``errored`` with its exit code.
    """

    progress = Signal(list)
    finished = Signal(object)
    errored = Signal(str)
    cancelled = Signal()
    done = Signal()
    _ended = Signal()

    #: after ``wait`` times out on a cancelled job, the child is killed and waited for
    KILL_AFTER_CANCEL = True

    def __init__(self, func: Callable[..., Generator[Any, Any, Any]], *args: Any,
                 min_interval: float = 1 / 30, parent: QObject | None = None,
                 **kwargs: Any) -> None:
        super().__init__(parent)
        self._job = (func, args, kwargs)
        #: the job's return value once it has finished (also carried by ``finished``)
        self.result: Any = None
        self._min_interval = float(min_interval)
        self._cancel_requested = False
        self._proc = self._conn = self._event = None
        self._thread: _Thread | None = None
        self._ended.connect(self._on_ended)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a ProcessWorker runs once; make a new one")
        from lossview.core.tasks import processes

        # the child is started on the reader thread: starting waits for the forkserver,
        # which imports torch for about a second after the app's launch
        self._event = processes.context().Event()
        if self._cancel_requested:
            self._event.set()
        self._thread = _Thread(self)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel_requested = True
        if self._event is not None:
            self._event.set()

    def stop(self, kill_after_ms: int = 1000) -> None:
        """Cancel without waiting; a child still running ``kill_after_ms`` later is killed
        (a job between two ``yield``s, a Hessian's Lanczos or a surface tile, can take
        seconds to reach the next). For jobs that only read (surface, sharpness,
        analysis), never for training: its child writes the run folder."""
        self.cancel()
        QTimer.singleShot(int(kill_after_ms), self, self._kill)

    def _kill(self) -> None:  # GUI thread, after stop()
        proc = self._proc
        if proc is not None and self.is_running():
            proc.kill()  # the reader thread then sees EOF: ``cancelled``, then ``done``

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the job has ended (``msecs < 0``: no limit). A cancelled job still
        running after ``msecs`` is killed (its generator cannot reach a ``yield``)."""
        if self._thread is None:
            return True
        if msecs < 0:
            return self._thread.wait()
        if self._thread.wait(int(msecs)):
            return True
        proc = self._proc
        if self._cancel_requested and self.KILL_AFTER_CANCEL and proc is not None:
            proc.kill()
            return self._thread.wait(2000)
        return False

    def _work(self) -> None:  # the reader thread
        from lossview.core.tasks import processes

        func, args, kwargs = self._job
        try:
            proc, conn, _ = processes.start(func, args, kwargs, self._min_interval,
                                       name=f"lossview-{func.__name__}", cancel=self._event)
        except Exception as e:
            log.exception("starting the worker process failed")
            self.errored.emit(f"could not start the worker process: {e}".splitlines()[0])
            self._ended.emit()
            return
        self._proc, self._conn = proc, conn
        try:
            while True:
                try:
                    kind, value = conn.recv()
                except EOFError:
                    proc.join(5)
                    if self._cancel_requested:
                        self.cancelled.emit()
                    else:
                        self.errored.emit("the worker process ended unexpectedly "
                                          f"(exit code {proc.exitcode})")
                    return
                if kind == "progress":
                    self.progress.emit(value)
                    continue
                if kind == "result":
                    self.result = value
                    self.finished.emit(value)
                elif kind == "cancelled":
                    self.cancelled.emit()
                else:
                    line, tb = value
                    if tb:  # unexpected: the traceback goes to the log
                        log.error("worker process failed:\n%s", tb)
                    else:  # an expected condition, said to the user in one line
                        log.debug("worker process: %s", line)
                    self.errored.emit(line)
                return
        except Exception as e:
            log.exception("reading the worker process failed")
            lines = str(e).strip().splitlines()
            self.errored.emit(lines[0] if lines else type(e).__name__)
        finally:
            conn.close()
            proc.join(5)
            self._ended.emit()

    def _on_ended(self) -> None:  # GUI thread
        if self._thread is not None:
            self._thread.wait()
        self.done.emit()


def make_worker(func: Callable[..., Generator[Any, Any, Any]], *args: Any,
                min_interval: float = 1 / 30, parent: QObject | None = None,
                in_child: bool = True, **kwargs: Any) -> GeneratorWorker | ProcessWorker:
    """A :class:`ProcessWorker` for ``func(*args, **kwargs)`` where child processes are
    available (:func:`lossview.core.tasks.processes.available`) and ``in_child``, else a
    :class:`GeneratorWorker` running it on a thread of this process."""
    from lossview.core.tasks import processes

    if in_child and processes.available():
        return ProcessWorker(func, *args, min_interval=min_interval, parent=parent, **kwargs)
    return GeneratorWorker(lambda: func(*args, **kwargs), min_interval=min_interval,
                           parent=parent)

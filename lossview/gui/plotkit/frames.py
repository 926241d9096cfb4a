"""The window's one update path: view updates queued by name, run one per frame.

Every costly change of what the window shows goes through :func:`frames`: a run opened
(each panel gets it, then its plots are revealed), a surface drawn for the first time, a
sharpness measured, a live run refreshed, a hidden page laid out. Each is a *sequence* of
steps submitted under a key ``(owner, name)``:

- **one step per frame, window-wide**: the scheduler runs one step of one sequence, then
  leaves the event loop ``INTERVAL_MS`` for the step's paint, input and timers. A run's
  first paint is tens of milliseconds per plot on a software-rendered display (axes, text
  and curves rendered into their caches: the trajectory panel 25-35 ms, a 4-plot panel
  ~120 ms at once) and the goal is no GUI-thread block over 50 ms, so a step is about one
  plot's paint. When sequences overlap (the surface's first draw while the panels are
  shown, a live refresh while a report is shown) they take turns, instead of each
  painting in the same turn (with one timer each they did: 74-78 ms turns were measured).
- **coalesced by key**: submitting under a key that still has steps queued replaces them
  (the newest data wins; a live run refreshed 30 times a second is shown at the pace the
  window can paint) and moves the key to the back of the queue, so no sequence starves
  another.
- **veiled plots**: a step that returns a widget has it laid out and ranged at once
  (:func:`settle`) and, unless the sequence says ``reveal=False``, its plots after the
  first are veiled (opacity 0: Qt does not paint them) and revealed one per frame.
- **owned**: a sequence whose owner is deleted is dropped; :meth:`Frames.cancel` reveals
  whatever the sequence veiled.

Tests wait on :meth:`Frames.active` or the views' own state, never on the order of paints.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QTimer

from lossview.gui.plotkit.layout import plots_of, settle

#: milliseconds between two steps (each step's paint runs in between)
INTERVAL_MS = 15

Key = tuple[QObject, Hashable]


class _Sequence:
    """One submission: its steps (callables, or a generator whose ``next`` runs one), the
    plots it veiled and those due to be revealed before its next step."""

    __slots__ = ("calls", "gen", "owner", "reveal", "reveals", "veiled")

    def __init__(self, owner: QObject, steps: Any, reveal: bool) -> None:
        self.owner = owner
        gen = isinstance(steps, Generator)
        self.gen: Iterator[Any] | None = steps if gen else None
        self.calls: deque[Callable[[], Any]] = deque(() if gen else steps)
        self.reveal = reveal
        self.reveals: deque[Any] = deque()
        self.veiled: list = []

    def veil(self, plots: list) -> None:
        for p in plots:
            if p not in self.veiled:
                p.setOpacity(0.0)
                self.veiled.append(p)

    def step(self) -> Any:
        """Run the next step and return its result; StopIteration when none is left."""
        if self.gen is not None:
            return next(self.gen)
        if not self.calls:
            raise StopIteration
        return self.calls.popleft()()

    def unveil(self) -> None:
        for p in self.veiled:
            _unveil_plot(p)
        self.veiled.clear()
        self.reveals.clear()


def _unveil_plot(plot: Any) -> None:
    with contextlib.suppress(RuntimeError):  # deleted with its panel
        plot.setOpacity(1.0)


class Frames(QObject):
    """The scheduler; see the module docstring. Use the application's one, :func:`frames`."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = INTERVAL_MS) -> None:
        super().__init__(parent)
        self.interval_ms = int(interval_ms)
        self._queue: dict[Key, _Sequence] = {}  # insertion order is the turn order
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._frame)

    def submit(self, owner: QObject, name: Hashable,
               steps: Iterable[Callable[[], Any]] | Generator[Any, None, None],
               veil: Iterable[Any] = (), reveal: bool = True) -> None:
        """Queue ``steps`` under ``(owner, name)``, replacing what is still queued there.

        ``steps``: callables, one run per frame, or a generator, one ``next`` per frame
        (e.g. :func:`~lossview.gui.plotkit.layout.lay_out_hidden`); a step's result that
        is a widget is settled and, with ``reveal``, has its plots revealed one per frame
        (the first at once if it was on screen). ``veil``: widgets whose plots stay
        unpainted until then (a page shown for the first time: painting its empty plots
        cost ~50 ms of one turn). Nothing runs before the next frame.
        """
        key = (owner, name)
        self.cancel(owner, name)
        seq = _Sequence(owner, steps, reveal)
        for w in veil:  # revealed after the step that returns their widget
            seq.veil(plots_of(w))
        self._queue[key] = seq
        self._wake()

    def cancel(self, owner: QObject, name: Hashable | None = None) -> None:
        """Drop what is queued under ``(owner, name)`` (every name of ``owner`` when None),
        revealing the plots it veiled."""
        for key in [k for k in self._queue if k[0] is owner and name in (None, k[1])]:
            self._queue.pop(key).unveil()

    def active(self, owner: QObject | None = None, name: Hashable | None = None) -> bool:
        """Anything queued (under ``owner``, and ``name`` when given)."""
        return any((owner is None or k[0] is owner) and name in (None, k[1])
                   for k in self._queue)

    def flush(self, max_steps: int = 10_000) -> None:
        """Run every queued step now, without frames in between (exports and tests that
        need the final picture at once)."""
        while self._queue and max_steps > 0:
            self._frame(schedule=False)
            max_steps -= 1

    def finish(self, owner: QObject, name: Hashable) -> None:
        """Run what is left under ``(owner, name)`` now: a step that needs it done (the
        panels laid out before the step that shows them) calls this."""
        key = (owner, name)
        while key in self._queue:
            self._queue = {key: self._queue.pop(key), **self._queue}  # its turn
            self._frame(schedule=False)

    # -- the frame ------------------------------------------------------------------
    def _wake(self) -> None:
        if self._queue and not self._timer.isActive():
            self._timer.start(self.interval_ms)

    def _frame(self, schedule: bool = True) -> None:
        """One step of the sequence whose turn it is."""
        try:
            if not self._queue:
                return
            key = next(iter(self._queue))
            seq = self._queue[key]
            if not shiboken6.isValid(seq.owner):  # deleted (its window closed): dropped
                del self._queue[key]
                seq.veiled.clear()
                return
            if seq.reveals:
                plot = seq.reveals.popleft()
                seq.veiled.remove(plot)
                _unveil_plot(plot)
                self._rotate(key, seq)
                return
            try:
                result = seq.step()
            except StopIteration:
                self._finish(key, seq)
                return
            except Exception:
                # the rest still runs (nothing stays veiled); the error reaches the app's
                # excepthook, which reports it in the window
                self._rotate(key, seq)
                raise
            if self._queue.get(key) is not seq:
                return  # the step itself replaced or cancelled its sequence
            if result is not None and hasattr(result, "findChildren"):
                self._show(seq, result)
            self._rotate(key, seq)
        finally:
            if schedule:
                self._wake()

    def _show(self, seq: _Sequence, widget: Any) -> None:
        settle(widget)
        if not seq.reveal:
            return
        plots = plots_of(widget)
        if plots and plots[0] not in seq.veiled:
            # on screen already: it repaints with this step (veiling it would blank it for
            # a frame); a veiled first plot is revealed in a frame of its own, as the step
            # itself (a panel's set_run) can take 20 ms and its paint 30
            plots = plots[1:]
        seq.veil(plots)
        # this widget's plots are revealed one per frame before the sequence's next step
        seq.reveals = deque(p for p in plots if p in seq.veiled)

    def _rotate(self, key: Key, seq: _Sequence) -> None:
        """A sequence's step ran: it stays first while it reveals its widget's plots, else
        the next key takes the next frame (sequences take turns)."""
        if seq.reveals or self._queue.get(key) is not seq:
            return
        if seq.gen is None and not seq.calls:  # its last step ran: no longer active
            self._finish(key, seq)
            return
        del self._queue[key]
        self._queue[key] = seq

    def _finish(self, key: Key, seq: _Sequence) -> None:
        if self._queue.get(key) is seq:
            del self._queue[key]
        seq.unveil()


_FRAMES: Frames | None = None


def frames() -> Frames:
    """The application's one scheduler (made on first use, on the GUI thread)."""
    global _FRAMES
    if _FRAMES is None:
        _FRAMES = Frames()
    return _FRAMES

"""The one Timeline state: the run's snapshot steps, the current snapshot, playing,
speed, loop.

Views bind to its signals and write back through its setters. A setter that changes
nothing emits nothing, so slider -> timeline -> slider ends after one round. The steps
are the timeline's: views read :attr:`Timeline.steps` (and :attr:`Timeline.step`) and
keep no copy of their own.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

_NO_STEPS = np.zeros(0, dtype=np.int64)
_NO_STEPS.flags.writeable = False


class Timeline(QObject):
    """Single source of truth for "where in training are we".

    Signals
    -------
    index_changed(int) : the current snapshot index changed.
    count_changed(int) : the number of snapshots changed (new run, or live training).
    steps_changed(object) : the snapshots' steps changed (the new :attr:`steps`), before
        ``count_changed`` and ``index_changed``.
    playing_changed(bool), speed_changed(float), loop_changed(bool)
    """

    index_changed = Signal(int)
    count_changed = Signal(int)
    steps_changed = Signal(object)
    playing_changed = Signal(bool)
    speed_changed = Signal(float)
    loop_changed = Signal(bool)

    #: playback speeds offered in the UI, in snapshots per second
    SPEEDS = (2.0, 5.0, 10.0, 20.0, 50.0)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._index = 0
        self._steps = _NO_STEPS
        self._playing = False
        self._speed = 10.0
        self._loop = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.setInterval(int(1000 / self._speed))

    # -- read -------------------------------------------------------------------
    @property
    def index(self) -> int:
        return self._index

    @property
    def count(self) -> int:
        return len(self._steps)

    @property
    def steps(self) -> np.ndarray:
        """The step (or epoch) of each snapshot of the run shown, ascending (read-only)."""
        return self._steps

    @property
    def step(self) -> int | None:
        """The current snapshot's step (None without snapshots)."""
        return int(self._steps[min(self._index, len(self._steps) - 1)]) if len(self._steps) else None

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def loop(self) -> bool:
        return self._loop

    # -- write ------------------------------------------------------------------
    def set_steps(self, steps, keep_end: bool = False) -> None:
        """The run's snapshot steps (a new run, or a live run that grew); ``keep_end``
        follows the newest snapshot (live training), else the index stays where it fits.
        The index is in range before any signal: ``steps_changed``, ``count_changed`` (if
        the number changed), then ``index_changed`` (if the index moved)."""
        new = np.array(steps, dtype=np.int64).reshape(-1)
        new.flags.writeable = False
        old, index = self._steps, self._index
        if len(new) != len(old) or not np.array_equal(new, old):
            at_end = index >= len(old) - 1
            self._steps = new
            self._index = min(max(len(new) - 1 if keep_end and at_end else index, 0),
                              max(len(new) - 1, 0))
            self.steps_changed.emit(new)
            if len(new) != len(old):
                self.count_changed.emit(len(new))
            if self._index != index:
                self.index_changed.emit(self._index)
        if len(new) <= 1:
            self.set_playing(False)

    def set_index(self, index: int) -> None:
        index = min(max(int(index), 0), max(self.count - 1, 0))
        if index != self._index:
            self._index = index
            self.index_changed.emit(index)

    def step_by(self, delta: int) -> None:
        self.set_index(self._index + delta)

    def home(self) -> None:
        self.set_index(0)

    def end(self) -> None:
        self.set_index(self.count - 1)

    def set_playing(self, playing: bool) -> None:
        playing = bool(playing) and self.count > 1
        if playing == self._playing:
            return
        if playing and self._index >= self.count - 1:
            self.set_index(0)  # pressing play at the end starts again
        self._playing = playing
        if playing:
            self._timer.start()
        else:
            self._timer.stop()
        self.playing_changed.emit(playing)

    def toggle_playing(self) -> None:
        self.set_playing(not self._playing)

    def set_speed(self, speed: float) -> None:
        speed = float(min(max(speed, 0.5), 120.0))
        if speed != self._speed:
            self._speed = speed
            self._timer.setInterval(max(round(1000 / speed), 1))
            self.speed_changed.emit(speed)

    def set_loop(self, loop: bool) -> None:
        if bool(loop) != self._loop:
            self._loop = bool(loop)
            self.loop_changed.emit(self._loop)

    def _tick(self) -> None:
        if self._index >= self.count - 1:
            if self._loop:
                self.set_index(0)
            else:
                self.set_playing(False)
            return
        self.set_index(self._index + 1)

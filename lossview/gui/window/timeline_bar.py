"""The timeline bar: slider, play/pause, step buttons, speed, loop, step/epoch readout.

Bound to a :class:`~lossview.gui.timeline.Timeline`: user input writes through the
timeline's setters, and timeline signals move the widgets with their signals blocked,
so an update from the model never writes back.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QSlider,
    QStyle,
    QToolButton,
    QWidget,
)

from lossview.gui.plotkit.widgets import Readout, signals_blocked
from lossview.gui.timeline import Timeline


class TimelineBar(QWidget):
    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("timelineBar")
        self.timeline = timeline
        self._epochs: list[float | None] = []
        self._unit = "step"  # what the positions count: "step" or "epoch"
        st = self.style()

        self.home_btn = self._button(QStyle.StandardPixmap.SP_MediaSkipBackward,
                                     "First snapshot (Home)", timeline.home)
        self.prev_btn = self._button(QStyle.StandardPixmap.SP_MediaSeekBackward,
                                     "Previous snapshot (Left)", lambda: timeline.step_by(-1))
        self.play_btn = self._button(QStyle.StandardPixmap.SP_MediaPlay, "Play / pause (Space)",
                                     timeline.toggle_playing)
        self.next_btn = self._button(QStyle.StandardPixmap.SP_MediaSeekForward,
                                     "Next snapshot (Right)", lambda: timeline.step_by(1))
        self.end_btn = self._button(QStyle.StandardPixmap.SP_MediaSkipForward,
                                    "Last snapshot (End)", timeline.end)
        self._play_icon = st.standardIcon(QStyle.StandardPixmap.SP_MediaPlay)
        self._pause_icon = st.standardIcon(QStyle.StandardPixmap.SP_MediaPause)

        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.setToolTip("Drag to scrub through the snapshots")
        # rewritten at every step: a Readout sized for the run's widest text, so the
        # slider beside it keeps its width and nothing is laid out again
        self.readout = Readout()
        self.readout.setText("no run")
        self.speed = QComboBox()
        self.speed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.speed.setToolTip("Playback speed, snapshots per second")
        for s in Timeline.SPEEDS:
            self.speed.addItem(f"{s:g} / s", s)
        self.loop = QCheckBox("loop")
        self.loop.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.loop.setToolTip("Start again from the first snapshot at the end")

        lay = QHBoxLayout(self)
        lay.setContentsMargins(8, 4, 8, 4)
        lay.setSpacing(4)
        for b in (self.home_btn, self.prev_btn, self.play_btn, self.next_btn, self.end_btn):
            lay.addWidget(b)
        lay.addSpacing(6)
        lay.addWidget(self.slider, 1)
        lay.addSpacing(8)
        lay.addWidget(self.readout)
        lay.addWidget(self.speed)
        lay.addWidget(self.loop)

        self.slider.valueChanged.connect(timeline.set_index)
        self.speed.currentIndexChanged.connect(
            lambda i: timeline.set_speed(float(self.speed.itemData(i))))
        self.loop.toggled.connect(timeline.set_loop)
        timeline.index_changed.connect(self._on_index)
        timeline.count_changed.connect(self._on_count)
        timeline.steps_changed.connect(self._on_steps)
        timeline.playing_changed.connect(self._on_playing)
        timeline.speed_changed.connect(self._on_speed)
        timeline.loop_changed.connect(self._on_loop)
        self._on_count(timeline.count)
        self._on_speed(timeline.speed)
        self._on_loop(timeline.loop)

    def _button(self, pixmap, tip: str, slot) -> QToolButton:
        b = QToolButton()
        b.setIcon(self.style().standardIcon(pixmap))
        b.setToolTip(tip)
        b.setAutoRaise(True)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(slot)
        return b

    def set_labels(self, epochs=None, unit: str = "step") -> None:
        """What the readout says beside the timeline's steps: the snapshots' epochs, and
        ``unit``, what the positions count (``"step"`` or ``"epoch"``: the run's
        ``step_unit``)."""
        self._unit = "epoch" if unit == "epoch" else "step"
        # positions that are epochs already say the epoch
        self._epochs = list(epochs) if epochs is not None and self._unit == "step" else []
        self._on_steps()

    def _on_steps(self, *_) -> None:
        self.readout.set_template(self._widest_text())
        self._on_index(self.timeline.index)

    def _widest_text(self) -> str:
        """The readout for the run's largest numbers, digits as 8s (the widest)."""
        steps = self.timeline.steps
        n = len(steps)
        if not n:
            return "no run"
        wide = str.maketrans("0123456789", "8888888888")
        step = f"{int(steps.max()):,}".translate(wide)
        eps = [e for e in self._epochs if e is not None]
        epoch = f" · epoch {max(eps):.4g}".translate(wide) if eps else ""
        count = f"{n}".translate(wide)
        return f"{self._unit} <b>{step}</b>{epoch} · snapshot {count}/{count}"

    # -- timeline -> widgets ------------------------------------------------------
    def _on_count(self, n: int) -> None:
        with signals_blocked(self.slider):
            self.slider.setRange(0, max(n - 1, 0))
            self.slider.setValue(self.timeline.index)
        self.setEnabled(n > 0)
        self._on_index(self.timeline.index)

    def _on_index(self, i: int) -> None:
        with signals_blocked(self.slider):
            self.slider.setValue(i)
        steps = self.timeline.steps
        n = len(steps)
        if n == 0:
            self.readout.setText("no run")
            return
        i = min(i, n - 1)
        text = f"{self._unit} <b>{int(steps[i]):,}</b>"
        ep = self._epochs[i] if i < len(self._epochs) else None
        if ep is not None:
            text += f" · epoch {ep:.4g}"
        text += f" · snapshot {i + 1}/{n}"
        self.readout.setText(text)

    def _on_playing(self, playing: bool) -> None:
        self.play_btn.setIcon(self._pause_icon if playing else self._play_icon)

    def _on_speed(self, speed: float) -> None:
        k = self.speed.findData(speed)
        with signals_blocked(self.speed):
            if k < 0:
                self.speed.addItem(f"{speed:g} / s", speed)
                k = self.speed.count() - 1
            self.speed.setCurrentIndex(k)

    def _on_loop(self, loop: bool) -> None:
        with signals_blocked(self.loop):
            self.loop.setChecked(loop)

"""One Timeline drives every view; views write back through it and never echo."""

import numpy as np
from PySide6.QtCore import Qt

from lossview.gui.timeline import Timeline
from lossview.gui.window.timeline_bar import TimelineBar

from .conftest import open_and_wait


def test_slider_moves_timeline_loss_cursor_and_trajectory_marker(qtbot, window, run_path):
    open_and_wait(qtbot, window, run_path)
    run, report = window.run, window.report
    window.timeline_bar.slider.setValue(4)  # as a user drag would
    assert window.timeline.index == 4
    assert all(c.value() == run.steps[4] for c in window.loss_panel.cursors)
    x, y = window.trajectory_panel.current.getData()
    assert np.allclose([x[0], y[0]], report["pca"]["coords"][4][:2])
    assert "step <b>40</b>" in window.timeline_bar.readout.text()


def test_model_updates_do_not_write_back(qtbot, window, run_path, monkeypatch):
    """napari's test_model_axis_label_updates_do_not_write_back, for the timeline."""
    open_and_wait(qtbot, window, run_path)
    tl = window.timeline
    emitted = []
    tl.index_changed.connect(emitted.append)
    calls = []
    original = Timeline.set_index

    def spy(self, index):
        calls.append(index)
        original(self, index)

    monkeypatch.setattr(Timeline, "set_index", spy)
    # change the model directly (not through set_index): every view updates...
    tl._index = 11
    tl.index_changed.emit(11)
    # ...and none of them calls back into the model
    assert calls == []
    assert window.timeline_bar.slider.value() == 11
    assert window.loss_panel.cursors[0].value() == window.run.steps[11]


def test_one_change_one_emission(qtbot):
    tl = Timeline()
    bar = TimelineBar(tl)
    qtbot.addWidget(bar)
    tl.set_steps(np.arange(50))
    seen = []
    tl.index_changed.connect(seen.append)
    bar.slider.setValue(30)
    tl.set_index(30)  # no change: no signal
    bar.slider.setValue(30)
    assert seen == [30]
    tl.set_index(99)  # clamped to the last snapshot
    assert seen == [30, 49] and bar.slider.value() == 49


def test_keyboard_shortcuts(qtbot, window, run_path):
    open_and_wait(qtbot, window, run_path, step=100)
    tl = window.timeline
    assert tl.index == 10
    qtbot.keyClick(window, Qt.Key.Key_Right)
    assert tl.index == 11
    qtbot.keyClick(window, Qt.Key.Key_Left)
    qtbot.keyClick(window, Qt.Key.Key_Left)
    assert tl.index == 9
    qtbot.keyClick(window, Qt.Key.Key_End)
    assert tl.index == len(window.run) - 1
    qtbot.keyClick(window, Qt.Key.Key_Home)
    assert tl.index == 0
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert tl.playing
    qtbot.waitUntil(lambda: tl.index >= 2, timeout=5000)  # playback advances
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not tl.playing


def test_playback_stops_at_end_or_loops(qtbot):
    tl = Timeline()
    tl.set_steps([0, 10, 20])
    tl.set_speed(50)
    tl.set_index(2)
    tl.set_playing(True)  # play at the end starts again from the first snapshot
    assert tl.index == 0
    qtbot.waitUntil(lambda: not tl.playing, timeout=3000)
    assert tl.index == 2
    tl.set_loop(True)
    tl.set_playing(True)
    seen = []
    tl.index_changed.connect(seen.append)
    qtbot.waitUntil(lambda: seen.count(0) >= 1 and len(seen) >= 4, timeout=3000)
    assert tl.playing
    tl.set_playing(False)


def test_scrubbing_recomputes_no_view_range(qtbot, window, run_path, monkeypatch):
    """Cursors and current-point markers move on every step but never ask a plot to
    recompute its auto-range (pyqtgraph does, for any item that moves, unless told)."""
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    open_and_wait(qtbot, window, run_path)
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=30000)
    tl = window.timeline
    tl.set_index(0)
    QApplication.processEvents()
    calls = []
    original = pg.ViewBox.updateAutoRange
    monkeypatch.setattr(pg.ViewBox, "updateAutoRange",
                        lambda self: (calls.append(self), original(self))[1])
    for i in range(tl.count):
        tl.set_index(i)
        QApplication.processEvents()
    x, _ = window.trajectory_panel.current.getData()  # the markers did move
    assert tl.index == tl.count - 1 and len(x) == 1
    assert all(c.value() == window.run.steps[-1] for c in window.loss_panel.cursors)
    assert calls == []


def test_scrubbing_never_resizes_the_readout_or_the_slider(qtbot):
    """The readout is sized for the run's widest text: the slider beside it keeps its
    width at every step (a QLabel grew with each extra digit, and the window re-laid out)."""
    tl = Timeline()
    bar = TimelineBar(tl)
    qtbot.addWidget(bar)
    bar.resize(900, 40)
    bar.show()
    qtbot.waitExposed(bar)
    steps = np.arange(0, 12000, 10)
    tl.set_steps(steps)
    bar.set_labels([s / 600 for s in steps])
    widths = set()
    for i in (0, 9, 10, 99, 100, 999, len(steps) - 1):
        tl.set_index(i)
        qtbot.wait(1)  # any layout request is processed
        widths.add((bar.readout.width(), bar.slider.width()))
    assert len(widths) == 1
    assert bar.readout.text() == "step <b>11,990</b> · epoch 19.98 · snapshot 1200/1200"
    # the widest text fits, drawn in full: its last ink column inside the widget
    widest = "step <b>88,888</b> · epoch 88.88 · snapshot 8888/8888"
    assert bar.readout.text_width(widest) <= bar.readout.width()
    bar.readout.setText(widest)
    img = bar.readout.grab().toImage()
    bg = img.pixel(0, 0)
    ink = [x for x in range(img.width()) if any(img.pixel(x, y) != bg
                                                for y in range(img.height()))]
    assert ink and ink[-1] < img.width() - 1

"""The window's update path: one step per frame across every sequence, coalesced by key,
plots veiled until revealed, robust to a failing step and to a deleted owner."""

import pyqtgraph as pg
import pytest
from PySide6.QtCore import QObject, QTimer

from lossview.gui.plotkit.frames import Frames
from lossview.gui.plotkit.layout import plots_of


@pytest.fixture
def canvas(qtbot):
    w = pg.GraphicsLayoutWidget()
    for col in range(3):
        w.addPlot(row=0, col=col).plot([0, 1, 2], [col, col + 1, col])
    qtbot.addWidget(w)
    w.resize(600, 200)
    w.show()
    qtbot.waitExposed(w)
    return w


def opacities(w) -> list[float]:
    return [p.opacity() for p in plots_of(w)]


def turn_counter(qtbot) -> list[int]:
    """``[n]``: event-loop turns so far (a 0 ms timer fires once a turn)."""
    turn = [0]
    t = QTimer()
    t.setInterval(0)
    t.timeout.connect(lambda: turn.__setitem__(0, turn[0] + 1))
    t.start()
    qtbot.turn_timer = t  # kept alive for the test
    return turn


def test_sequences_take_turns_one_step_a_frame(qtbot):
    """Two sequences submitted together (a panel shown while the surface draws): one step
    of one of them per frame, alternating, never two in one turn, none in the caller's."""
    fr = Frames(interval_ms=5)
    a, b = QObject(), QObject()
    turn = turn_counter(qtbot)
    ran = []
    fr.submit(a, "show", [lambda k=k: ran.append(("a", k, turn[0])) for k in range(3)])
    fr.submit(b, "draw", [lambda k=k: ran.append(("b", k, turn[0])) for k in range(2)])
    assert ran == [] and fr.active(a) and fr.active(b, "draw") and not fr.active(b, "show")
    qtbot.waitUntil(lambda: not fr.active(), timeout=2000)
    assert [(who, k) for who, k, _ in ran] == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]
    turns = [t for *_, t in ran]
    assert turns == sorted(set(turns))  # each step in a turn of its own


def test_a_resubmitted_key_replaces_what_is_queued_and_goes_last(qtbot):
    """The newest data wins (a live run refreshed faster than it can be painted) and the
    key waits its turn behind the others."""
    fr = Frames(interval_ms=5)
    a, b = QObject(), QObject()
    ran = []
    fr.submit(a, "refresh", [lambda: ran.append("old 0"), lambda: ran.append("old 1")])
    fr.submit(b, "report", [lambda: ran.append("report")])
    fr.submit(a, "refresh", [lambda: ran.append("new 0"), lambda: ran.append("new 1")])
    qtbot.waitUntil(lambda: not fr.active(), timeout=2000)
    assert ran == ["report", "new 0", "new 1"]


def test_a_shown_widget_is_revealed_one_plot_a_frame(qtbot, canvas):
    fr = Frames(interval_ms=30)  # slow enough to see every state
    owner = QObject()
    ran, seen_after = [], []

    def show():
        ran.append("show")
        return canvas

    def after():
        ran.append("after")
        seen_after.append(opacities(canvas))

    fr.submit(owner, "run", [show, after], veil=(canvas,))
    assert opacities(canvas) == [0.0, 0.0, 0.0] and ran == []  # veiled at once
    seen = []
    qtbot.waitUntil(lambda: seen.append(opacities(canvas)) or not fr.active(), timeout=3000)
    # the veiled widget's first plot too in a frame of its own after the step (the step
    # and that plot's first paint were one 50 ms turn)
    assert [1.0, 0.0, 0.0] in seen and [1.0, 1.0, 0.0] in seen
    assert ran == ["show", "after"] and seen_after == [[1.0, 1.0, 1.0]]


def test_a_widget_already_on_screen_keeps_its_first_plot_shown(qtbot, canvas):
    """New data for a panel on screen: its first plot repaints with the step (veiling it
    would blank it for a frame); the others are revealed one per frame. With
    ``reveal=False`` nothing is veiled (a live run's report: no blink)."""
    fr = Frames(interval_ms=20)
    owner = QObject()
    fr.submit(owner, "new data", [lambda: canvas])
    qtbot.waitUntil(lambda: opacities(canvas) != [1.0, 1.0, 1.0], timeout=2000)
    assert opacities(canvas) == [1.0, 0.0, 0.0]
    qtbot.waitUntil(lambda: not fr.active(), timeout=2000)
    assert opacities(canvas) == [1.0, 1.0, 1.0]
    seen = []
    fr.submit(owner, "live", [lambda: canvas, lambda: None], reveal=False)
    qtbot.waitUntil(lambda: seen.append(opacities(canvas)) or not fr.active(), timeout=2000)
    assert min(min(o) for o in seen) == 1.0


def test_cancel_reveals_everything_it_veiled(qtbot, canvas):
    fr = Frames(interval_ms=1000)
    owner = QObject()
    fr.submit(owner, "run", [lambda: canvas, lambda: None], veil=(canvas,))
    assert min(opacities(canvas)) == 0.0
    fr.cancel(owner)
    assert opacities(canvas) == [1.0, 1.0, 1.0] and not fr.active()


def test_a_failing_step_does_not_leave_the_rest_undone(qtbot, canvas):
    fr = Frames(interval_ms=5)
    owner = QObject()
    ran = []

    def bad():
        raise ValueError("drawing bug")

    with qtbot.capture_exceptions() as caught:
        fr.submit(owner, "run", [lambda: None, bad, lambda: ran.append("last")], veil=(canvas,))
        qtbot.waitUntil(lambda: ran == ["last"], timeout=2000)
    assert [str(e[1]) for e in caught] == ["drawing bug"]
    qtbot.waitUntil(lambda: not fr.active(), timeout=2000)
    assert opacities(canvas) == [1.0, 1.0, 1.0]  # the sequence ended: nothing stays veiled


def test_a_deleted_owner_runs_no_more_steps(qtbot):
    fr = Frames(interval_ms=5)
    owner, other = QObject(), QObject()
    ran = []
    fr.submit(owner, "draw", [lambda: ran.append("owner")] * 3)
    fr.submit(other, "draw", [lambda: ran.append("other")] * 2)
    import shiboken6

    shiboken6.delete(owner)
    qtbot.waitUntil(lambda: not fr.active(other), timeout=2000)
    assert ran == ["other", "other"] and not fr.active()


def test_finish_runs_one_sequence_to_its_end_now(qtbot):
    fr = Frames(interval_ms=1000)
    a, b = QObject(), QObject()
    ran = []
    fr.submit(a, "lay out", [lambda k=k: ran.append(("a", k)) for k in range(3)])
    fr.submit(b, "draw", [lambda: ran.append(("b", 0))])
    fr.finish(a, "lay out")
    assert ran == [("a", 0), ("a", 1), ("a", 2)] and fr.active(b) and not fr.active(a)


def test_flush_runs_every_step_now(qtbot, canvas):
    fr = Frames(interval_ms=1000)
    owner = QObject()
    ran = []
    fr.submit(owner, "run", [lambda: canvas, lambda: ran.append(opacities(canvas))],
              veil=(canvas,))
    fr.flush()
    assert ran == [[1.0, 1.0, 1.0]] and not fr.active()


def test_a_hidden_tree_is_laid_out_one_plot_view_per_step_and_not_again_when_shown(qtbot):
    """lay_out_hidden sizes a hidden page like the shown one and sends its views their
    resize events, pausing after each view; shown afterwards, no view is resized again.
    A page shown before the steps end is left to Qt."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

    from lossview.gui.plotkit.layout import lay_out_hidden

    def page() -> tuple[QWidget, list]:
        p = QWidget()
        lay = QVBoxLayout(p)
        views = [pg.PlotWidget(), pg.PlotWidget()]
        for v in views:
            lay.addWidget(v)
        return p, views

    stack = QStackedWidget()
    qtbot.addWidget(stack)
    stack.addWidget(QLabel("start"))
    hidden, views = page()
    stack.addWidget(hidden)
    stack.resize(500, 400)
    stack.show()
    qtbot.waitExposed(stack)
    resized = []

    class Watch(QObject):
        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Type.Resize:
                resized.append(views.index(obj))
            return False

    watch = Watch()
    for v in views:
        v.installEventFilter(watch)
    steps = lay_out_hidden(hidden, stack.currentWidget())
    next(steps)
    assert resized == [0]  # one view a step
    next(steps)
    assert resized == [0, 1]
    assert next(steps, "done") == "done"
    assert hidden.size() == stack.currentWidget().size()
    assert all(v.height() > 150 for v in views)  # the page's layout shared between them
    stack.setCurrentWidget(hidden)
    qtbot.wait(20)
    assert resized == [0, 1]  # shown: painted, not resized again

    # a page shown while its steps run: the rest is Qt's, as without them
    other, more = page()
    stack.addWidget(other)
    resized.clear()
    views[:] = more
    for v in more:
        v.installEventFilter(watch)
    stack.setCurrentIndex(0)
    Frames(interval_ms=1).submit(stack, "lay out", lay_out_hidden(other, stack.currentWidget()))
    stack.setCurrentWidget(other)  # before the first step's turn
    qtbot.wait(50)
    assert sorted(resized) == [0, 1]  # each once, by Qt's show

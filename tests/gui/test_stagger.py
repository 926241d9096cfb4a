"""Stagger: steps one per event-loop turn, plots veiled until revealed, robust to a step
that fails."""

import pyqtgraph as pg
import pytest

from lossview.gui.plotkit.stagger import Stagger, plots_of


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


def test_steps_run_one_per_turn_and_reveal_plots_one_by_one(qtbot, canvas):
    st = Stagger(interval_ms=60)  # slow enough to see every state
    ran, opacity = [], []

    def show():
        ran.append("show")
        return canvas

    def after():
        ran.append("after")
        opacity.append([p.opacity() for p in plots_of(canvas)])

    st.run([show, after], veil=(canvas,))
    # the first step ran now; its widget was veiled, so even its first plot waits for a
    # turn of its own (the step and that plot's first paint were one 50 ms turn)
    assert ran == ["show"]
    assert [p.opacity() for p in plots_of(canvas)] == [0.0, 0.0, 0.0]
    seen = []
    qtbot.waitUntil(lambda: seen.append([p.opacity() for p in plots_of(canvas)])
                    or not st.active, timeout=2000)
    assert [1.0, 0.0, 0.0] in seen and [1.0, 1.0, 0.0] in seen  # one plot per turn
    assert ran == ["show", "after"] and opacity == [[1.0, 1.0, 1.0]]


def test_a_widget_already_on_screen_keeps_its_first_plot_shown(qtbot, canvas):
    """New data for a panel on screen: its first plot repaints with the step (veiling it
    would blank it for a turn); the others are revealed one per turn."""
    st = Stagger(interval_ms=5)
    st.run([lambda: canvas])
    assert [p.opacity() for p in plots_of(canvas)] == [1.0, 0.0, 0.0]
    qtbot.waitUntil(lambda: not st.active, timeout=2000)
    assert [p.opacity() for p in plots_of(canvas)] == [1.0, 1.0, 1.0]


def test_cancel_reveals_everything_it_veiled(qtbot, canvas):
    st = Stagger(interval_ms=1000)
    st.run([lambda: canvas, lambda: None], veil=(canvas,))
    assert min(p.opacity() for p in plots_of(canvas)) == 0.0
    st.cancel()
    assert [p.opacity() for p in plots_of(canvas)] == [1.0, 1.0, 1.0] and not st.active


def test_a_failing_step_does_not_leave_the_rest_undone(qtbot, canvas):
    st = Stagger(interval_ms=5)
    ran = []

    def bad():
        raise ValueError("drawing bug")

    with qtbot.capture_exceptions() as caught:
        st.run([lambda: None, bad, lambda: ran.append("last")], veil=(canvas,))
        qtbot.waitUntil(lambda: ran == ["last"], timeout=2000)
    assert [str(e[1]) for e in caught] == ["drawing bug"]
    st.cancel()
    assert [p.opacity() for p in plots_of(canvas)] == [1.0, 1.0, 1.0]


def test_a_hidden_tree_is_laid_out_one_plot_view_per_step_and_not_again_when_shown(qtbot):
    """lay_out_hidden sizes a hidden page like the shown one and sends its views their
    resize events, pausing after each view; shown afterwards, no view is resized again.
    A page shown before the steps end is left to Qt."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

    from lossview.gui.plotkit.stagger import lay_out_hidden, one_per_turn

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
    one_per_turn(lay_out_hidden(other, stack.currentWidget()), stack)
    stack.setCurrentWidget(other)  # before the first step's turn
    qtbot.wait(50)
    assert sorted(resized) == [0, 1]  # each once, by Qt's show

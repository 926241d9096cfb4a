"""Loss panel: curves equal the logged metrics, markers at the report's steps, NaN-safe,
the cursor follows the timeline and a drag writes the nearest snapshot back."""

import numpy as np
import pytest

from lossview.core.analysis.smoothing import ema
from lossview.gui.panels.loss_panel import LossPanel
from lossview.gui.timeline import Timeline

from .conftest import analyse, write_run
from .live_runs import as_live


def data(curve):
    """The data given to setData (getData would return log10 values in log mode)."""
    return curve.xData, curve.yData


def shown(qtbot, run, report=None, size=(600, 500)):
    """A LossPanel on screen at ``size`` showing ``run``, and its timeline."""
    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    p.resize(*size)
    p.show()
    tl.set_steps(run.steps)
    p.set_run(run, report)
    return p, tl


@pytest.fixture
def panel(qtbot, loaded):
    run, report = loaded
    p, tl = shown(qtbot, run, report)
    return p, tl, run, report


def test_curves_hold_the_logged_metrics(panel):
    p, _tl, run, _ = panel
    p.smoothing.setValue(0)
    x, y = data(p.c_train)
    np.testing.assert_array_equal(x, run.metrics["train_loss"].steps)
    np.testing.assert_allclose(y, run.metrics["train_loss"].values)
    x, y = data(p.c_val)
    np.testing.assert_allclose(y, run.metrics["val_loss"].values)
    x, y = data(p.c_lr)
    np.testing.assert_allclose(y, 0.1)
    # the mini-batch loss is denser than train_loss, so it is drawn faintly beside it
    assert p.c_raw.isVisible() and len(data(p.c_raw)[0]) == len(run.metrics["loss"])


def test_smoothing_applies_ema_to_the_train_curve(panel):
    p, _, run, _ = panel
    p.smoothing.setValue(80)
    _, y = data(p.c_train)
    np.testing.assert_allclose(y, ema(run.metrics["train_loss"].values, 0.8))


def test_plateau_and_cursor(panel):
    p, tl, run, report = panel
    plateau = report["plateau"]["step"]
    assert plateau is not None
    assert all(line.isVisible() and line.value() == plateau for line in p.plateau_lines)
    assert not any(line.isVisible() for line in p.divergence_lines)  # did not diverge
    tl.set_index(7)
    assert all(c.value() == run.steps[7] for c in p.cursors)
    assert "train" in p.readout.text()


def test_dragging_the_cursor_moves_the_timeline_to_the_nearest_snapshot(panel):
    p, tl, run, _ = panel
    line = p.cursors[1]
    line.setValue(run.steps[12] + 4)  # 4 steps after snapshot 12 (every 10): nearest is 12
    line.sigDragged.emit(line)
    assert tl.index == 12
    line.setValue(run.steps[12] + 6)
    line.sigDragged.emit(line)
    assert tl.index == 13


def test_nan_loss_is_drawn_as_gaps(qtbot, tmp_path):
    run, report = analyse(write_run(tmp_path / "nan", n_snap=12, nan_from=60))
    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    p.set_run(run, report)
    assert p.c_raw.opts["connect"] == "finite"
    _, y = data(p.c_raw)
    assert np.isnan(y[60:]).all() and np.isfinite(y[:60]).all()
    assert report["divergence"]["step"] == 60
    assert p.divergence_lines[0].isVisible() and p.divergence_lines[0].value() == 60
    p.log_y.setChecked(False)
    p.log_y.setChecked(True)
    p.grab()  # paints without raising


def test_missing_metrics_say_so(qtbot):
    from lossview.core.io.memory import run_from_arrays

    run = run_from_arrays(np.cumsum(np.ones((5, 3)), axis=0),
                          metrics={"loss": ([0, 1, 2, 3, 4], [1, 0.5, 0.3, 0.2, 0.2])})
    p, tl = shown(qtbot, run, size=(400, 500))
    qtbot.waitUntil(lambda: p.p_loss.height() > 0.8 * p.canvas.height())
    # the rows of what was not logged are folded away, and one sentence names them
    assert p.absent.text() == "no gradient norm or learning rate logged"
    assert p.absent.isVisible()
    assert not p.p_grad.isVisible() and not p.p_lr.isVisible()
    assert p.notes[0].toPlainText() == ""
    # the lowest plot shown carries the x axis' label
    assert p.p_loss.getAxis("bottom").labelText == "step"
    # a mini-batch loss alone, smoothed, is not called "train"
    labels = [lab.text for _, lab in p.legend.items]
    assert labels == ["mini-batch", "mini-batch, smoothed"]
    tl.set_index(4)
    assert p.readout.text() == "loss 0.2"


def test_a_panel_with_no_loss_is_one_sentence(qtbot):
    from lossview.core.io.memory import run_from_arrays

    run = run_from_arrays(np.cumsum(np.ones((5, 3)), axis=0), metrics={})
    p, _tl = shown(qtbot, run, size=(400, 500))
    note = p.notes[0]
    assert note.toPlainText() == "no loss logged"
    # no made-up axes, grid or legend around it
    for name in ("left", "bottom"):
        assert not p.p_loss.getAxis(name).isVisible()
    assert not p.legend.isVisible()
    assert p.absent.text() == ""  # the sentence says it all
    # the sentence lies inside the plot, centred
    vb = p.p_loss.getViewBox()
    box = note.mapRectToItem(vb, note.boundingRect())
    assert vb.boundingRect().contains(box)


def test_steady_range_moves_only_when_the_data_leave_it():
    from lossview.gui.plotkit.axes import steady_range

    # outside the current range: the data's range, padded by 12 % of its span, and a
    # quarter of a span more on the side the data left by (they are moving that way)
    assert steady_range((0.0, 1.0), [np.array([1.0, 3.0])], log=False) == \
        pytest.approx((1.0 - 0.24, 3.0 + 0.24 + 0.5))
    # inside and not too loose: keep it (NaN and inf ignored)
    assert steady_range((0.5, 3.5), [np.array([1.0, np.nan, 3.0, np.inf])], log=False) is None
    # more than 3x wider than the data need: shrink to them (no side was left)
    assert steady_range((-20.0, 20.0), [np.array([1.0, 3.0])], log=False) == \
        pytest.approx((0.76, 3.24))
    # log mode works in decades; non-positive values are left out
    lo, hi = steady_range((0.0, 1.0), [np.array([1e-3, 1.0, -1.0, 0.0])], log=True)
    assert (lo, hi) == pytest.approx((-3 - 0.36 - 0.75, 0 + 0.36))
    assert steady_range((lo, hi), [np.array([2e-3, 0.5])], log=True) is None
    # a narrow log range keeps 0.15 decade either side
    assert steady_range(None, [np.array([1.0, 1.1])], log=True) == \
        pytest.approx((-0.15, np.log10(1.1) + 0.15))
    assert steady_range((0.0, 1.0), [np.array([np.nan])], log=False) is None


def test_a_loss_falling_a_decade_a_refresh_is_re_ranged_less_often():
    """A quarter of a span of room on the side the loss left by (more left a third of
    the plot empty): a loss falling a decade per refresh for 20 refreshes is re-ranged
    8 times (14 with the margin alone)."""
    from lossview.gui.plotkit.axes import steady_range

    def count(ahead):
        cur, n = None, 0
        for k in range(1, 21):  # the loss now spans k decades (down to 10**-k)
            new = steady_range(cur, [10.0 ** -np.linspace(0, k, 50)], log=True, ahead=ahead)
            if new is not None:
                cur, n = new, n + 1
            assert cur[0] <= -k and cur[1] >= 0  # every refresh holds all the data
        return n

    assert count(0.0) == 14 and count(0.25) == 8


def test_a_growing_run_keeps_its_y_range_until_the_loss_leaves_it(qtbot):
    """Live refreshes re-range the y axes only when needed (each re-range re-renders the
    axes), and the x axis frames the planned run."""
    from lossview.core.io.memory import run_from_arrays

    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    rng = np.random.default_rng(0)
    loss = 2.0 * np.exp(-np.arange(400) / 150) * rng.lognormal(0, 0.05, 400)

    def live(n):
        steps = np.arange(n)
        run = as_live(run_from_arrays(np.zeros((len(steps[::50]), 3)), steps=list(steps[::50]),
                                      metrics={"loss": (steps, loss[:n])},
                                      spec={"training": {"steps": 400}}))
        p.set_run(run, None)
        return p.p_loss.viewRange()

    x0, y0 = live(100)
    assert x0[1] >= 400  # the planned run, not the data so far
    assert 10 ** y0[0] <= loss[:100].min() and 10 ** y0[1] >= loss[:100].max()
    _, y1 = live(120)  # the loss went on falling a little: same range
    assert y1 == pytest.approx(y0)
    _, y2 = live(400)  # fell below the range: re-ranged to hold it all
    assert 10 ** y2[0] <= loss.min() < 10 ** y0[0]
    # the finished run is auto-ranged again
    done = run_from_arrays(np.zeros((8, 3)), steps=list(range(0, 400, 50)),
                           metrics={"loss": (np.arange(400), loss)})
    p.set_run(done, None)
    assert p.p_loss.getViewBox().autoRangeEnabled()[1]


def test_a_growing_gradient_norm_goes_log_once_without_moving_the_x_frame(qtbot):
    """While a run trains, its gradient-norm plot switches to a log axis when the norm
    comes to span 30x, once, and the switch leaves the planned x frame of every plot
    (and so their x axes) where it was; the y range then holds the norm in log units."""
    from lossview.core.io.memory import run_from_arrays

    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    p.resize(600, 500)
    grad = 5.0 * np.exp(-np.arange(600) / 60)  # 5 at step 0, 30x smaller by step 204

    def live(n):
        steps = np.arange(n)
        run = as_live(run_from_arrays(
            np.zeros((len(steps[::50]), 3)), steps=list(steps[::50]),
            metrics={"loss": (steps, 1 + grad[:n]), "grad_norm": (steps, grad[:n])},
            spec={"training": {"steps": 600}}))
        p.set_run(run, None)

    live(150)
    assert not p.p_grad.getAxis("left").logMode  # 5 down to 0.41: 12x
    frames = [pl.viewRange()[0] for pl in p.plots]
    assert frames[0][1] >= 600
    changes = []
    p.p_loss.getViewBox().sigXRangeChanged.connect(lambda *_: changes.append(1))
    live(300)  # down to 0.034: 148x
    assert p.p_grad.getAxis("left").logMode
    assert p.p_grad.getAxis("left").logMode and p.p_grad.getViewBox().state["logMode"][1]
    assert p.p_grad.getAxis("bottom").logMode is False
    assert changes == []
    np.testing.assert_allclose([pl.viewRange()[0] for pl in p.plots], frames)
    lo, hi = p.p_grad.viewRange()[1]
    assert lo <= np.log10(grad[299]) and np.log10(grad[0]) <= hi <= np.log10(grad[0]) + 1
    ys = p.c_grad.getData()[1]  # drawn in log10 units now
    assert ys[0] == pytest.approx(np.log10(grad[0]), rel=0.05)
    # the user's log checkbox still switches all of them back, the frame kept again
    p.log_y.setChecked(False)
    assert not p.p_grad.getAxis("left").logMode and not p.p_loss.getAxis("left").logMode
    np.testing.assert_allclose([pl.viewRange()[0] for pl in p.plots], frames)


def test_run_parts_show_one_plot_a_part_and_end_as_set_run_does(qtbot):
    """Live training shows a refresh a plot a turn: until its part runs, a plot keeps its
    old curves; after all parts the panel is as set_run leaves it."""
    from lossview.core.io.memory import run_from_arrays

    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)

    def run(n, scale):
        steps = np.arange(n)
        return as_live(run_from_arrays(
            np.zeros((len(steps[::10]), 3)), steps=list(steps[::10]),
            metrics={"loss": (steps, scale * np.exp(-steps / 50.0)),
                     "grad_norm": (steps, scale * (1 + steps / 10.0)),
                     "lr": (steps, np.full(n, 0.1 * scale))},
            spec={"training": {"steps": 400}}))

    old, new = run(100, 1.0), run(200, 2.0)
    p.set_run(old, None)
    series, loss, grad, lr, cursors = p.run_parts(new, None)
    series()
    loss()
    assert len(p.c_raw.xData) == 200 and len(p.c_grad.xData) == 100  # grad: old data
    assert len(p.c_lr.xData) == 100
    grad()
    lr()
    cursors()
    assert len(p.c_grad.xData) == 200 and p.c_lr.yData[0] == pytest.approx(0.2)
    parts_state = [c.yData.copy() for c in (p.c_raw, p.c_train, p.c_grad, p.c_lr)]
    ranges = [pl.viewRange() for pl in p.plots]
    q = LossPanel(Timeline())
    qtbot.addWidget(q)
    q.set_run(old, None)
    q.set_run(new, None)
    for a, c in zip(parts_state, (q.c_raw, q.c_train, q.c_grad, q.c_lr)):
        np.testing.assert_array_equal(a, c.yData)
    np.testing.assert_allclose([pl.viewRange() for pl in q.plots], ranges)

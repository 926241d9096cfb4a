"""Loss panel: curves equal the logged metrics, markers at the report's steps, NaN-safe,
the cursor follows the timeline and a drag writes the nearest snapshot back."""

import numpy as np
import pytest

from lossview.gui.loss_panel import LossPanel, ema
from lossview.gui.timeline import Timeline

from .conftest import analyse, write_run


def data(curve):
    """The data given to setData (getData would return log10 values in log mode)."""
    return curve.xData, curve.yData


def test_ema_matches_recursion_and_skips_nan():
    x = np.array([1.0, 3.0, np.nan, 5.0, 2.0])
    w = 0.5
    # y0 = x0; y_k = w y_{k-1} + (1 - w) x_k over the finite values only
    expect = [1.0, 2.0, np.nan, 3.5, 2.75]
    np.testing.assert_allclose(ema(x, w), expect, equal_nan=True)
    np.testing.assert_array_equal(ema(x, 0.0), x)


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
@pytest.mark.parametrize("w", [0.3, 0.9, 0.999])
def test_blocked_ema_equals_the_recursion_across_block_edges(n, w):
    x = np.random.default_rng(n).lognormal(size=n)
    y, prev = np.empty(n), x[0]
    for i, v in enumerate(x):
        prev = w * prev + (1 - w) * v
        y[i] = prev
    np.testing.assert_allclose(ema(x, w), y, rtol=1e-12)


@pytest.fixture
def panel(qtbot, loaded):
    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    p.resize(600, 500)
    p.show()
    run, report = loaded
    tl.set_count(len(run))
    p.set_run(run, report)
    return p, tl, run, report


def test_curves_hold_the_logged_metrics(panel):
    p, tl, run, _ = panel
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
    tl = Timeline()
    p = LossPanel(tl)
    qtbot.addWidget(p)
    p.set_run(run, None)
    assert p.notes[1].toPlainText() == "no gradient norm logged"
    assert p.notes[2].toPlainText() == "no learning rate logged"
    assert p.notes[0].toPlainText() == ""

"""The timeline owns the run's snapshot steps: views read them there (no copies), and a
live run is told apart by data (``Run.live``), not by a flag in its spec."""

import numpy as np
import pytest

from lossview.core.io.memory import run_from_arrays
from lossview.gui.timeline import Timeline


def test_set_steps_signals_in_order_with_the_index_in_range(qtbot):
    tl = Timeline()
    seen = []
    tl.steps_changed.connect(lambda s: seen.append(("steps", list(s), tl.step)))
    tl.count_changed.connect(lambda n: seen.append(("count", n, tl.step)))
    tl.index_changed.connect(lambda i: seen.append(("index", i, tl.step)))
    assert tl.count == 0 and tl.step is None and len(tl.steps) == 0
    tl.set_steps([0, 10, 20, 30])
    assert seen == [("steps", [0, 10, 20, 30], 0), ("count", 4, 0)]
    tl.set_index(3)
    seen.clear()
    tl.set_steps([0, 10, 20, 30])  # the same steps: nothing to say
    assert seen == []
    tl.set_steps([0, 5])  # a shorter run: the index is in range before any signal
    assert seen == [("steps", [0, 5], 5), ("count", 2, 5), ("index", 1, 5)]
    seen.clear()
    tl.set_steps([0, 7])  # same count, other steps: no count_changed
    assert seen == [("steps", [0, 7], 7)]
    with pytest.raises(ValueError, match="read-only"):
        tl.steps[0] = 3
    tl.set_steps([])
    assert tl.count == 0 and tl.step is None and tl.index == 0


def test_a_growing_run_keeps_the_end_only_when_at_the_end(qtbot):
    tl = Timeline()
    tl.set_steps([0, 10, 20], keep_end=True)
    assert tl.index == 2 and tl.step == 20
    tl.set_steps([0, 10, 20, 30], keep_end=True)  # at the end: follows the newest
    assert tl.index == 3 and tl.step == 30
    tl.set_index(1)
    tl.set_steps([0, 10, 20, 30, 40], keep_end=True)  # scrubbed back: stays there
    assert tl.index == 1 and tl.step == 10


def test_the_views_follow_the_timelines_steps_without_being_given_the_run_again(qtbot, loaded):
    """A run that grew (new steps on the timeline, no new set_run): the loss and
    diagnostics cursors, the timeline bar's readout and the trajectory's colours read
    the timeline's steps, so none shows a stale copy."""
    from lossview.gui.panels.diagnostics_panel import DiagnosticsPanel
    from lossview.gui.panels.loss_panel import LossPanel
    from lossview.gui.panels.trajectory_panel import TrajectoryPanel
    from lossview.gui.window.timeline_bar import TimelineBar

    run, report = loaded
    tl = Timeline()
    lp, dp, tp, bar = LossPanel(tl), DiagnosticsPanel(tl), TrajectoryPanel(tl), TimelineBar(tl)
    for w in (lp, dp, tp, bar):
        qtbot.addWidget(w)
    tl.set_steps(run.steps)
    for p in (lp, dp, tp):
        p.set_run(run, report)
    tl.set_index(7)
    assert lp.cursors[0].value() == dp.cursors[0].value() == run.steps[7]
    assert f"step <b>{run.steps[7]:,}</b>" in bar.readout.text()
    later = np.append(run.steps, run.steps[-1] + 1000)
    tl.set_steps(later, keep_end=True)
    tl.end()
    assert tl.step == later[-1]
    assert lp.cursors[0].value() == dp.cursors[0].value() == later[-1]
    assert f"step <b>{later[-1]:,}</b>" in bar.readout.text()
    assert f"snapshot {len(later)}/{len(later)}" in bar.readout.text()
    # the PCA rows are coloured by the steps of their snapshots, read on the timeline
    np.testing.assert_array_equal(tp._row_steps(), later[tp._rows])


def test_a_run_is_live_while_it_trains_only():
    from lossview.gui.training.live import LiveRun
    from lossview.gui.training.live_view import frozen_copy

    live = LiveRun("/tmp/never-written")
    live.append_snapshot(0, {"w": np.zeros(3)})
    assert live.live and live.status is None and "live" not in live.spec
    assert not frozen_copy(live).live  # a copy of what it holds now does not grow
    live.finish("stopped")
    assert not live.live and live.status == "stopped"
    assert not run_from_arrays(np.zeros((3, 2))).live  # a run read from data

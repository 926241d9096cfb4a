"""Training live from the main window: the panels follow the growing run, then the saved
folder replaces it, fully analysed."""

import numpy as np
import pytest

from lossview.gui.plotkit.frames import frames
from lossview.gui.training.live_view import frozen_copy

from .live_runs import as_live


def test_live_training_fills_the_panels_then_opens_the_saved_run(qtbot, window, tmp_path):
    window.open_train_dialog()
    dlg = window._train_dialog
    dlg.set_problem("quadratic")
    # long enough that the live run is on screen well before the saved one replaces it
    dlg.steps_spin.setValue(3000)
    dlg.every_spin.setValue(100)
    dlg.folder_edit.setText(str(tmp_path))
    counts, loaded = [], []
    window.timeline.count_changed.connect(counts.append)
    window.run_loaded.connect(loaded.append)
    with qtbot.waitSignal(window.run_loaded, timeout=10000):
        dlg.start()
    live = loaded[0]
    assert live.live  # training: the run may still grow
    # while training, the loss plots frame the whole planned run (no re-ranging per refresh)
    lo, hi = window.loss_panel.p_loss.getViewBox().viewRange()[0]
    assert lo <= 0 and 3000 <= hi <= 3100
    # the saved run is opened once training ends
    # (run_loaded comes once every panel has the saved run and the timeline is set)
    qtbot.waitUntil(lambda: loaded[-1] is not live and loaded[-1] is window.run
                    and not window.is_loading(), timeout=60000)
    assert (window.run.path / "run.json").is_file()
    assert window.run.path.parent == tmp_path
    assert len(window.run) == 31  # steps 0, 100, ..., 3000
    assert counts and counts[-1] == 31
    assert window.timeline.index == 30
    assert len(window.report.pca.coords) == 31  # the saved run's report, typed
    x, _ = window.loss_panel.c_raw.xData, None
    assert x is not None and len(x) > 0


def test_frozen_copy_does_not_grow_with_the_live_run():
    from lossview.gui.training.live import LiveRun

    live = LiveRun("/tmp/live")
    for s in range(4):
        live.append_snapshot(s, {"w": np.full(3, float(s))})
    frozen = frozen_copy(live)
    live.append_snapshot(4, {"w": np.zeros(3)})
    assert len(frozen) == 4 and len(live) == 5
    np.testing.assert_array_equal(frozen.vector(3), [3.0, 3.0, 3.0])


def test_a_live_analysis_updates_the_panels_without_blanking_a_plot(qtbot, window, loaded):
    """The live analysis comes back every few seconds while training: its data reach
    the panels over several turns, and no plot already on screen is veiled meanwhile
    (veiled plots were blanked and revealed one by one: a blink every time)."""
    import time

    from PySide6.QtCore import QTimer

    from lossview.gui.plotkit.layout import plots_of

    run, report = loaded
    run = as_live(run)  # the saved run as it was while training
    window.live.start(run)
    qtbot.waitUntil(lambda: not frames().active(window), timeout=10000)
    panels = (window.trajectory_panel, window.diagnostics_panel, window.loss_panel)
    plots = [p for panel in panels for p in plots_of(panel)]
    assert len(plots) >= 7 and min(p.opacity() for p in plots) == 1.0
    assert window.diagnostics_panel.c_init.xData is None or \
        len(window.diagnostics_panel.c_init.xData) == 0  # no report yet
    seen, turns = [], []
    poll = QTimer()
    poll.setInterval(1)
    poll.timeout.connect(lambda: seen.append(min(p.opacity() for p in plots)))
    poll.start()
    window.live._t_analysis = started = time.monotonic()
    window.live._on_report(run, report)
    turns.append(frames().active(window.live))  # shown in later turns
    qtbot.waitUntil(lambda: not frames().active(window.live), timeout=10000)
    poll.stop()
    assert turns == [True] and seen and min(seen) == 1.0
    # the next analysis is timed from when this one's report was all shown, and waits
    # ANALYSIS_LOAD times as long as the analysis and its showing took
    live = window.live
    assert started < live._last <= time.monotonic()
    assert live._analysis_cost == pytest.approx(live._last - started)
    d = window.diagnostics_panel
    np.testing.assert_allclose(d.c_init.yData, report["distance"]["from_init"][1:])
    assert window.trajectory_panel._coords.shape[0] == len(report["pca"]["coords"])


def test_a_live_refresh_shows_timeline_loss_plots_and_dialog_in_turns_of_their_own(
        qtbot, window, loaded, monkeypatch):
    """Each refresh of a training run is spread over frames: the timeline (every panel's
    cursor), the loss panel a plot a frame (curves, ranges, repaint), then the train
    dialog's plot; together in one turn they blocked the GUI thread 40-55 ms."""
    import time

    from PySide6.QtCore import QTimer

    window.open_train_dialog()
    dlg = window._train_dialog
    assert dlg.plot_live in window.live.followers and dlg.plot_follows_window
    run = as_live(loaded[0])
    window.live.start(run)
    qtbot.waitUntil(lambda: not frames().active(window) and not frames().active(window.live),
                    timeout=10000)
    window.live._last = time.monotonic()  # no live analysis due during the test
    turn = [0]
    ticker = QTimer()
    ticker.setInterval(0)  # fires once per event-loop turn
    ticker.timeout.connect(lambda: turn.__setitem__(0, turn[0] + 1))
    ticker.start()
    calls = []
    bar_set, parts_of, plot = (window.timeline_bar.set_labels, window.loss_panel.run_parts,
                               dlg.plot_live)

    def recorded_parts(*args):
        def recorded(k, part):
            return lambda: (calls.append((f"loss {k}", turn[0])), part())
        return [recorded(k, part) for k, part in enumerate(parts_of(*args))]

    monkeypatch.setattr(window.timeline_bar, "set_labels",
                        lambda *a: (calls.append(("timeline", turn[0])), bar_set(*a)))
    monkeypatch.setattr(window.loss_panel, "run_parts", recorded_parts)
    window.live.followers[:] = [lambda: (calls.append(("dialog", turn[0])), plot())]
    window.live.update(run)
    assert calls == []  # nothing in the turn that delivered the update
    n = 2 + len(parts_of(run, None))
    qtbot.waitUntil(lambda: len(calls) == n, timeout=5000)
    ticker.stop()
    assert [c[0] for c in calls] == ["timeline", *(f"loss {k}" for k in range(n - 2)), "dialog"]
    turns = [c[1] for c in calls]
    assert turns == sorted(set(turns))  # each in a turn of its own
    # the panel shows the run as set_run does
    np.testing.assert_array_equal(window.loss_panel.c_train.xData, run.metrics["train_loss"].steps)


def test_a_report_that_interrupts_a_refresh_still_refreshes_the_dialog_plot(
        qtbot, window, loaded):
    """A live analysis shown while a refresh's frames are queued: the refresh still ends
    with the train dialog's plot (it was once lost until the next refresh)."""
    import time

    window.open_train_dialog()
    run, report = loaded
    run = as_live(run)
    window.live.start(run)
    qtbot.waitUntil(lambda: not frames().active(window) and not frames().active(window.live),
                    timeout=10000)
    window.live._last = time.monotonic()  # no live analysis of its own during the test
    followed = []
    window.live.followers[:] = [lambda: followed.append(len(run))]
    window.live.update(run)
    assert frames().active(window.live) and followed == []  # the refresh's turns queued
    window.live._on_report(run, report)  # (the analysis worker's finished slot)
    qtbot.waitUntil(lambda: not frames().active(window.live), timeout=10000)
    assert followed == [len(run)]
    assert window.report.to_json() == report  # the live analysis's report, typed

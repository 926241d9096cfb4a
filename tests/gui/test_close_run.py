"""File → Close run stops every job working for the run (issue 20): opening, the surface,
the sharpness, the live analysis and the training the window follows. None is waited
for, every one has ended within a few seconds (a child still computing is killed), and
nothing of them arrives afterwards."""

import multiprocessing
import time

import pytest

from lossview.core.tasks import processes
from lossview.gui.workers import ProcessWorker

from . import process_jobs as pj
from .conftest import open_and_wait, write_run
from .model_files import linear_model_file

#: a model file whose every batch takes a while: its surface and sharpness run for
#: minutes, so both are still computing when the run is closed
SLOW_MODEL_FILE = linear_model_file(batches_sleep=0.3)


def _lossview_children() -> list[str]:
    return [p.name for p in multiprocessing.active_children() if p.name.startswith("lossview")]


def _record(signal, into: list, what: str) -> None:
    signal.connect(lambda *args: into.append(what))


def test_close_run_stops_opening_surface_and_sharpness(qtbot, window, run_path, tmp_path):
    model = tmp_path / "slow_model.py"
    model.write_text(SLOW_MODEL_FILE)
    window.set_model_file(str(model))
    open_and_wait(qtbot, window, run_path)
    panel = window.surface_panel
    qtbot.waitUntil(lambda: window.sharpness.busy and panel.is_busy(), timeout=30000)
    # and a second run being opened meanwhile
    window.open_path(str(write_run(tmp_path / "second", seed=1)))
    assert window.is_loading()
    workers = [window.opener.worker, window.sharpness._worker, panel._worker]
    assert all(w is not None and w.is_running() for w in workers)
    ended: list = []
    for w in workers:
        w.done.connect(lambda w=w: ended.append(w))
    after: list[str] = []
    _record(window.run_loaded, after, "run_loaded")
    _record(window.load_failed, after, "load_failed")
    _record(window.sharpness.measured, after, "sharpness measured")
    _record(window.sharpness.failed, after, "sharpness failed")
    _record(window.sharpness.progress, after, "sharpness progress")
    _record(panel.surface_ready, after, "surface_ready")
    _record(panel.busy_changed, after, "surface busy_changed")

    window.close_run()

    # at once: nothing is computing for the window, the start page is back
    assert not window.is_computing()
    assert window.run is None and window.stack.currentWidget() is window.start_page
    assert "Open a run" in panel.message.text()
    after.clear()  # (close_run's own busy_changed(False))
    # every job ends (the ones between two yields killed after a second), its child too
    qtbot.waitUntil(lambda: len(ended) == len(workers), timeout=10000)
    assert _lossview_children() == []
    qtbot.wait(500)  # anything still queued would arrive now
    assert after == []
    assert window.run is None and window.stack.currentWidget() is window.start_page
    assert not window.is_computing()
    assert "Sharpness measured" not in window.statusBar().currentMessage()
    assert "Open a run" in panel.message.text()


def test_close_run_stops_the_training_it_follows_and_does_not_reopen_it(qtbot, window,
                                                                         tmp_path):
    window.open_train_dialog()
    dlg = window._train_dialog
    dlg.set_problem("quadratic")
    dlg.steps_spin.setValue(1_000_000)  # would take hours
    dlg.every_spin.setValue(100)
    dlg.folder_edit.setText(str(tmp_path))
    loaded: list = []
    window.run_loaded.connect(loaded.append)
    with qtbot.waitSignal(window.run_loaded, timeout=20000):
        dlg.start()
    live = loaded[0]
    assert live.live and window.live.run is live
    training = dlg.training.worker
    # a live analysis comes once three snapshots are in
    qtbot.waitUntil(lambda: window.live._worker is not None, timeout=30000)
    analysis = window.live._worker
    ended: list = []
    for w in (training, analysis):
        w.done.connect(lambda w=w: ended.append(w))

    window.close_run()

    assert window.run is None and window.stack.currentWidget() is window.start_page
    assert window.live.run is None
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=15000)
    qtbot.waitUntil(lambda: not dlg.is_running(), timeout=5000)
    assert _lossview_children() == []
    # training stopped within a step, its folder complete; the window did not reopen it
    assert live.status == "stopped"
    assert (live.path / "run.json").is_file()
    qtbot.wait(500)
    assert loaded == [live]
    assert window.run is None and window.stack.currentWidget() is window.start_page
    assert not window.is_loading() and not window.is_computing()


@pytest.mark.skipif(not processes.available(), reason="no forkserver on this platform")
def test_stop_returns_at_once_and_kills_a_child_that_never_yields(qtbot, tmp_path):
    marker = tmp_path / "sleeping"
    w = ProcessWorker(pj.stuck, str(marker))
    w.start()
    qtbot.waitUntil(marker.exists, timeout=30000)  # inside its 600 s call
    t0 = time.monotonic()
    with qtbot.waitSignals([w.cancelled, w.done], order="strict", timeout=10000):
        w.stop(kill_after_ms=300)
        assert time.monotonic() - t0 < 0.1  # the GUI thread does not wait for it
    assert w._proc.exitcode is not None and w._proc.exitcode < 0  # killed

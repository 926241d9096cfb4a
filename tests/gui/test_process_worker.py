"""ProcessWorker: a generator in a child process (lossview.core.tasks.processes), with the signals,
progress, cancel and errors of GeneratorWorker; the child never imports Qt."""

import os
import sys

import pytest

from lossview.core.tasks import processes
from lossview.gui.workers import GeneratorWorker, ProcessWorker, make_worker

from . import process_jobs as pj

pytestmark = pytest.mark.skipif(not processes.available(), reason="no forkserver on this platform")


def run(qtbot, worker, timeout=30000):
    got = {"progress": [], "finished": [], "errored": [], "cancelled": 0}
    worker.progress.connect(got["progress"].extend)
    worker.finished.connect(got["finished"].append)
    worker.errored.connect(got["errored"].append)
    worker.cancelled.connect(lambda: got.__setitem__("cancelled", got["cancelled"] + 1))
    with qtbot.waitSignal(worker.done, timeout=timeout):
        worker.start()
    return got


def test_every_item_and_the_result_arrive_from_the_child(qtbot):
    got = run(qtbot, ProcessWorker(pj.counting, 3000, min_interval=0.01))
    assert got["progress"] == list(range(3000))
    assert got["finished"] == [sum(range(3000))]
    assert got["errored"] == [] and got["cancelled"] == 0


def test_the_child_is_another_process_without_qt_at_lower_priority(qtbot):
    from lossview.core.surface.threads import current_budget, set_thread_budget

    saved = current_budget()
    set_thread_budget(1)
    try:
        got = run(qtbot, ProcessWorker(pj.describe))
    finally:
        set_thread_budget(saved)
    child = got["finished"][0]
    assert child["pid"] != os.getpid()
    assert child["qt"] == []  # this process has PySide6 and pyqtgraph loaded
    assert "PySide6.QtCore" in sys.modules
    assert child["nice"] == os.nice(0) + processes.NICE
    if hasattr(os, "SCHED_BATCH"):  # Linux: never preempts the GUI thread on wake-up
        assert child["policy"] == os.SCHED_BATCH
    assert child["budget"] == 1  # the app's thread budget reaches the child ...
    assert child["torch_threads"] == 1  # ... and sizes its torch pool (jobs run side by side)
    assert child["omp_wait"] == "PASSIVE"  # idle OpenMP threads sleep instead of spinning


def test_an_exception_is_one_line(qtbot):
    got = run(qtbot, ProcessWorker(pj.failing))
    assert got["errored"] == ["lr must be positive"]
    assert got["progress"] == [1] and got["finished"] == []


def test_an_expected_condition_is_one_line_and_logs_no_traceback(qtbot, caplog):
    # an unexpected error's traceback goes to the log; a LossviewError (a folder without
    # its model) is an expected condition: its line reaches the window, nothing else
    with caplog.at_level("DEBUG", logger="lossview"):
        got = run(qtbot, ProcessWorker(pj.needs_model))
        bad = run(qtbot, ProcessWorker(pj.failing))
    assert got["errored"] == ["loss surfaces need the model and data; pass --model FILE.py"]
    assert bad["errored"] == ["lr must be positive"]
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Traceback" in errors[0].getMessage()
    assert "ValueError" in errors[0].getMessage() and "LossviewError" not in errors[0].getMessage()


def test_a_child_that_dies_is_an_error_with_its_exit_code(qtbot):
    got = run(qtbot, ProcessWorker(pj.dying))
    assert got["errored"] == ["the worker process ended unexpectedly (exit code 3)"]


def test_cancel_closes_the_generator_in_the_child(qtbot, tmp_path):
    marker = tmp_path / "closed"
    w = ProcessWorker(pj.until_cancelled, str(marker))
    got = {"n": 0}

    def on_progress(items):
        got["n"] += len(items)
        w.cancel()

    w.progress.connect(on_progress)
    with qtbot.waitSignals([w.cancelled, w.done], order="strict", timeout=30000):
        w.start()
    assert marker.read_text() == "closed"  # its finally ran: GeneratorExit at the yield
    assert got["n"] >= 1 and w.cancel_requested


def test_wait_kills_a_cancelled_child_that_never_yields(qtbot, tmp_path):
    marker = tmp_path / "sleeping"
    w = ProcessWorker(pj.stuck, str(marker))
    w.start()
    qtbot.waitUntil(marker.exists, timeout=30000)  # inside its 600 s call
    w.cancel()
    assert w.wait(300)  # killed after 300 ms, not after the 600 s sleep
    assert w._proc.exitcode is not None and w._proc.exitcode < 0


def test_make_worker_uses_threads_when_asked(qtbot, monkeypatch):
    assert isinstance(make_worker(pj.counting, 3), ProcessWorker)
    assert isinstance(make_worker(pj.counting, 3, in_child=False), GeneratorWorker)
    monkeypatch.setenv(processes.ENV, "thread")
    w = make_worker(pj.counting, 5)
    assert isinstance(w, GeneratorWorker)
    got = run(qtbot, w)
    assert got["finished"] == [10]


def test_an_argument_that_cannot_be_sent_is_an_error_not_a_hang(qtbot):
    got = run(qtbot, ProcessWorker(pj.counting, lambda: 3))  # a lambda does not pickle
    assert len(got["errored"]) == 1
    assert got["errored"][0].startswith("could not start the worker process")


def test_a_real_surface_job_imports_no_qt_in_its_child(qtbot, tmp_path):
    from lossview.core.train.config import TrainConfig
    from lossview.core.train.trainer import run_to_end, train

    run_to_end(train(TrainConfig("quadratic", steps=200, every=20), tmp_path / "q"))
    from lossview.core.io import open_run

    steps = [int(s) for s in open_run(tmp_path / "q").steps]
    got = run(qtbot, ProcessWorker(pj.surface_then_modules, str(tmp_path / "q"), steps),
              timeout=60000)
    assert got["errored"] == []
    assert got["finished"][0]["n_iso"] > 0  # isolines were built there
    assert got["finished"][0]["qt"] == []


def test_a_job_sees_the_run_as_opened_even_if_its_folder_grew(tmp_path):
    """A child reopens the run from its path: a folder still being written has more
    snapshots by then, and the job must use the ones the window shows."""
    import numpy as np

    from lossview.core.errors import LossviewError
    from lossview.core.io import RunWriter, open_run
    from lossview.core.tasks.jobs import reopen

    w = {"fc.weight": np.zeros((2, 2))}
    with RunWriter(tmp_path / "r", {"name": "r"}) as wr:
        for step in range(3):
            wr.snapshot(step * 10, {"fc.weight": w["fc.weight"] + step})
            wr.log(step * 10, loss=1.0)
        shown = [int(s) for s in open_run(tmp_path / "r").steps]
        wr.snapshot(30, {"fc.weight": w["fc.weight"] + 3})  # the loop goes on
    assert shown == [0, 10, 20]
    again = reopen(str(tmp_path / "r"), shown)
    assert [int(s) for s in again.steps] == shown
    np.testing.assert_array_equal(again.vector(2), np.full(4, 2.0))
    with pytest.raises(LossviewError, match="changed on disk"):
        reopen(str(tmp_path / "r"), [0, 10, 25])

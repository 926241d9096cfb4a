"""Main window: opening in a worker, errors shown with the file named and the previous run
kept, cancel on close, the start page and the isolated settings."""

from pathlib import Path

import pytest

from lossview.gui.window import settings

from .conftest import open_and_wait, write_run
from .model_files import linear_model_file


def test_open_shows_every_panel(qtbot, window, run_path):
    assert window.stack.currentWidget() is window.start_page
    open_and_wait(qtbot, window, run_path, step=123)
    assert window.stack.currentWidget() is window.workspace
    assert window.timeline.count == 30 and window.timeline.index == 12  # last snapshot <= 123
    assert window.windowTitle().startswith("walk")
    assert len(window.trajectory_panel.scatter.getData()[0]) == 30
    assert settings.recent_folders()[0] == str(Path(run_path).resolve())


def test_nonexistent_folder_is_a_message_and_keeps_the_run(qtbot, window, run_path, tmp_path):
    open_and_wait(qtbot, window, run_path)
    before = window.run
    missing = tmp_path / "nope"
    with qtbot.waitSignal(window.load_failed, timeout=10000) as sig:
        window.open_path(str(missing))
    assert "no such file or folder" in sig.args[0]
    assert window.run is before and window.timeline.count == 30
    assert str(missing) in window.banner.text() and window.banner.isVisible()
    assert str(missing) in window.log_view.toPlainText()
    assert str(missing) not in settings.recent_folders()


def test_corrupt_checkpoint_is_named(qtbot, window, run_path, tmp_path):
    open_and_wait(qtbot, window, run_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_10.safetensors").write_bytes(b"\x00garbage, not a checkpoint" * 10)
    with qtbot.waitSignal(window.load_failed, timeout=10000):
        window.open_path(str(bad))
    assert str(bad) in window.banner.text()
    assert window.run.path == Path(run_path)


def test_the_banner_stays_its_time_after_the_latest_error(qtbot, window, run_path,
                                                          monkeypatch):
    """Each error shows the banner for ERROR_MS from that error: a second one is not
    hidden early by the first one's time running out; the log and the warnings count
    keep both."""
    from lossview.gui.window import messages
    open_and_wait(qtbot, window, run_path)
    monkeypatch.setattr(messages, "ERROR_MS", 600)
    window.report_error("first")
    qtbot.wait(400)
    window.report_error("second")
    qtbot.wait(350)  # the first error's 600 ms are over, the second's are not
    assert window.banner.isVisible() and window.banner.text() == "second"
    qtbot.waitUntil(lambda: not window.banner.isVisible(), timeout=3000)
    log_text = window.log_view.toPlainText()
    assert "error: first" in log_text and "error: second" in log_text
    assert window.warn_btn.text().startswith("⚠ 2 warnings")


def test_skipped_file_is_a_warning_in_the_log(qtbot, window, tmp_path):
    p = write_run(tmp_path / "w", n_snap=8)
    (p / "checkpoints" / "step_000000999.safetensors").write_bytes(b"torn write")
    open_and_wait(qtbot, window, p)
    assert window.timeline.count == 8
    assert "step_000000999.safetensors" in window.log_view.toPlainText()
    assert window.warn_btn.isVisible()


def test_errors_on_the_start_page(qtbot, window, tmp_path):
    with qtbot.waitSignal(window.load_failed, timeout=10000):
        window.open_path(str(tmp_path / "missing"))
    assert "missing" in window.start_page.message.text()
    assert window.stack.currentWidget() is window.start_page


def test_closing_while_loading_stops_the_worker(qtbot, tmp_path):
    from lossview.gui.window.main_window import MainWindow

    p = write_run(tmp_path / "big", n_snap=60)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.open_path(str(p))
    worker = win.opener.worker
    assert worker is not None and win.is_loading()
    win.close()
    assert not worker.is_running()
    assert not win.is_loading()


def test_start_page_recent_and_drop(qtbot, window, run_path):
    settings.add_recent(run_path)
    window.start_page.set_recent(settings.recent_folders())
    item = window.start_page.recent.item(0)
    assert item.data(256) == str(Path(run_path).resolve())
    with qtbot.waitSignal(window.run_loaded, timeout=30000):
        window.start_page.recent.itemClicked.emit(item)


def test_settings_are_isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSVIEW_SETTINGS_DIR", str(tmp_path))
    assert settings.settings_file() == tmp_path / "lossview.ini"
    assert settings.recent_folders() == []
    settings.add_recent(tmp_path / "a")
    settings.add_recent(tmp_path / "b")
    settings.add_recent(tmp_path / "a")
    assert settings.recent_folders() == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert "recent" in (tmp_path / "lossview.ini").read_text()
    settings.set_theme("dark")
    assert settings.theme() == "dark"
    with pytest.raises(ValueError):
        settings.set_theme("neon")
    home_ini = Path.home() / ".config" / "lossview" / "lossview.ini"
    assert not home_ini.exists() or str(tmp_path) not in home_ini.read_text()


def test_bool_settings_read_back_from_strings(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSVIEW_SETTINGS_DIR", str(tmp_path))
    settings.write_value("flag", "false")
    assert settings.read_bool("flag", True) is False
    settings.write_value("flag", True)
    assert settings.read_bool("flag") is True


def test_window_layout_persists(qtbot, run_path):
    from lossview.gui.window.main_window import MainWindow

    w1 = MainWindow()
    qtbot.addWidget(w1)
    w1.show()
    w1.top_split.setSizes([300, 700, 600])
    sizes = w1.top_split.sizes()
    w1.close()
    w2 = MainWindow()
    qtbot.addWidget(w2)
    w2.show()
    assert w2.top_split.sizes() == sizes
    w2.close()


def test_the_shipped_demo_run_opens(qtbot, window):
    from lossview.gui.window.main_window import demo_path

    if demo_path() is None:
        pytest.skip("the demo run is not shipped in this checkout")
    assert window.start_page.demo_btn.isEnabled()
    with qtbot.waitSignal(window.run_loaded, timeout=60000):
        window.start_page.demo_btn.click()
    assert len(window.run) > 10 and len(window.report.pca.coords) == len(window.run)
    assert settings.recent_folders() == []  # the demo is not a "recent" folder of the user's


MODEL_FILE = linear_model_file()


def test_model_file_enables_sharpness_for_a_foreign_run(qtbot, window, run_path, tmp_path):
    # the run names no built-in problem; the user's file supplies model and data
    f = tmp_path / "model.py"
    f.write_text(MODEL_FILE)
    window.set_model_file(str(f))
    open_and_wait(qtbot, window, run_path)
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=60000)
    sharp = window.report.sharpness
    # loss = mean((W x + b - y)^2) over 64 x 8 outputs: the Hessian in W is
    # 2/(64*8) * kron(I_8, X'X) (+ bias terms); its top eigenvalue does not depend on W
    import numpy as np
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g).double()
    xa = torch.cat([x, torch.ones(64, 1, dtype=torch.float64)], 1)
    top = float(torch.linalg.eigvalsh(2.0 / (64 * 8) * xa.T @ xa)[-1])
    np.testing.assert_allclose(sharp.eigenvalues, top, rtol=1e-3)
    assert len(window.diagnostics_panel.c_sharp.yData) == len(sharp.steps)
    np.testing.assert_allclose(sharp["threshold"][0], 2 / 0.1)  # lr from run.json


def test_dropping_a_folder_opens_it(qtbot, window, run_path):
    from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(run_path))])
    enter = QDragEnterEvent(QPoint(window.rect().center()), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPoint(window.rect().center()), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.run_loaded, timeout=30000):
        window.dropEvent(drop)
    assert window.run.path == Path(run_path)


def test_the_window_shows_without_importing_torch():
    """torch takes ~1.2 s to import: the start page must not wait for it."""
    import os
    import subprocess
    import sys

    code = ("import sys\n"
            "from lossview.gui.app import make_app\n"
            "app = make_app()\n"
            "from lossview.gui.window.main_window import MainWindow\n"
            "w = MainWindow(); w.show(); app.processEvents()\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert "TORCH False" in out.stdout, out.stdout + out.stderr[-2000:]


def test_the_window_is_busy_without_a_gap_until_every_panel_has_the_run(qtbot, window, run_path):
    """is_computing() (what --screenshot and tools wait on) stays True from open_path
    through the panel-by-panel showing of the run: it falls once, after run_loaded."""
    from PySide6.QtCore import QTimer

    seen, loaded = [], []
    window.run_loaded.connect(lambda run: loaded.append(len(seen)))
    poll = QTimer()
    poll.setInterval(1)
    poll.timeout.connect(lambda: seen.append(window.is_computing()))
    window.open_path(run_path)
    poll.start()
    qtbot.waitUntil(lambda: bool(loaded) and not window.is_computing(), timeout=30000)
    qtbot.wait(50)
    poll.stop()
    falls = [i for i in range(1, len(seen)) if seen[i - 1] and not seen[i]]
    assert seen[0] is True and len(falls) == 1
    assert falls[0] >= loaded[0] - 1  # not before the last panel had the run


START_UP_SCRIPT = r"""
import gc, time
from lossview.gui.app import make_app, prewarm_imports
app = make_app()
from lossview.gui.window.main_window import MainWindow
win = MainWindow(); win.show(); app.processEvents()
frozen = gc.get_freeze_count()
prewarm_imports()
t = time.monotonic()
while gc.get_freeze_count() == frozen and time.monotonic() - t < 60:
    app.processEvents(); time.sleep(0.01)
young = len(gc.get_objects(generation=0)) + len(gc.get_objects(generation=1))
print("FROZE", gc.get_freeze_count() > frozen, "YOUNG", young)
win.shutdown(); win.close()
"""


def test_start_up_objects_are_kept_out_of_the_cycle_collector():
    """After start-up (the window shown, PyOpenGL imported), the collector's young
    generations hold little: ~330,000 start-up objects left there cost one 194 ms pass
    of the GUI thread's collector, in the middle of a scrub."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", START_UP_SCRIPT], env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    words = out.stdout.split()
    assert words[words.index("FROZE") + 1] == "True"
    assert int(words[words.index("YOUNG") + 1]) < 20_000


BLAS_SCRIPT = r"""
from threadpoolctl import threadpool_info
from lossview.core.tasks import processes
from lossview.gui.app import make_app, start_job_server
app = make_app()
before = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
start_job_server()
after = {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
from lossview.gui.training import problem_catalog
problem_catalog.get()  # the catalogue fetched in a child meanwhile: done before exit
print("AVAILABLE", processes.available(), "BEFORE", max(before.values(), default=0),
      "AFTER", max(after.values(), default=0))
"""


def test_the_window_process_uses_one_blas_thread_when_jobs_run_in_children():
    """BLAS threads in the window's process waited for the cores the jobs used (the loss
    panel's smoothing: 14 ms instead of 1)."""
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", BLAS_SCRIPT], env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    words = out.stdout.split()
    value = dict(zip(words[::2], words[1::2]))
    assert value["AVAILABLE"] == "True"
    assert value["AFTER"] == "1"


def test_the_panels_are_laid_out_while_the_first_run_loads_so_the_switch_only_paints(
        qtbot, window, run_path):
    """The switch from the start page to the panels resized every plot's view in the turn
    that showed them (15-20 ms). The window lays the hidden panels out while the run
    loads; once shown they get no resize, and they have the size the shown layout gives."""
    import pyqtgraph as pg
    from PySide6.QtCore import QEvent, QObject

    views = window.workspace.findChildren(pg.GraphicsView)
    assert len(views) >= 4
    resized: list = []

    class Watch(QObject):
        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Type.Resize:
                resized.append((obj, window.stack.currentWidget() is window.workspace))
            return False

    watch = Watch()
    for v in views:
        v.installEventFilter(watch)
    open_and_wait(qtbot, window, run_path)
    assert window.stack.currentWidget() is window.workspace
    assert {o for o, shown in resized if not shown} == set(views)  # laid out ahead ...
    assert [o for o, shown in resized if shown] == []  # ... and not again once shown
    sizes = [v.size() for v in views]
    window.workspace.layout().activate()  # nothing left to do for the shown layout
    assert [v.size() for v in views] == sizes and all(s.width() > 50 for s in sizes)

"""The test suite's safety net (issue 20 item 8), checked on tests written to break it:
work left running after a test (a non-daemon thread, a daemon thread of lossview's, a
child process, a QThread), a Qt warning and a warning raised in lossview's own code each
fail their test, with a message that names what happened; a test that leaves nothing
behind passes."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BROKEN_TESTS = '''
import multiprocessing
import threading
import time
import warnings

from PySide6.QtCore import QThread, qWarning


def test_leaves_a_thread():
    stop = threading.Event()
    threading.Thread(target=lambda: stop.wait(4), name="forgotten").start()


def test_leaves_a_lossview_daemon_thread():
    stop = threading.Event()
    threading.Thread(target=lambda: stop.wait(4), name="lossview-writer", daemon=True).start()


def test_a_daemon_thread_elsewhere_may_stay():
    stop = threading.Event()
    threading.Thread(target=lambda: stop.wait(4), name="library-pool", daemon=True).start()


def test_leaves_a_process():
    multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,),
                                                name="forgotten-child").start()


class Sleeper(QThread):
    def run(self):
        time.sleep(4)


def test_leaves_a_qthread(qtbot):
    test_leaves_a_qthread.keep = t = Sleeper()
    t.start()


def test_a_qt_warning(qtbot):
    qWarning("forgotten widget")


def test_a_lossview_warning():
    warnings.warn_explicit("divide by zero", RuntimeWarning, "analysis.py", 1,
                           module="lossview.core.analysis.fake")


def test_a_warning_elsewhere_is_not_an_error():
    warnings.warn_explicit("elsewhere", RuntimeWarning, "other.py", 1, module="numpy.other")


def test_clean(qtbot):
    done = []
    t = Sleeper()
    t.run = lambda: done.append(1)
    t.start()
    t.wait()
    assert done == [1]
'''


@pytest.mark.slow
def test_the_safety_net_fails_each_broken_test_and_names_the_cause(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_broken.py").write_text(BROKEN_TESTS)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider",
         "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    text = out.stdout + out.stderr
    summary = {line.split(" ")[1].split("::")[-1]: line.split(" ")[0]
               for line in text.splitlines() if line.startswith(("FAILED ", "ERROR "))}
    assert summary == {
        "test_leaves_a_thread": "ERROR",  # (at its teardown)
        "test_leaves_a_lossview_daemon_thread": "ERROR",
        "test_leaves_a_process": "ERROR",
        "test_leaves_a_qthread": "ERROR",
        "test_a_qt_warning": "FAILED",
        "test_a_lossview_warning": "FAILED",
    }, text
    # the four that leave work behind pass their call and fail at their teardown
    assert "2 failed, 7 passed, 1 warning, 4 errors" in text, text
    assert "thread 'forgotten' (non-daemon)" in text
    assert "thread 'lossview-writer'" in text
    assert "child process 'forgotten-child'" in text
    assert "QThread Sleeper started at" in text
    assert "forgotten widget" in text
    assert "RuntimeWarning: divide by zero" in text

"""GeneratorWorker: results, batched progress without loss, cancel within one yield, errors."""

import threading

import pytest

from lossview.gui.workers import GeneratorWorker


def counting(n, out=None):
    total = 0
    for i in range(n):
        total += i
        if out is not None:
            out.append(i)
        yield i
    return total


def test_returns_value_and_delivers_every_item(qtbot):
    got, results = [], []
    w = GeneratorWorker(lambda: counting(2000), min_interval=0.01)
    w.progress.connect(got.extend)
    w.finished.connect(results.append)
    with qtbot.waitSignals([w.finished, w.done], order="strict", timeout=10000):
        w.start()
    assert results == [sum(range(2000))]
    assert got == list(range(2000))


def test_progress_is_batched_at_bounded_rate(qtbot):
    batches = []
    w = GeneratorWorker(lambda: counting(5000), min_interval=0.5)
    w.progress.connect(batches.append)
    with qtbot.waitSignal(w.done, timeout=10000):
        w.start()
    assert sum(len(b) for b in batches) == 5000
    assert len(batches) < 20  # 5,000 yields, far fewer UI updates


def test_cancel_stops_within_one_yield(qtbot):
    gate = threading.Event()
    produced = []

    def slow():
        for i in range(10**6):
            produced.append(i)
            if i == 3:
                gate.set()
            yield i
            if gate.is_set():
                gate.wait()

    w = GeneratorWorker(slow)
    finished = []
    w.finished.connect(finished.append)
    with qtbot.waitSignals([w.cancelled, w.done], order="strict", timeout=10000):
        w.start()
        assert gate.wait(5)
        w.cancel()
    assert finished == []
    assert len(produced) < 10**6


def test_error_becomes_one_line_message(qtbot):
    def bad():
        yield 1
        raise ValueError("lr must be positive\nmore detail")

    w = GeneratorWorker(bad)
    with qtbot.waitSignal(w.errored, timeout=10000) as blocker:
        w.start()
    assert blocker.args == ["lr must be positive"]
    assert w.wait(5000)
    with pytest.raises(RuntimeError):
        w.start()


def test_garbage_cycles_holding_qt_objects_die_on_the_gui_thread(qtbot):
    import gc
    import threading

    from PySide6.QtCore import QObject

    from lossview.gui.app import collect_garbage_on_the_gui_thread

    collect_garbage_on_the_gui_thread()
    assert not gc.isenabled()
    died_in = []

    class Holder:
        pass

    h = Holder()
    h.obj = QObject()
    h.me = h  # a reference cycle: only the cycle collector frees it
    h.obj.destroyed.connect(lambda *_: died_in.append(threading.current_thread()))
    del h
    # a worker allocating heavily (as training does) must not collect it on its thread
    junk: list = []  # kept alive: the allocations count towards a collection
    t = threading.Thread(target=lambda: junk.extend([] for _ in range(20_000)))
    t.start()
    t.join()
    assert died_in == []
    qtbot.waitUntil(lambda: bool(died_in), timeout=5000)
    assert died_in == [threading.main_thread()]

"""Jobs for the ProcessWorker tests: module-level generators of a Qt-free module, so a
child process can import them (pickled by reference, like lossview.core.tasks.jobs)."""

import os
import sys
import time
from pathlib import Path


def counting(n):
    total = 0
    for i in range(n):
        total += i
        yield i
    return total


def describe():
    """What the child process is: its pid, niceness, thread budget and Qt modules."""
    from lossview.core.surface.threads import current_budget

    yield "looked"
    return {"pid": os.getpid(), "nice": os.nice(0), "budget": current_budget(),
            "policy": os.sched_getscheduler(0) if hasattr(os, "sched_getscheduler") else None,
            "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules
            else None, "omp_wait": os.environ.get("OMP_WAIT_POLICY"),
            "qt": sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph"))}


def failing():
    yield 1
    raise ValueError("lr must be positive\nmore detail")


def needs_model():
    from lossview.core.errors import LossviewError

    yield 1
    raise LossviewError("loss surfaces need the model and data; pass --model FILE.py")


def dying():
    yield 1
    os._exit(3)


def until_cancelled(marker):
    """Yields forever; writes ``marker`` when closed (GeneratorExit at its yield)."""
    try:
        i = 0
        while True:
            time.sleep(0.005)
            yield i
            i += 1
    finally:
        Path(marker).write_text("closed")


def stuck(marker):
    """Never reaches a second yield: only killing the child stops it. Writes ``marker``
    once it is inside the long call."""
    yield 0
    Path(marker).write_text("sleeping")
    time.sleep(600)
    yield 1


def surface_then_modules(path, steps):
    """A real surface job (lossview.core.tasks.jobs.surface_scenes, scenes with isolines), then
    the Qt modules this child process has imported."""
    from lossview.core.tasks.jobs import surface_scenes

    final = yield from surface_scenes((path, steps), False, plane="pca", steps=9, cache=False)
    return {"n_iso": len(final.scene.iso),
            "qt": sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "pyqtgraph"))}

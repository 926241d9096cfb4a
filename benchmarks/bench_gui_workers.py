"""GUI-thread responsiveness of the surface panel and the train dialog, and scrub cost.

A 5 ms QTimer heartbeat runs on the GUI thread; the largest gap between two beats is how
long the GUI thread was blocked (goal: < 50 ms) while

- ``surface``: the surface panel computes a 51 x 51 surface of an ``mlp`` run (no cache),
  drawing each progressive refinement in 3D and 2D;
- ``training``: the train dialog trains the ``mlp`` problem live (3000 steps, a snapshot
  every 20), mirroring every snapshot into the LiveRun and the dialog's plot;
- ``sweep``: the dialog's learning-rate sweep on the quadratic (3 runs, one diverging).

``scrub``: milliseconds per timeline step with only the surface panel bound (3D and 2D
marker, honesty cursor), over 1,000 steps of a 1,000-snapshot quadratic run with a 51 x 51
surface (goal for the whole window: < 16 ms a step).

    xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" python benchmarks/bench_gui_workers.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication


class Heartbeat:
    def __init__(self, interval_ms: int = 5) -> None:
        self.gaps: list[float] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._beat)

    def start(self) -> None:
        self.gaps.clear()
        self._clock.start()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _beat(self) -> None:
        self.gaps.append(self._clock.restart())

    def summary(self) -> str:
        g = sorted(self.gaps[1:]) or [0]
        p99 = g[min(len(g) - 1, int(0.99 * len(g)))]
        return f"max gap {max(g):.0f} ms, p99 {p99:.0f} ms, median {statistics.median(g):.0f} ms"


def wait_for(app: QApplication, signal, timeout_s: float = 600) -> None:
    done = []
    signal.connect(lambda *a: done.append(1))
    t0 = time.monotonic()
    while not done and time.monotonic() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.001)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="lossview-bench-workers-") as d:
        # the benchmark's runs, and the window's settings (recent folders, layout), in a
        # folder deleted afterwards: not in the user's settings and /tmp
        os.environ.setdefault("LOSSVIEW_SETTINGS_DIR", d)
        return _run(Path(d))


def _run(tmp: Path) -> int:
    from lossview.gui.app import make_app, prewarm_imports, start_job_server

    app = make_app()  # as the app: GIL switch interval, thread budget, GC on this thread
    start_job_server()  # the jobs' forkserver imports torch in its own process ...
    prewarm_imports()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 2.0:  # ... ready, as it is a moment after launch
        app.processEvents()
        time.sleep(0.005)
    from lossview.core.io import open_run
    from lossview.core.train.config import TrainConfig
    from lossview.core.train.trainer import run_to_end, train
    from lossview.gui.surface.panel import SurfacePanel
    from lossview.gui.timeline import Timeline
    from lossview.gui.training.dialog import TrainDialog

    hb = Heartbeat()

    # -- surface ------------------------------------------------------------------
    run_to_end(train(TrainConfig("mlp", steps=1000, every=20), tmp / "mlp"))
    run = open_run(tmp / "mlp")
    tl = Timeline()
    tl.set_steps(run.steps)
    panel = SurfacePanel(tl)
    panel.toolbar.set_grid_steps(61)
    panel.resize(900, 700)
    panel.show()
    app.processEvents()
    hb.start()
    t0 = time.perf_counter()
    panel.set_run(run, None)
    wait_for(app, panel.surface_ready)
    hb.stop()
    print(f"surface 61x61 mlp ({len(run)} snapshots): {time.perf_counter() - t0:.1f} s, "
          f"{hb.summary()}")

    # -- live training ------------------------------------------------------------
    dlg = TrainDialog()
    dlg.folder_edit.setText(str(tmp))
    dlg.set_problem("mlp")
    dlg.show()
    hb.start()
    t0 = time.perf_counter()
    dlg.start()
    wait_for(app, dlg.run_finished)
    hb.stop()
    print(f"live training mlp 3000 steps: {time.perf_counter() - t0:.1f} s, {hb.summary()}")

    dlg.set_problem("quadratic")
    dlg.steps_spin.setValue(2000)
    dlg.sweep_check.setChecked(True)
    hb.start()
    t0 = time.perf_counter()
    dlg.start()
    wait_for(app, dlg.sweep_finished)
    hb.stop()
    print(f"lr sweep quadratic 3 x 2000 steps: {time.perf_counter() - t0:.1f} s, {hb.summary()}")
    dlg.shutdown()

    # -- scrubbing ------------------------------------------------------------------
    run_to_end(train(TrainConfig("quadratic", steps=9990, every=10), tmp / "q1000"))
    run = open_run(tmp / "q1000")
    tl.set_steps(run.steps)
    panel.toolbar.set_grid_steps(51)
    panel.set_run(run, None)
    wait_for(app, panel.surface_ready)
    for contour in (False, True):
        panel.set_contour(contour)
        app.processEvents()
        times = []
        for i in range(len(run)):
            t = time.perf_counter()
            tl.set_index(i)
            app.processEvents()  # includes the repaint of the GL view / plot
            times.append(1000 * (time.perf_counter() - t))
        print(f"scrub {'2D' if contour else '3D'} surface panel, {len(run)} snapshots: "
              f"median {statistics.median(times):.2f} ms, p99 "
              f"{sorted(times)[int(0.99 * len(times))]:.2f} ms, max {max(times):.1f} ms")
    panel.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Whole-window responsiveness: scrub cost per timeline step and the GUI thread's longest
block while opening, analysing, measuring sharpness, computing a surface and training.

- ``scrub``: a 1,000-snapshot ``quadratic`` run (9,990 steps, a snapshot every 10) with a
  51 x 51 surface, shown in the full 1600 x 1000 main window (loss, trajectory, surface,
  diagnostics). Each timeline step is ``set_index`` followed by ``processEvents`` (which
  runs the repaints of every panel). Goal: < 16 ms a step.
- ``open``: a 5 ms QTimer heartbeat on the GUI thread while the window opens that run:
  load + analysis (worker), drawing every panel, sharpness (worker) and the 51 x 51
  surface (worker, progressive). The largest gap between beats is the longest block.
  Goal: < 50 ms.
- ``live``: the same heartbeat while the main window follows live training of the ``mlp``
  problem (3,000 steps), then opens the saved run.

    xvfb-run -a -s "-screen 0 1600x1000x24 +extension GLX" python benchmarks/bench_gui.py
    ... python benchmarks/bench_gui.py --no-surface   # 2D panels only, no live training

``--watch`` adds, under each measurement, stack samples of every thread during the
longest blocks (``_watchdog.py``); ``--turns`` the events delivered in them, timed and
nested (``_turnlog.py``; its Python ``notify`` adds a little to every event), and with
``--items`` each pyqtgraph item's paint (``--min-ms 0.2``: the scrub's events down to 0.2 ms,
1 ms by default; ``--gap-ms 25``: blocks over 25 ms, 40 by default). ``--no-surface`` replaces the
surface panel by a placeholder, to separate the cost of the
2D panels from that of the OpenGL view. ``--only live`` skips the scrub, ``--only open`` the scrub
and the live training. The scrub also
reports how many frames the 3D view rendered (its marker is throttled to ~30 Hz) and
what a frame cost (its ``paintGL``, inside the per-step times).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from PySide6.QtCore import QElapsedTimer, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication


class GcPauses:
    """Cycle collections on the GUI thread (the app collects from a 1 s timer there):
    how many of each generation, and the longest, since :meth:`reset`."""

    def __init__(self) -> None:
        import gc

        self.runs: list[tuple[int, float]] = []
        self._t = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.runs.append((info["generation"], 1000 * (time.perf_counter() - self._t)))

    def reset(self) -> None:
        self.runs.clear()

    def summary(self) -> str:
        if not self.runs:
            return "no cycle collection"
        longest = max(self.runs, key=lambda r: r[1])
        per_gen = [sum(1 for g, _ in self.runs if g == k) for k in range(3)]
        return (f"cycle collections (gen 0/1/2): {per_gen[0]}/{per_gen[1]}/{per_gen[2]}, "
                f"longest {longest[1]:.1f} ms (gen {longest[0]})")


class _Probe(QObject):
    ping = Signal(float)


class Heartbeat:
    """Two measures of how long the GUI thread could not react.

    - the largest gap between the beats of a 5 ms QTimer (the issue's measure). Qt runs a
      timer only once no posted event is pending, so a steady stream of events (paints,
      worker signals) stretches the gaps even when each event is short;
    - the largest wait of a posted event: a helper thread posts a queued signal every
      5 ms stamped with its send time, the GUI thread records how long each waited. Input
      events wait in the same queue, so this is the delay a click or key press would see.
    """

    def __init__(self, interval_ms: int = 5, watch: bool = False, gap_ms: float = 40.0) -> None:
        #: with --turns, the blocks longer than this are reported
        self.gap_ms = gap_ms
        self.gaps: list[float] = []
        self.waits: list[float] = []
        self.beats: list[float] = []  # perf_counter of each beat (for --turns)
        self._interval = interval_ms / 1000
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(lambda: self.gaps.append(self._clock.restart()))
        self._timer.timeout.connect(lambda: self.beats.append(time.perf_counter()))
        self.watchdog = None
        if watch:
            from _watchdog import Watchdog

            self.watchdog = Watchdog()
            self._timer.timeout.connect(self.watchdog.beat)
        self._probe = _Probe()
        self._probe.ping.connect(lambda t: self.waits.append(1000 * (time.perf_counter() - t)),
                                 Qt.ConnectionType.QueuedConnection)
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.gaps.clear()
        self.waits.clear()
        self.beats.clear()
        self._clock.start()
        self._timer.start()
        self._running = True
        self._thread = threading.Thread(target=self._post, daemon=True)
        self._thread.start()
        if self.watchdog is not None:
            self.watchdog.start()

    def _post(self) -> None:
        while self._running:
            self._probe.ping.emit(time.perf_counter())
            time.sleep(self._interval)

    def stop(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
        self._timer.stop()
        self._running = False
        if self._thread is not None:
            self._thread.join()
        QApplication.processEvents()  # the last pings

    def summary(self) -> str:
        g = sorted(self.gaps[1:]) or [0.0]
        p99 = g[min(len(g) - 1, int(0.99 * len(g)))]
        w = sorted(self.waits) or [0.0]
        wp99 = w[min(len(w) - 1, int(0.99 * len(w)))]
        text = (f"longest block {max(g):.0f} ms, p99 {p99:.0f} ms, median {statistics.median(g):.0f} ms"
                f" | posted-event wait: max {max(w):.0f} ms, p99 {wp99:.0f} ms")
        if self.watchdog is not None:
            import io

            buf = io.StringIO()
            self.watchdog.report(file=buf)
            text += "\n" + buf.getvalue().rstrip()
        if "--turns" in sys.argv:
            import io

            import _turnlog

            buf = io.StringIO()
            _turnlog.report(self.beats, threshold_ms=self.gap_ms, file=buf)
            text += "\n" + buf.getvalue().rstrip()
        return text


def pump_until(app: QApplication, done, timeout_s: float = 900.0) -> None:
    t0 = time.monotonic()
    while not done() and time.monotonic() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.001)


def _time_gl_frames(surface) -> list[float]:
    """Milliseconds of every frame the 3D view renders (its paintGL), from now on."""
    frames: list[float] = []
    view = getattr(getattr(surface, "_gl_view", None), "view", None)
    if view is None:
        return frames
    paint = view.frame  # what paintGL calls (looked up on the instance at each frame)

    def timed() -> None:
        t = time.perf_counter()
        paint()
        frames.append(1000 * (time.perf_counter() - t))

    view.frame = timed
    return frames


def main() -> int:
    if "-h" in sys.argv or "--help" in sys.argv:  # before any window: no display needed
        print(__doc__)
        return 0
    with tempfile.TemporaryDirectory(prefix="lossview-bench-gui-") as d:
        # the benchmark's runs, and the window's settings (recent folders, layout), in a
        # folder deleted afterwards: not in the user's settings and /tmp
        os.environ.setdefault("LOSSVIEW_SETTINGS_DIR", d)
        return _run(Path(d))


def _run(tmp: Path) -> int:
    from lossview.gui.app import PREWARM_DELAY_MS, make_app, prewarm_imports, probe_gl, start_job_server

    min_ms = float(sys.argv[sys.argv.index("--min-ms") + 1]) if "--min-ms" in sys.argv else 1.0
    if "--turns" in sys.argv:
        import _turnlog

        _turnlog._MIN_S = min(_turnlog._MIN_S, min_ms / 1000)
        app = make_app(cls=_turnlog.TimedApplication)
        _turnlog.install(items="--items" in sys.argv)
    else:
        app = make_app()
    start_job_server()  # as run_app does once its window shows ...
    no_surface = "--no-surface" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    if no_surface:
        import lossview.gui.window.main_window as mw

        mw._surface_panel_class = lambda: None
    from lossview.core.train.config import TrainConfig
    from lossview.core.train.trainer import run_to_end, train
    from lossview.gui.window.main_window import MainWindow

    run_to_end(train(TrainConfig("quadratic", steps=9990, every=10), tmp / "q1000"))

    probe_gl()  # as run_app does before its window shows
    win = MainWindow()
    win.resize(1600, 1000)
    surface = win.surface_panel
    if hasattr(surface, "toolbar"):
        surface.toolbar.set_grid_steps(51)
    win.show()
    t_show = time.perf_counter()
    while time.perf_counter() - t_show < 0.5:  # the window's own first paint is start-up,
        app.processEvents()                      # not opening: let it finish first
        time.sleep(0.005)
    # ... and, as ``lossview open PATH`` does, the run is opened at once, PyOpenGL
    # imported in the background a moment later
    QTimer.singleShot(PREWARM_DELAY_MS, prewarm_imports)

    # -- open: load, analyse, draw, sharpness, surface ----------------------------------
    gap_ms = float(sys.argv[sys.argv.index("--gap-ms") + 1]) if "--gap-ms" in sys.argv else 40.0
    hb = Heartbeat(watch="--watch" in sys.argv, gap_ms=gap_ms)
    gcp = GcPauses()
    loaded = []
    win.run_loaded.connect(loaded.append)
    hb.start()
    t0 = time.perf_counter()
    win.open_path(str(tmp / "q1000"))
    pump_until(app, lambda: loaded and not win.is_computing())
    hb.stop()
    what = "2D panels only" if no_surface else "51x51 surface"
    print(f"open 1000-snapshot run + analysis + sharpness + {what}: "
          f"{time.perf_counter() - t0:.1f} s, {hb.summary()}")
    print(f"  {gcp.summary()}")

    # -- scrub ----------------------------------------------------------------------
    tl = win.timeline
    modes = () if only in ("live", "open") else ((("no surface panel", None),) if no_surface
             else (("3D surface", False), ("2D contour surface", True)))
    gl_frames = _time_gl_frames(surface)
    for label, contour in modes:
        if contour is not None and hasattr(surface, "set_contour"):
            surface.set_contour(contour)
        tl.set_index(0)
        t_settle = time.perf_counter()  # the switched view's own first paint is not a
        while time.perf_counter() - t_settle < 0.3:  # scrub step
            app.processEvents()
            time.sleep(0.005)
        times = []
        gl_frames.clear()
        gcp.reset()
        t_all = time.perf_counter()
        spans = []
        for i in range(tl.count):
            t = time.perf_counter()
            tl.set_index(i)
            app.processEvents()
            spans.append((t, time.perf_counter()))
            times.append(1000 * (spans[-1][1] - t))
        wall = time.perf_counter() - t_all
        times.sort()
        print(f"scrub whole window ({label}), {tl.count} snapshots: median "
              f"{statistics.median(times):.2f} ms, p99 {times[int(0.99 * len(times))]:.2f} ms, "
              f"max {times[-1]:.1f} ms per step (GL view's own frames included)")
        if "--turns" in sys.argv:  # what the three slowest steps held
            import _turnlog

            _turnlog.report_spans(sorted(spans, key=lambda s: s[0] - s[1])[:3], t_all,
                                  min_ms=min_ms)
        print(f"  {gcp.summary()}")
        if gl_frames:
            print(f"  3D view frames during that scrub: {len(gl_frames)} in {wall:.1f} s "
                  f"({len(gl_frames) / wall:.0f} a second, throttled to <= 30), median "
                  f"{statistics.median(gl_frames):.1f} ms, max {max(gl_frames):.1f} ms a frame")

    # -- live training -------------------------------------------------------------------
    win.open_train_dialog() if not no_surface and only in (None, "live") else None
    dlg = win._train_dialog
    if dlg is not None:
        dlg.folder_edit.setText(str(tmp))
        dlg.set_problem("mlp")
        before = win.run
        hb.start()
        gcp.reset()
        t0 = time.perf_counter()
        dlg.start()
        pump_until(app, lambda: not dlg.is_running() and win.run is not before
                   and not win.run.live and not win.is_computing())
        hb.stop()
        print(f"live training mlp 3000 steps in the main window, then opening it: "
              f"{time.perf_counter() - t0:.1f} s, {hb.summary()}")
        print(f"  {gcp.summary()}")
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

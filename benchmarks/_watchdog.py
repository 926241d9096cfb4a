"""What the GUI thread was doing while it did not react: stack samples of long blocks.

A helper thread watches the heartbeat (``beat()`` from a GUI-thread timer); whenever the
GUI thread is more than ``threshold_ms`` late it samples the Python stacks of every thread
each ``period_ms`` until the next beat. ``report()`` prints the longest blocks with, for
each thread, its most frequent innermost lossview / pyqtgraph frames. Sampling takes the
GIL, so a thread inside C++ (a Qt paint, a torch kernel) shows the Python line that
called it. Used by ``bench_gui.py --watch``.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
import traceback

_KEEP = ("lossview", "pyqtgraph", "benchmarks", "OpenGL", "torch")


def _frames(frame, depth: int = 4) -> str:
    """The innermost ``depth`` frames of interest, innermost first."""
    out = []
    for fs in reversed(traceback.extract_stack(frame)):
        if any(k in fs.filename for k in _KEEP):
            name = fs.filename.rsplit("site-packages/", 1)[-1].rsplit("/main/", 1)[-1]
            out.append(f"{name}:{fs.lineno} {fs.name}")
            if len(out) >= depth:
                break
    return " < ".join(out) or "(no frame of interest)"


class Watchdog:
    def __init__(self, threshold_ms: float = 40.0, period_ms: float = 3.0) -> None:
        self.threshold = threshold_ms / 1000
        self.period = period_ms / 1000
        self.blocks: list[tuple[float, float, dict[str, collections.Counter]]] = []
        self._last = time.perf_counter()
        self._gui = threading.get_ident()
        self._running = False
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        self._last = time.perf_counter()

    def start(self) -> None:
        self.blocks.clear()
        self._last = time.perf_counter()
        self._running = True
        self._thread = threading.Thread(target=self._watch, daemon=True, name="watchdog")
        self._thread.start()

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join()

    def _watch(self) -> None:
        t0 = time.perf_counter()
        names = {}
        while self._running:
            time.sleep(self.period)
            start = self._last
            if time.perf_counter() - start < self.threshold:
                continue
            samples: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
            while self._running and self._last == start:
                for ident, frame in sys._current_frames().items():
                    if ident == threading.get_ident():
                        continue
                    if ident not in names:
                        names = {t.ident: t.name for t in threading.enumerate()}
                    who = "GUI" if ident == self._gui else names.get(ident, str(ident))
                    samples[who][_frames(frame)] += 1
                time.sleep(self.period)
            self.blocks.append((start - t0, 1000 * (self._last - start), samples))

    def report(self, n: int = 6, file=sys.stdout) -> None:
        for at, ms, samples in sorted(self.blocks, key=lambda b: -b[1])[:n]:
            print(f"  block of {ms:.0f} ms at {at:.2f} s:", file=file)
            for who, c in sorted(samples.items(), key=lambda kv: kv[0] != "GUI"):
                total = sum(c.values())
                for where, k in c.most_common(3):
                    print(f"    {who:>18} {k:3d}/{total:<3d} {where}", file=file)

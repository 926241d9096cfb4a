"""Learning-rate sweep view: every run's path in one PCA basis beside their loss curves.

Fed with :class:`~lossview.core.analysis.sweep.SweepEvent` batches from the worker; the loss curves
update on every batch, the shared PCA (a small SVD) at most ``PCA_INTERVAL`` seconds
apart and once more at the end. A run that diverges ends in a cross with the label
"diverged at step N: lr 3 above the limit 2/λ_max = 2" in both plots. Once the sharpness
at the runs' common start is known (SGD), the legend says which side of the stability
limit each learning rate lies, in core's words (:func:`~lossview.core.analysis.sweep.limit_side`).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from lossview.core.analysis.sweep import divergence_label, limit_side, shared_pca, wrap_label
from lossview.gui.plotkit import style
from lossview.gui.plotkit.axes import nice_axes
from lossview.gui.plotkit.empty import empty_note

COLORS = ("#1f6fb4", "#e07b16", "#d62728", "#2e9d4f", "#7b52ab", "#8c564b")
PCA_INTERVAL = 0.5


class _RunTrace:
    def __init__(self, lr: float) -> None:
        self.lr = lr
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.snap_steps: list[int] = []
        self.vectors: list[np.ndarray] = []
        self.status = "waiting"
        self.diverged_at: int | None = None


class SweepView(QWidget):
    """Shared-PCA paths (left) and loss curves (right) of a learning-rate sweep."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pca_plot = pg.PlotWidget(title="Weights in a shared PCA basis", axisItems=nice_axes())
        self.pca_plot.setLabel("bottom", "PC1")
        self.pca_plot.setLabel("left", "PC2")
        self.pca_plot.showGrid(x=True, y=True, alpha=0.15)
        self.loss_plot = pg.PlotWidget(title="Training loss (mini-batch)", axisItems=nice_axes())
        self.loss_plot.setLabel("bottom", "step")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.15)
        # one legend for both plots (their colours are the runs'), in a row of its own:
        # inside either plot it covered paths or the ends of the curves
        self.legend = QLabel("")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setContentsMargins(6, 2, 6, 2)
        plots = QHBoxLayout()
        plots.setContentsMargins(0, 0, 0, 0)
        plots.addWidget(self.pca_plot, 1)
        plots.addWidget(self.loss_plot, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.legend)
        lay.addLayout(plots, 1)
        self.runs: list[_RunTrace] = []
        self.sharpness: float | None = None
        self.momentum = 0.0
        self._paths: list[pg.PlotDataItem] = []
        self._curves: list[pg.PlotDataItem] = []
        self._marks: list[pg.GraphicsObject] = []
        self._last_pca = 0.0
        self.pca = None
        # before a sweep each plot is a sentence, not empty axes
        self.notes = [empty_note(p.getPlotItem(), style.current().muted) for p in
                      (self.pca_plot, self.loss_plot)]
        self.notes[0].setText("Each run's path in the weights, in one PCA basis.")
        self.notes[1].setText("Each run's loss: press Start to train one run per learning rate.")

    def reset(self, lrs: list[float], momentum: float = 0.0) -> None:
        """Start a new sweep over ``lrs``."""
        for plot, note in zip((self.pca_plot, self.loss_plot), self.notes):
            plot.clear()
            note.setText("")
        self.runs = [_RunTrace(lr) for lr in lrs]
        self.sharpness = None  # measured by the worker after a divergence
        self.momentum = float(momentum)
        self._paths, self._curves, self._marks = [], [], []
        for i, lr in enumerate(lrs):
            color = COLORS[i % len(COLORS)]
            name = f"lr = {lr:.4g}"
            self._paths.append(self.pca_plot.plot(
                pen=pg.mkPen(color, width=1.5), symbol="o", symbolSize=4,
                symbolBrush=color, symbolPen=None, name=name, connect="finite"))
            self._curves.append(self.loss_plot.plot(pen=pg.mkPen(color, width=1), name=name,
                                                    connect="finite"))
        self.pca = None
        self._set_legend()

    def outcome(self, i: int) -> str:
        """What became of run ``i``, in a few words ("" while it runs or if it learned)."""
        r = self.runs[i]
        if r.diverged_at is not None:
            return f"diverged at step {r.diverged_at:,}"
        if r.status in ("finished", "stopped") and self.stalled(i):
            return "loss did not fall"
        return ""

    def _set_legend(self) -> None:
        items = []
        for i, r in enumerate(self.runs):
            what = "; ".join(w for w in (self.outcome(i), self.side(i)) if w)
            items.append(f"<span style='color:{COLORS[i % len(COLORS)]}'>&#9473;&#9473;</span>"
                         f"&nbsp;lr = {r.lr:.4g}" + (f" <i>({what})</i>" if what else ""))
        if self.sharpness is not None:
            muted = style.current().muted
            items.append(f"<span style='color:{muted}'>λ_max = {self.sharpness:.4g} at the "
                         "common start</span>")
        self.legend.setText("&nbsp;&nbsp;&nbsp; ".join(items))

    def side(self, i: int) -> str:
        """Which side of the stability limit run ``i``'s lr lies ("" while unknown)."""
        return limit_side(self.runs[i].lr, self.sharpness, self.momentum)

    def add_events(self, events: list) -> None:
        """Take a batch of SweepEvents from the worker and redraw."""
        touched = set()
        legend_changed = False
        for ev in events:
            r = self.runs[ev.index]
            p = ev.progress
            if p is None:
                if ev.sharpness is not None:
                    self.sharpness = float(ev.sharpness)
                    legend_changed = True  # it says each lr's side of the limit
                continue
            r.status = p.status
            mets = p.metrics or {}
            if "step" in mets and len(mets["step"]):
                r.steps.extend(np.asarray(mets["step"]).tolist())
                r.loss.extend(np.asarray(mets["loss"], dtype=float).tolist())
            if p.params is not None and p.snapshot_step is not None and (
                    not r.snap_steps or p.snapshot_step > r.snap_steps[-1]):
                    r.snap_steps.append(int(p.snapshot_step))
                    r.vectors.append(np.concatenate(
                        [np.asarray(v, dtype=np.float64).ravel() for v in p.params.values()]))
            if p.status == "diverged" and r.diverged_at is None:
                r.diverged_at = int(p.step)
                legend_changed = True
            touched.add(ev.index)
        for i in touched:
            r = self.runs[i]
            loss = np.asarray(r.loss, dtype=float)
            loss = np.where(loss > 0, loss, np.nan)  # log axis
            self._curves[i].setData(np.asarray(r.steps, dtype=float), loss)
        if legend_changed:
            self._set_legend()
        now = time.monotonic()
        if now - self._last_pca >= PCA_INTERVAL:
            self._last_pca = now
            self.refresh_pca()

    def finish(self) -> None:
        """The sweep ended: final PCA and divergence labels."""
        self.refresh_pca()
        for i, r in enumerate(self.runs):
            if r.diverged_at is not None:
                self._mark_divergence(i)
        self._set_legend()

    def refresh_pca(self) -> None:
        have = [r for r in self.runs if r.vectors]
        if not have:
            return
        dims = {len(r.vectors[0]) for r in have}
        if len(dims) != 1:
            return
        d = dims.pop()
        mats = [np.stack(r.vectors) if r.vectors else np.zeros((0, d)) for r in self.runs]
        self.pca = shared_pca(mats, [r.diverged_at is not None for r in self.runs])
        for i, (c, u) in enumerate(zip(self.pca.coords, self.pca.used)):
            c = _pull_in(c, u, self.pca.coords, self.pca.used)
            if np.isfinite(c).all(axis=1).any():
                self._paths[i].setData(c[:, 0], c[:, 1])
            else:  # nothing to draw yet (pyqtgraph warns on an all-NaN path)
                self._paths[i].setData([], [])
        ev1, ev2 = self.pca.explained
        if math.isfinite(ev1):
            self.pca_plot.setLabel("bottom", f"PC1 ({100 * ev1:.0f}% of variance)")
            self.pca_plot.setLabel("left", f"PC2 ({100 * ev2:.0f}% of variance)")
        used = [c[u] for c, u in zip(self.pca.coords, self.pca.used) if u.any()]
        pts = np.concatenate(used) if used else np.zeros((0, 2))
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts):
            lo, hi = pts.min(axis=0), pts.max(axis=0)
            self.pca_plot.setRange(xRange=(lo[0], hi[0]), yRange=(lo[1], hi[1]), padding=0.08)

    def stalled(self, i: int) -> bool:
        """The run ended without diverging but its loss did not fall: the median of its
        last tenth is above 90% of the median of its first 20 logged steps."""
        r = self.runs[i]
        loss = np.asarray(r.loss, dtype=float)
        if r.diverged_at is not None or len(loss) < 40:
            return False
        head = np.nanmedian(loss[:20])
        tail = np.nanmedian(loss[-max(len(loss) // 10, 10):])
        return bool(np.isfinite(head) and np.isfinite(tail) and tail > 0.9 * head)

    def divergence_text(self, i: int) -> str | None:
        r = self.runs[i]
        if r.diverged_at is None:
            return None
        return divergence_label(r.diverged_at, r.lr, self.sharpness, self.momentum)

    def _mark_divergence(self, i: int) -> None:
        r = self.runs[i]
        color = COLORS[i % len(COLORS)]
        text = self.divergence_text(i) or ""
        # loss plot: a cross at the last finite loss and the label
        loss = np.asarray(r.loss, dtype=float)
        ok = np.isfinite(loss) & (loss > 0)
        if ok.any():
            j = int(np.flatnonzero(ok)[-1])
            x, y = float(r.steps[j]), float(np.log10(loss[j]))
            self._add_mark(self.loss_plot, x, y, color, text)
        # PCA plot: the last snapshot inside the fitted view
        if self.pca is not None:
            c = self.pca.coords[i]
            u = self.pca.used[i]
            if u.any():
                j = int(np.flatnonzero(u)[-1])
                self._add_mark(self.pca_plot, float(c[j, 0]), float(c[j, 1]), color, text)

    def _add_mark(self, plot: pg.PlotWidget, x: float, y: float, color: str, text: str) -> None:
        mark = pg.ScatterPlotItem([x], [y], symbol="x", size=16, pen=pg.mkPen(color, width=3),
                                  brush=pg.mkBrush(color))
        (x0, x1), (y0, y1) = plot.getPlotItem().getViewBox().viewRange()
        # keep the label inside the plot: it extends away from the nearer edges
        anchor = (0.0 if x < (x0 + x1) / 2 else 1.0, -0.2 if y > (y0 + y1) / 2 else 1.2)
        label = pg.TextItem(wrap_label(text), color=color, anchor=anchor)
        label.setZValue(10)
        label.setPos(x, y)
        plot.addItem(mark)
        plot.addItem(label)
        self._marks += [mark, label]


def _pull_in(c: np.ndarray, used: np.ndarray, all_coords: list, all_used: list) -> np.ndarray:
    """Coordinates for drawing: snapshots left out of the fit (a diverging run's last ones,
    possibly ~1e30 away) are pulled in along their direction to just outside the view, so
    the path visibly leaves the plot without overflowing the renderer."""
    pts = [a[u] for a, u in zip(all_coords, all_used) if u.any()]
    if not pts:
        return c
    p = np.concatenate(pts)
    p = p[np.isfinite(p).all(axis=1)]
    if not len(p):
        return c
    centre = (p.min(axis=0) + p.max(axis=0)) / 2
    reach = 1.5 * float(np.max(p.max(axis=0) - p.min(axis=0))) or 1.0
    out = c.copy()
    far = ~used & np.isfinite(c).all(axis=1)
    if far.any():
        d = c[far] - centre
        n = np.linalg.norm(d, axis=1, keepdims=True)
        out[far] = centre + d / np.maximum(n, 1e-300) * np.minimum(n, reach)
    return out

"""Trajectory panel: snapshots on two principal components, coloured by step (or epoch).

Beside it, the explained-variance spectrum against a random walk's (Antognini &
Sohl-Dickstein 2018): PCA of pure diffusion already draws smooth arcs, so the plot says
how far this run is from that baseline, in core's words (``verdicts.similarity_words``).
Clicking a point moves the timeline there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from lossview.core.analysis.explanations import tip
from lossview.core.analysis.pca import random_walk_ratios_even
from lossview.core.analysis.report_model import Pca, RunReport
from lossview.core.analysis.verdicts import similarity_words
from lossview.gui.panels.words import report_of, step_unit
from lossview.gui.plotkit import style
from lossview.gui.plotkit.axes import nice_axes
from lossview.gui.plotkit.cursor import PointMarker
from lossview.gui.plotkit.empty import empty_note
from lossview.gui.plotkit.frames import frames
from lossview.gui.plotkit.widgets import (
    add_marker,
    cache_item,
    header,
    signals_blocked,
)
from lossview.gui.timeline import Timeline

MAX_PCS = 6
N_COLOURS = 64


def random_walk_baseline(pca: Pca, n_points: int, k: int) -> np.ndarray:
    """Explained-variance ratios of PC 1..k for a random walk observed at this run's
    snapshots: the baseline core compared the run with (``pca.random_walk.baseline_ratio``,
    exact for unevenly spaced snapshots), else core's closed form for ``n_points`` evenly
    spaced ones (Antognini & Sohl-Dickstein 2018; science.md section 2)."""
    base = Pca.from_json(pca).baseline_ratio  # (a dict, as core's JSON has it, is read)
    if base is not None and len(base) >= k:
        return np.asarray(base[:k], dtype=float)
    return random_walk_ratios_even(max(int(n_points), 3))[:k]


class TrajectoryPanel(QWidget):
    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._coords = np.zeros((0, 2))
        self._rows = np.array([], dtype=np.int64)  # snapshot index of each coords row
        self._evr = np.array([])
        self._plateau_row: int | None = None
        t = style.current()

        head, hl = header("Trajectory (PCA)", tip("pca"))
        # "128 of 1,000 snapshots" where a long run's PCA took an even subsample
        self.sampled = QLabel("")
        self.sampled.setToolTip(tip("pca_subsample"))
        hl.insertWidget(1, self.sampled)
        hl.addWidget(QLabel("x"))
        self.pc_x = QComboBox()
        hl.addWidget(self.pc_x)
        hl.addWidget(QLabel("y"))
        self.pc_y = QComboBox()
        hl.addWidget(self.pc_y)
        # hidden while there is no PCA, their room kept (the header is not laid out again)
        self._choosers = tuple(hl.itemAt(i).widget() for i in range(3, hl.count()))
        for w in self._choosers:
            policy = w.sizePolicy()
            policy.setRetainSizeWhenHidden(True)
            w.setSizePolicy(policy)
        for c in (self.pc_x, self.pc_y):
            c.setToolTip(tip("explained_variance"))
            # a fixed width: refilled for every run, a content-sized combo re-laid out the
            # window (every panel repainted from scratch, ~300 ms)
            c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            c.setMinimumContentsLength(4)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setContentsMargins(4, 4, 4, 4)
        self.plot = style.style_plot(self.canvas.addPlot(row=0, col=0, axisItems=nice_axes()))
        self.plot.setAspectLocked(False)
        self.plot.getAxis("left").setWidth(48)
        # opaque pens drawn segment by segment: the translucent ones were stroked as one
        # self-intersecting outline, 80 of the panel's 90 ms first paint (1,000 points)
        a = 0x90 / 255
        self.path = pg.PlotDataItem(pen=pg.mkPen(style.opaque(t.muted, a, t.background), width=1),
                                    connect="finite")
        self.wander = pg.PlotDataItem(pen=pg.mkPen(style.opaque(t.highlight, a, t.background), width=9),
                                      connect="finite", name="after the plateau")
        for it in (self.path, self.wander):
            it.curve.setSegmentedLineMode("on")
        # the 9 px band under the points without antialiasing: its edges hide under the
        # dots, and stroking it antialiased was ~13 ms of the panel's first paint
        self.wander.opts["antialias"] = False
        self.wander.setToolTip(tip("wandering"))
        self.scatter = pg.ScatterPlotItem(size=6, pen=None, hoverable=True,
                                          hoverPen=pg.mkPen(t.foreground, width=1.5),
                                          tip=None)
        self.start = pg.ScatterPlotItem(size=11, symbol="s", pen=pg.mkPen(t.foreground, width=1.2),
                                        brush=pg.mkBrush(t.background))
        self.current = PointMarker(size=17, pen=pg.mkPen(t.cursor, width=2.5))
        self.current.setZValue(30)
        self.start_label = pg.TextItem("init", color=t.muted, anchor=(0, 1.1))
        for it in (self.wander, self.path, self.scatter, self.start):
            self.plot.addItem(it)
        # the marker must not take part in auto-range: near the data's edge its 17-pixel
        # symbol moved the range, which re-stroked every cached curve (60-90 ms a step)
        add_marker(self.plot, self.current)
        for it in (self.wander, self.path, self.scatter):
            cache_item(it)
        self.plot.addItem(self.start_label, ignoreBounds=True)
        self.wander.setZValue(-1)
        self.cmap = pg.colormap.get(t.colormap)
        self.colorbar = pg.ColorBarItem(values=(0, 1), colorMap=self.cmap, interactive=False,
                                        width=12, label="step")
        self.canvas.addItem(self.colorbar, row=0, col=1)
        self.note = empty_note(self.plot, t.muted)

        # random-walk baseline: measured spectrum as bars, random walk as dots
        self.base_canvas = pg.GraphicsLayoutWidget()
        self.base_canvas.setFixedHeight(150)
        self.base_canvas.setMinimumWidth(170)
        self.base_canvas.ci.setContentsMargins(2, 4, 4, 2)
        self.base = style.style_plot(self.base_canvas.addPlot(axisItems=nice_axes()),
                                     title="explained variance",
                                     bottom="PC")
        self.base.setMouseEnabled(x=False, y=False)
        self.base.getAxis("left").setWidth(34)
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.6, brush=pg.mkBrush(t.train + "c0"),
                                    pen=None)
        self.rw = pg.PlotDataItem(pen=pg.mkPen(t.val, width=1.5), symbol="o", symbolSize=6,
                                  symbolBrush=t.val, symbolPen=None)
        self.base.addItem(self.bars)
        self.base.addItem(self.rw)
        self.base_legend = self.base.addLegend(offset=(-2, 2), labelTextSize="7pt", verSpacing=-8)
        self.base_legend.addItem(self.bars, "this run")
        self.base_legend.addItem(self.rw, "random walk")
        self.base.setToolTip(tip("explained_variance"))
        self.similarity = QLabel("")
        self.similarity.setWordWrap(True)
        self.similarity.setToolTip(tip("random_walk_similarity"))
        self.similarity.setAlignment(Qt.AlignmentFlag.AlignVCenter)
        self.similarity.setMinimumWidth(120)
        below = QHBoxLayout()
        below.setContentsMargins(0, 0, 8, 4)
        below.addWidget(self.base_canvas, 3)
        below.addWidget(self.similarity, 2)

        body = QVBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(2)
        body.addWidget(self.canvas, 1)
        body.addLayout(below)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(head)
        lay.addLayout(body, 1)

        self.scatter.sigClicked.connect(self._on_clicked)
        self.pc_x.currentIndexChanged.connect(self._redraw)
        self.pc_y.currentIndexChanged.connect(self._redraw)
        timeline.index_changed.connect(self._on_index)
        self._show_note("no run", run=False)

    # -- data ---------------------------------------------------------------------
    def set_run(self, run: Any, report: RunReport | None) -> None:
        report = report_of(report)
        unit = step_unit(run, report)  # the colours count steps or epochs, as the run does
        if self.colorbar.getAxis("left").labelText != unit:
            self.colorbar.getAxis("left").setLabel(unit)
        pca = report.pca
        # coords_k carries the first few PCs (coords only PC1-PC2): the choosers offer them all
        coords = pca.coords_k if pca.coords_k is not None else pca.coords
        if coords is None or not len(coords):
            reason = pca.reason or (
                "fewer than 3 snapshots" if len(run) < 3 else "PCA was not computed")
            self._coords = np.zeros((0, 2))
            self._rows = np.array([], dtype=np.int64)
            self._evr = np.array([])
            self._fill_combos(0)
            self._clear_items()
            self.sampled.setText("")
            self._show_note(f"trajectory not available: {reason}")
            frames().cancel(self, "baseline")  # a newer run drops one still to be drawn
            self._set_baseline(None, np.array([]))
            return
        c = np.array(coords, dtype=float)
        if c.ndim != 2 or c.shape[1] < 1:
            c = c.reshape(len(c), -1)
        if c.shape[1] == 1:
            c = np.column_stack([c, np.zeros(len(c))])
        self._coords = c
        idx = pca.indices
        self._rows = (np.asarray(idx, dtype=np.int64) if idx is not None
                      else np.arange(len(c), dtype=np.int64))
        of = pca.of_snapshots
        self.sampled.setText(f"<span style='color:{style.current().muted}'>{len(self._rows):,} of "
                             f"{of:,} snapshots</span>" if of else "")
        evr = pca.explained_variance_ratio
        self._evr = np.array([] if evr is None else evr, dtype=float)
        plateau = report.plateau.step
        self._plateau_row = None
        if plateau is not None and len(self._rows):
            r = int(np.searchsorted(self._row_steps(), plateau))
            self._plateau_row = r if r < len(self._rows) else None
        self._fill_combos(min(c.shape[1], MAX_PCS))
        self._show_note("")
        self._redraw()
        self._on_index(self.timeline.index)
        # the baseline plot a frame later (~5 ms): this turn also paints the trajectory
        # (~30 ms on a software display), and a window that shows a run paints no more
        # than about one plot a turn (the goal: no block over 50 ms)
        sim = pca.random_walk_similarity
        base = random_walk_baseline(pca, len(self._rows), min(len(self._evr), 5))
        frames().submit(self, "baseline", [lambda: self._set_baseline(sim, base)])

    def _row_steps(self) -> np.ndarray:
        """The step of each row of coords: the timeline's steps at the rows' snapshots."""
        steps = self.timeline.steps
        if not len(steps):
            return self._rows.astype(float)
        return steps[np.clip(self._rows, 0, len(steps) - 1)].astype(float)

    def clear(self) -> None:
        self.sampled.setText("")
        self._coords = np.zeros((0, 2))
        self._rows = np.array([], dtype=np.int64)
        self._clear_items()
        self._set_baseline(None, np.array([]))
        self._show_note("no run", run=False)

    def _clear_items(self) -> None:
        for it in (self.path, self.wander, self.start, self.scatter):
            it.setData([], [])
        self.current.set_point(None)
        self.start_label.setText("")

    def _fill_combos(self, n: int) -> None:
        with signals_blocked(self.pc_x), signals_blocked(self.pc_y):
            for combo, default in ((self.pc_x, 0), (self.pc_y, 1)):
                combo.clear()
                for k in range(n):
                    combo.addItem(f"PC{k + 1}")
                if n:
                    combo.setCurrentIndex(min(default, n - 1))

    def _show_note(self, text: str, run: bool = True) -> None:
        """The plot's sentence when it has none to show (:class:`EmptyNote`); for a run
        without a PCA the spectrum below and the PC choosers go with it (with no run they
        stay: the window lays the hidden panels out while the first run loads, and a
        strip appearing then resized every plot once shown)."""
        self.note.setText(text)
        for w in (self.base_canvas, self.similarity, *self._choosers, self.colorbar):
            w.setVisible(not (text and run))

    def axes(self) -> tuple[int, int]:
        return max(self.pc_x.currentIndex(), 0), max(self.pc_y.currentIndex(), 0)

    def _redraw(self) -> None:
        if not len(self._coords):
            return
        a, b = self.axes()
        x, y = self._coords[:, a], self._coords[:, b]
        steps = self._row_steps()
        lo, hi = float(steps[0]), float(steps[-1])
        u = (steps - lo) / (hi - lo) if hi > lo else np.zeros_like(steps)
        # 64 colour levels: pyqtgraph renders one symbol per distinct brush, so a
        # thousand distinct colours would cost a thousand symbol renders
        levels = [pg.mkBrush(c) for c in self.cmap.map(np.linspace(0, 1, N_COLOURS), mode="qcolor")]
        k = np.clip(np.round(u * (N_COLOURS - 1)).astype(int), 0, N_COLOURS - 1)
        size = 7 if len(x) <= 300 else 5 if len(x) <= 2000 else 3
        self.scatter.setData(x=x, y=y, brush=[levels[i] for i in k], size=size,
                             data=np.arange(len(x)))
        self.path.setData(x, y)
        if self._plateau_row is not None:
            r = self._plateau_row
            self.wander.setData(x[r:], y[r:])
        else:
            self.wander.setData([], [])
        self.start.setData([x[0]], [y[0]])
        self.start_label.setText("init")
        self.start_label.setPos(float(x[0]), float(y[0]))
        self.colorbar.setLevels((lo, hi if hi > lo else lo + 1))

        def label(k):
            if k < len(self._evr) and np.isfinite(self._evr[k]):
                return f"PC{k + 1}  ({100 * self._evr[k]:.1f}% of variance)"
            return f"PC{k + 1}"

        t = style.current()
        self.plot.setLabel("bottom", label(a), color=t.foreground)
        self.plot.setLabel("left", label(b), color=t.foreground)
        self.plot.enableAutoRange()
        self._on_index(self.timeline.index)

    def _set_baseline(self, similarity: float | None, baseline: np.ndarray) -> None:
        """The spectrum's bars against ``baseline`` (:func:`random_walk_baseline`), and
        core's words for the similarity."""
        k = min(len(self._evr), 5, len(baseline))
        if k == 0:
            self.bars.setOpts(x=[], height=[])
            self.rw.setData([], [])
            self.similarity.setText(
                f"<span style='color:{style.current().muted}'>random-walk baseline: "
                "not available (no explained variance)</span>")
            return
        ks = np.arange(1, k + 1)
        self.bars.setOpts(x=ks, height=np.nan_to_num(self._evr[:k]), width=0.6)
        self.rw.setData(ks, baseline[:k])
        self.base.setXRange(0.4, k + 0.6, padding=0)
        self.base.setYRange(0, 1, padding=0.02)
        self.base.getAxis("bottom").setTicks([[(int(i), str(int(i))) for i in ks]])
        if similarity is None or not np.isfinite(similarity):
            self.similarity.setText("random-walk similarity: not available")
        else:
            self.similarity.setText(
                f"PC1 + PC2 hold <b>{100 * np.nansum(self._evr[:2]):.0f}%</b> of the motion "
                f"(random walk: {100 * baseline[:2].sum():.0f}%)<br>"
                f"random-walk similarity <b>{similarity:.2f}</b><br>"
                f"<span style='color:{style.current().muted}'>"
                f"{similarity_words(similarity)}</span>")

    # -- timeline -----------------------------------------------------------------
    def current_row(self, index: int) -> int | None:
        if not len(self._rows):
            return None
        r = int(np.searchsorted(self._rows, index, side="right")) - 1
        return min(max(r, 0), len(self._rows) - 1)

    def _on_index(self, index: int) -> None:
        r = self.current_row(index)
        if r is None or not len(self._coords):
            self.current.set_point(None)
            return
        a, b = self.axes()
        self.current.set_point(self._coords[r, a], self._coords[r, b])

    def _on_clicked(self, item, points, ev=None) -> None:
        if len(points):
            row = int(points[0].data())
            self.timeline.set_index(int(self._rows[row]))

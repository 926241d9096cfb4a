"""Loss panel: train/val loss, gradient norm and learning rate on linked step (or epoch) axes.

Items are created once; :meth:`LossPanel.set_run` fills them with ``setData`` and the
cursor follows the :class:`~lossview.gui.timeline.Timeline`. Dragging a cursor writes the
nearest snapshot back through the timeline (``sigDragged`` fires only for user drags, so a
timeline update never writes back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QLabel, QSizePolicy, QSlider, QVBoxLayout, QWidget

from lossview.core.analysis.explanations import tip
from lossview.core.analysis.report_model import RunReport
from lossview.core.analysis.smoothing import ema
from lossview.gui.panels.loss_series import RAW_NAMES, panel_series
from lossview.gui.panels.words import report_of, step_unit
from lossview.gui.plotkit import style
from lossview.gui.plotkit.axes import nice_axes, planned_steps, set_log_y, spans_decades, steady_range
from lossview.gui.plotkit.cursor import PixelCursor
from lossview.gui.plotkit.empty import empty_note, stack_rows
from lossview.gui.plotkit.legend_place import place
from lossview.gui.plotkit.widgets import (
    Readout,
    add_marker,
    cache_item,
    fmt,
    header,
    nearest_index,
    sync_legend,
)
from lossview.gui.timeline import Timeline


def _step_line(plot: pg.PlotItem, colour: str, width: float, label: str | None,
               position: float, tip_key: str) -> pg.InfiniteLine:
    """A dashed vertical line at a step (the plateau's start, the divergence) in ``plot``,
    with its explanation as tooltip and ``label`` written beside it at ``position``."""
    line = pg.InfiniteLine(angle=90, movable=False,
                           pen=pg.mkPen(colour, width=width, style=Qt.PenStyle.DashLine),
                           label=label, labelOpts={"position": position, "color": colour,
                                                   "anchors": [(0, 0.5), (0, 0.5)]})
    line.setToolTip(tip(tip_key))
    plot.addItem(line, ignoreBounds=True)
    return line


class LossPanel(QWidget):
    """Stacked loss / gradient-norm / learning-rate plots with a shared step cursor."""

    #: emitted after the cursor was moved by the user (index written to the timeline)
    cursor_dragged = Signal(int)

    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._growing = False  # a live run: y ranges held steady (steady_range)
        self._series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._plateau: int | None = None  # the report's plateau and divergence steps
        self._divergence: int | None = None
        self._train_name = "train"  # the smoothed curve's name (_set_series)
        self._unit = "step"  # the x axes' label
        t = style.current()

        head, hl = header("Loss", tip("loss"))
        # rewritten at every timeline step: a Readout repaints without a re-layout, and
        # its height is fixed (the first readout's glyphs, ‖ and ·, made a QLabel 1 px
        # taller, which resized the plots below and repainted them from scratch)
        self.readout = Readout(color=t.muted)
        self.readout.setObjectName("readout")
        self.readout.setContentsMargins(8, 0, 6, 0)
        self.readout.set_template("train 1.0 · ‖g‖ 1.0 · lr 0.1")
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.log_y = QCheckBox("log y")
        self.log_y.setToolTip(tip("log_y"))
        self.log_y.setChecked(True)
        hl.addWidget(self.log_y)
        lab = QLabel("smoothing")
        lab.setToolTip(tip("smoothing"))
        hl.addWidget(lab)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.smoothing.setFixedWidth(70)
        self.smoothing.setToolTip(tip("smoothing"))
        hl.addWidget(self.smoothing)
        self.smoothing_label = QLabel("0.60")
        self.smoothing_label.setMinimumWidth(28)
        hl.addWidget(self.smoothing_label)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setContentsMargins(4, 4, 8, 4)
        self.canvas.ci.setSpacing(2)
        self.p_loss = style.style_plot(self.canvas.addPlot(row=0, col=0, axisItems=nice_axes()), left="loss")
        self.p_grad = style.style_plot(self.canvas.addPlot(row=1, col=0, axisItems=nice_axes()), left="‖g‖")
        self.p_lr = style.style_plot(self.canvas.addPlot(row=2, col=0, axisItems=nice_axes()),
                                     left="lr", bottom="step")
        self.plots = (self.p_loss, self.p_grad, self.p_lr)
        self.canvas.ci.layout.setRowStretchFactor(0, 5)
        self.canvas.ci.layout.setRowStretchFactor(1, 3)
        self.canvas.ci.layout.setRowStretchFactor(2, 2)
        for p in self.plots[1:]:
            p.setXLink(self.p_loss)
        for p in self.plots:
            p.getAxis("left").setWidth(52)
            p.getAxis("left").enableAutoSIPrefix(False)
            p.setMenuEnabled(False, None)  # "log y" is the one log switch (set_log_y)
        self.p_loss.getAxis("left").setToolTip(tip("loss"))
        self.p_grad.getAxis("left").setToolTip(tip("grad_norm"))
        self.p_lr.getAxis("left").setToolTip(tip("lr"))

        # placed where it hides the least of the curves (_place_legend)
        self.legend = self.p_loss.addLegend(offset=(8, -8), labelTextSize="8pt", verSpacing=-6)
        self.legend.setBrush(pg.mkBrush(t.background + "d0"))
        self.legend_corner: str | None = None

        def curve(plot, color, name=None, width=1.5):
            c = pg.PlotDataItem(pen=pg.mkPen(color, width=width), name=name, connect="finite")
            c.setClipToView(True)
            c.setDownsampling(auto=True, method="peak")
            cache_item(c)
            plot.addItem(c)
            return c

        self.c_raw = curve(self.p_loss, t.raw, "mini-batch", width=1)
        # the dense noisy curves are drawn without antialiasing: 5x cheaper, same look
        # (the gradient norm's peak-downsampled zigzag cost 35 of the panel's 60 ms)
        self.c_raw.opts["antialias"] = False
        self.c_train = curve(self.p_loss, t.train, "train")
        self.c_val = curve(self.p_loss, t.val, "validation", width=2)
        self.c_grad = curve(self.p_grad, t.grad, "‖g‖")
        self.c_update = curve(self.p_grad, t.update, "‖Δw‖", width=1)
        self.c_lr = curve(self.p_lr, t.lr, "lr")
        self.c_grad.opts["antialias"] = False
        self.curves = (self.c_raw, self.c_train, self.c_val, self.c_grad, self.c_update,
                       self.c_lr)
        #: per plot: (curve, series key, smoothed)
        self._curves_of = (((self.c_raw, "raw", False), (self.c_train, "train", True),
                            (self.c_val, "val", False)),
                           ((self.c_grad, "grad", True), (self.c_update, "update", True)),
                           ((self.c_lr, "lr", False),))
        self.c_train.setToolTip(tip("loss"))
        self.c_val.setToolTip(tip("val_loss"))

        # plateau region + line, divergence line, cursor: one of each per plot
        self.regions, self.plateau_lines, self.divergence_lines, self.cursors = [], [], [], []
        for k, p in enumerate(self.plots):
            reg = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(t.highlight + "1c"),
                                      pen=pg.mkPen(None))
            reg.setZValue(-10)
            reg.setToolTip(tip("wandering"))
            p.addItem(reg, ignoreBounds=True)
            # the dashed step lines; only the top plot's carry their word
            pl = _step_line(p, t.plateau, 1, "plateau" if k == 0 else None, 0.92, "plateau")
            dl = _step_line(p, t.divergence, 1.5, "diverged" if k == 0 else None, 0.80,
                            "divergence")
            cur = PixelCursor(angle=90, movable=True, pen=pg.mkPen(t.cursor, width=1.5),
                                  hoverPen=pg.mkPen(t.cursor, width=3))
            cur.setToolTip(tip("cursor"))
            cur.setZValue(20)
            cur.sigDragged.connect(self._on_cursor_dragged)
            add_marker(p, cur)
            self.regions.append(reg)
            self.plateau_lines.append(pl)
            self.divergence_lines.append(dl)
            self.cursors.append(cur)
        self.notes = [empty_note(p, t.muted) for p in self.plots]
        self.absent = QLabel("")  # the series not logged, whose rows are folded away
        self.absent.setStyleSheet(f"color: {t.muted}; padding: 0 8px 2px 8px;")
        self.absent.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(head)
        lay.addWidget(self.readout)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.absent)

        self.log_y.toggled.connect(self._apply_log)
        self.smoothing.valueChanged.connect(self._on_smoothing)
        timeline.index_changed.connect(self._on_index)
        timeline.steps_changed.connect(self._bound_cursors)
        self._apply_log(True)
        self._set_markers()

    # -- data ---------------------------------------------------------------------
    def set_run(self, run: Any, report: RunReport | None) -> None:
        """Show ``run``'s metrics; ``report`` supplies plateau and divergence steps."""
        for part in self.run_parts(run, report):
            part()

    def run_parts(self, run: Any, report: RunReport | None) -> list[Callable[[], None]]:
        """:meth:`set_run` as five calls: the run's series and x frame, one per plot (its
        curves, log mode, y range and markers), then the cursors. A caller that runs them
        one per event-loop turn (live training) repaints one plot a turn: the whole
        panel's repaint and its update together blocked the GUI thread up to 30 ms.
        The cursors move over the timeline's steps."""
        rep = report_of(report)

        def series() -> None:
            self._set_series(run)
            unit = step_unit(run, rep)  # the x axes count steps or epochs, as the run does
            self._unit = unit
            self._plateau = rep.plateau.step
            self._divergence = rep.divergence.step
            planned = planned_steps(run)
            self._growing = bool(planned)
            for c in self.curves:  # a growing run's curves change more often than the cursor
                cache_item(c, on=not planned)
            if planned:  # a run still training: the frame its curves grow into, fixed
                for p in self.plots:
                    p.enableAutoRange(x=False)
                self.p_loss.setXRange(0, planned, padding=0.02)
            else:
                for p in self.plots:
                    p.enableAutoRange(x=True)

        def plot(k: int) -> Callable[[], None]:
            def show() -> None:
                self._redraw_plot(k)
                self._set_log(k, self.log_y.isChecked())
                self._set_markers_of(k)
                if k == 0:
                    self._place_legend()
            return show

        def cursors() -> None:
            self._bound_cursors()
            self._on_index(self.timeline.index)

        return [series, *(plot(k) for k in range(len(self.plots))), cursors]

    def _bound_cursors(self, *_: Any) -> None:
        """The cursors are dragged between the timeline's first and last steps."""
        steps = self.timeline.steps
        xmin = float(steps[0]) if len(steps) else 0.0
        xmax = float(steps[-1]) if len(steps) else 1.0
        for c in self.cursors:
            c.setBounds((xmin, xmax))

    def _set_series(self, run: Any) -> None:
        self._series, name = panel_series(run)
        # a mini-batch loss alone is drawn faint and smoothed: the smoothed curve is not
        # a training loss measured on the training set, and is not called "train"
        self._train_name = "mini-batch, smoothed" if name in RAW_NAMES else "train"

    def clear(self) -> None:
        self._series = {}
        self._plateau = self._divergence = None
        self._redraw_curves()
        self._set_markers()

    def _redraw_curves(self) -> None:
        for k in range(len(self.plots)):
            self._redraw_plot(k)

    def _redraw_plot(self, k: int) -> None:
        """Plot ``k``'s curves from the series (smoothed where marked), or its note."""
        w = self.smoothing.value() / 100.0
        s = self._series
        for c, key, smooth in self._curves_of[k]:
            if key in s:
                x, y = s[key]
                named = {"name": self._train_name} if c is self.c_train else {}
                if named and k == 0 and c.name() != self._train_name:
                    self.legend.removeItem(c)  # listed again under its name (sync_legend)
                c.setData(x, ema(y, w) if smooth else y, **named)
                c.setVisible(True)
            else:
                c.setData([], [])
                c.setVisible(False)
        if k == 0:
            sync_legend(self.legend, [(c, key in s) for c, key, _ in self._curves_of[0]])
            if "val" in s and len(s["val"][0]) <= 60:
                self.c_val.setSymbol("o")
                self.c_val.setSymbolSize(4)
                self.c_val.setSymbolBrush(style.current().val)
                self.c_val.setSymbolPen(None)
            else:
                self.c_val.setSymbol(None)
        # a plot of nothing is one sentence: the loss plot's own, the rows below folded
        # away and named under the plots ("no gradient norm or learning rate logged")
        gone = [n for n, keys in (("gradient norm", {"grad", "update"}), ("learning rate", {"lr"}))
                if not keys & set(s)]
        self.notes[0].setText("" if {"train", "raw", "val"} & set(s) else "no loss logged")
        stack_rows(self.plots, [True, "gradient norm" not in gone, "learning rate" not in gone],
                   self._unit)
        self.absent.setText(f"no {' or '.join(gone)} logged" if gone and s else "")

    def _set_markers(self) -> None:
        for k in range(len(self.plots)):
            self._set_markers_of(k)

    def _set_markers_of(self, k: int) -> None:
        """Plot ``k``'s plateau line and wandering region, and its divergence line."""
        steps = self.timeline.steps
        end = float(steps[-1]) if len(steps) else 0.0
        plateau, divergence = self._plateau, self._divergence
        reg, pl, dl = self.regions[k], self.plateau_lines[k], self.divergence_lines[k]
        ok = plateau is not None
        pl.setVisible(ok)
        reg.setVisible(ok and end > plateau)
        if ok:
            pl.setValue(float(plateau))
            reg.setRegion((float(plateau), end))
        dl.setVisible(divergence is not None)
        if divergence is not None:
            dl.setValue(float(divergence))

    def _place_legend(self) -> None:
        """The loss plot's legend where it hides the fewest curve samples (a corner, or a
        row above the plot: :func:`legend_place.place`); while the run grows it moves only
        for a corner clearly emptier, not at every refresh."""
        curves = [(c.xData, c.yData) for c, _, _ in self._curves_of[0]
                  if c.isVisible() and c.xData is not None and len(c.xData)]
        self.legend_corner = place(
            self.p_loss, self.legend, curves, log_y=self.log_y.isChecked(),
            shown=self.legend_corner, growing=self._growing,
            x_bounds=tuple(self.p_loss.viewRange()[0]) if self._growing else None) \
            or self.legend_corner

    # -- controls -----------------------------------------------------------------
    def _apply_log(self, on: bool) -> None:
        """Log y on the loss plot; gradient norm and lr go log when they span > 30x.
        While the run grows (``self._growing``) the y ranges only move when the data
        leave them (:func:`steady_range`); the x frame never moves (:func:`set_log_y`).
        A growing run's values only add to what spanned less than 30x before, so its
        plots switch to log at most once."""
        for k in range(len(self.plots)):
            self._set_log(k, on)
        self._place_legend()

    def _set_log(self, k: int, on: bool) -> None:
        """Plot ``k``'s log mode and y range (see :meth:`_apply_log`)."""
        p = self.plots[k]
        arrays = [self._series[key][1] for _, key, _ in self._curves_of[k]
                  if key in self._series]
        if p is self.p_loss:
            self._range_y(p, arrays, bool(on), set_log_y(p, on))
            return
        log = bool(on) and spans_decades(arrays)
        fresh = set_log_y(p, log)
        if p is self.p_lr and not log and arrays:
            # a learning rate is >= 0: start the axis at 0 (a constant lr stays readable)
            top = float(np.nanmax(np.concatenate(arrays)))
            p.enableAutoRange(y=False)
            p.setYRange(0.0, top * 1.25 if top > 0 else 1.0, padding=0)
        else:
            self._range_y(p, arrays, log, fresh)

    def _range_y(self, plot, arrays: list, log: bool, fresh: bool = False) -> None:
        """Auto y range, or for a growing run :func:`steady_range` from the current one
        (none when the mode just changed: its range is in the other mode's units)."""
        if not self._growing:
            plot.enableAutoRange(y=True)
            return
        auto = plot.getViewBox().autoRangeEnabled()[1]
        new = steady_range(None if auto or fresh else plot.viewRange()[1], arrays, log)
        if new is not None:
            plot.enableAutoRange(y=False)
            plot.setYRange(*new, padding=0)

    def _on_smoothing(self, v: int) -> None:
        self.smoothing_label.setText(f"{v / 100:.2f}")
        self._redraw_curves()
        self._place_legend()

    # -- timeline -----------------------------------------------------------------
    def _on_index(self, index: int) -> None:
        steps = self.timeline.steps
        if not len(steps):
            self.readout.setText("")
            return
        step = float(steps[min(index, len(steps) - 1)])
        for c in self.cursors:
            c.setValue(step)
        parts = []
        train = "train" if self._train_name == "train" else "loss"
        for key, label in (("train", train), ("val", "val"), ("grad", "‖g‖"), ("lr", "lr")):
            if key in self._series:
                x, y = self._series[key]
                i = int(np.searchsorted(x, step, side="right")) - 1
                if i >= 0:
                    parts.append(f"{label} {fmt(float(y[i]), 3)}")
        self.readout.setText("  ·  ".join(parts))

    def _on_cursor_dragged(self, line: pg.InfiniteLine) -> None:
        steps = self.timeline.steps
        if not len(steps):
            return
        i = nearest_index(steps, float(line.value()))
        self.timeline.set_index(i)
        self.cursor_dragged.emit(i)

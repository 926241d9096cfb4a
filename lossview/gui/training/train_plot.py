"""The train dialog's live loss plot: the mini-batch loss and the whole training set's loss
at the snapshots of the run being trained, or one sentence before there is a run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg

from lossview.gui.plotkit import style
from lossview.gui.plotkit.axes import nice_axes, steady_range
from lossview.gui.plotkit.empty import empty_note
from lossview.gui.plotkit.layout import settle

#: what the plot says before the first run
NO_RUN = "The loss appears here as the run trains: press Start."


class TrainingLossPlot(pg.PlotWidget):
    """Log-y loss against step, ``loss_curve`` (mini-batch) and ``full_curve`` (whole
    training set at the snapshots)."""

    def __init__(self) -> None:
        # the app's log ticks (10⁻⁴): pyqtgraph's "0.0001" did not fit the fixed axis
        # width and was left out, a decade without a label
        super().__init__(title="Training loss", axisItems=nice_axes())
        self.setLogMode(y=True)
        self.setLabel("bottom", "step")
        self.showGrid(x=True, y=True, alpha=0.15)
        style.steady_axes(self.getPlotItem())
        self.getAxis("left").setWidth(48)
        self.addLegend(offset=(-8, 8), labelTextSize="8pt")
        self.loss_curve = self.plot(pen=pg.mkPen("#9dc3e6", width=1), connect="finite",
                                    name="mini-batch", antialias=False)
        # thousands of noisy points redrawn live: draw about what the pixels can show
        self.loss_curve.setDownsampling(auto=True, method="peak")
        self.loss_curve.setClipToView(True)
        self.full_curve = self.plot(pen=pg.mkPen("#1f6fb4", width=2), symbol="o",
                                    symbolSize=4, symbolBrush="#1f6fb4", symbolPen=None,
                                    connect="finite", name="whole training set (at snapshots)")
        self.note = empty_note(self.getPlotItem(), style.current().muted)
        self.note.setText(NO_RUN)

    def reset(self, steps: int | None) -> None:
        """A new run of ``steps`` steps (None: unknown): no curves yet, the x axis framing
        the planned run, so it is not re-rendered at every redraw."""
        self.note.setText("")
        self.loss_curve.setData([], [])
        self.full_curve.setData([], [])
        self.enableAutoRange(y=True)  # a new run: its first range from scratch
        if steps:
            self.setXRange(0, steps, padding=0.02)
        else:
            self.enableAutoRange(x=True)

    def show_run(self, run: Any) -> None:
        """Draw the training run's loss so far."""
        shown = []
        for name, curve in (("loss", self.loss_curve), ("train_loss", self.full_curve)):
            s = run.metrics.get(name)
            if s is not None:
                y = np.where(s.values > 0, s.values, np.nan)
                curve.setData(s.steps.astype(float), y)
                shown.append(y)
        # the y range moves only when the loss leaves it (each move re-rendered the axis:
        # 11 ms of a turn that also repainted the main window's loss panel)
        vb = self.getPlotItem().getViewBox()
        new = steady_range(None if vb.autoRangeEnabled()[1] else vb.viewRange()[1], shown,
                           log=True)
        if new is not None:
            vb.enableAutoRange(y=False)
            vb.setYRange(*new, padding=0)
        # ranged and laid out now, so the new curves paint once (pyqtgraph otherwise
        # found the new range while painting and painted the plot again: 2 x 20-30 ms)
        settle(self)

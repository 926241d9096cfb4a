"""Diagnostics panel: distance from init and step length, MSD against lag with the fitted
exponent, sharpness against 2/lr, the pairwise distance matrix, and the diagnosis text.

Missing measurements (report values of None) say what is missing instead of drawing.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QTextBrowser, QVBoxLayout, QWidget

from lossview.gui import style
from lossview.gui.axes import nice_axes
from lossview.gui.cursor import PixelCursor
from lossview.gui.timeline import Timeline
from lossview.gui.tooltips import tip
from lossview.gui.widgets import add_marker, as_array, cache_item, centered_note, header

SHARPNESS_MISSING = "needs the model and data:\na built-in problem's run,\nor --model FILE.py"


def msd_fit_line(lags: np.ndarray, msd: np.ndarray, exponent: float,
                 lag_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The power law ``A * lag**exponent`` over the fitted lags (A by least squares in log
    space with the slope fixed), drawn over ``lag_range`` (default: all lags)."""
    ok = np.isfinite(lags) & np.isfinite(msd) & (lags > 0) & (msd > 0)
    if lag_range is not None:
        ok &= (lags >= lag_range[0]) & (lags <= lag_range[1])
    if not ok.any():
        return np.array([]), np.array([])
    la, lm = np.log(lags[ok]), np.log(msd[ok])
    log_a = float(np.mean(lm - exponent * la))
    x = np.array([lags[ok].min(), lags[ok].max()], dtype=float)
    return x, np.exp(log_a) * x**exponent


def _no_minimum_width(label: pg.LabelItem) -> None:
    """Keep a title from sizing its column: pyqtgraph's LabelItem sets its minimum width
    to its text's at every change, so "sharpness vs 2/lr (peak 65%)" arriving with the
    sharpness widened a column, resized all four plots and re-rendered every axis (a
    35-40 ms repaint). A title longer than its column now runs past it (at the default
    window size every title fits; the screenshot in the README shows them)."""
    update_min = label.updateMin

    def height_only() -> None:
        update_min()
        label.setMinimumWidth(0)

    label.updateMin = height_only
    label.setMinimumWidth(0)


def _retitle(plot: pg.PlotItem, title: str) -> None:
    """A new title in the panel's style."""
    plot.setTitle(title, size="10pt", color=style.current().foreground)


def _wrap(text: str, width: int = 28) -> str:
    import textwrap

    if "\n" in text:
        return "\n" + text
    return "\n" + "\n".join(textwrap.wrap(text, width))


class DiagnosticsPanel(QWidget):
    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._steps = np.array([], dtype=np.int64)
        t = style.current()
        head, _ = header("Diagnostics", tip("diagnosis"))

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setContentsMargins(2, 2, 4, 2)
        self.canvas.ci.setSpacing(6)
        self.p_dist = style.style_plot(self.canvas.addPlot(row=0, col=0, axisItems=nice_axes()),
                                       title="distance travelled", bottom="step")
        self.p_msd = style.style_plot(self.canvas.addPlot(row=0, col=1, axisItems=nice_axes()),
                                      title="mean squared displacement", bottom="lag (steps)")
        self.p_sharp = style.style_plot(self.canvas.addPlot(row=0, col=2, axisItems=nice_axes()),
                                        title="sharpness vs 2/lr", bottom="step")
        self.p_pair = style.style_plot(self.canvas.addPlot(row=0, col=3, axisItems=nice_axes()),
                                       title="pairwise distance", bottom="step")
        for p in (self.p_dist, self.p_msd, self.p_sharp, self.p_pair):
            p.getAxis("left").setWidth(42)
            p.setMinimumWidth(120)
            # a title's text does not size its column: "sharpness vs 2/lr (peak 65%)"
            # arriving with the sharpness re-laid out all four plots (22 ms repaint)
            p.titleLabel.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            _no_minimum_width(p.titleLabel)  # and neither does its length
            p.getAxis("left").enableAutoSIPrefix(False)
        self.p_dist.setLogMode(False, True)
        self.p_msd.setLogMode(True, True)
        self.p_sharp.setLogMode(False, True)
        self.p_dist.setToolTip(tip("from_init"))
        self.p_msd.setToolTip(tip("msd"))
        self.p_sharp.setToolTip(tip("sharpness"))
        self.p_pair.setToolTip(tip("pairwise"))

        leg = self.p_dist.addLegend(offset=(-4, 40), labelTextSize="7pt", verSpacing=-8)
        leg.setBrush(pg.mkBrush(t.background + "c0"))
        self.c_init = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5), name="from init",
                                      connect="finite")
        self.c_step = pg.PlotDataItem(pen=pg.mkPen(t.grad, width=1), name="step length",
                                      connect="finite")
        self.p_dist.addItem(self.c_init)
        self.p_dist.addItem(self.c_step)

        self.c_msd = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5), symbol="o", symbolSize=4,
                                     symbolBrush=t.train, symbolPen=None, connect="finite")
        self.c_fit = pg.PlotDataItem(pen=pg.mkPen(t.val, width=1.5, style=Qt.PenStyle.DashLine))
        self.p_msd.addItem(self.c_msd)
        self.p_msd.addItem(self.c_fit)
        self.msd_text = pg.TextItem("", color=t.foreground, anchor=(0, 0))
        self.msd_text.setParentItem(self.p_msd.getViewBox())
        self.msd_text.setPos(4, 2)

        leg2 = self.p_sharp.addLegend(offset=(-4, -4), labelTextSize="7pt", verSpacing=-8)
        leg2.setBrush(pg.mkBrush(t.background + "c0"))
        self.c_sharp = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5), name="λ_max",
                                       symbol="o", symbolSize=4, symbolBrush=t.train,
                                       symbolPen=None, connect="finite")
        self.c_limit = pg.PlotDataItem(pen=pg.mkPen(t.divergence, width=1.5,
                                                    style=Qt.PenStyle.DashLine), name="(2+2β) / lr",
                                       connect="finite")
        self.p_sharp.addItem(self.c_sharp)
        self.p_sharp.addItem(self.c_limit)

        for c in (self.c_init, self.c_step, self.c_msd, self.c_fit, self.c_sharp, self.c_limit):
            cache_item(c)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("magma"))
        self.p_pair.addItem(self.image)
        self.p_pair.setAspectLocked(True)
        self.p_pair.invertY(True)

        self.notes = {}
        for key, p in (("dist", self.p_dist), ("msd", self.p_msd), ("sharp", self.p_sharp),
                       ("pair", self.p_pair)):
            self.notes[key] = (p, centered_note(p.getViewBox(), t.muted))

        self.cursors = []
        for p in (self.p_dist, self.p_sharp, self.p_pair):
            c = PixelCursor(angle=90, movable=False, pen=pg.mkPen(t.cursor, width=1.2))
            add_marker(p, c)
            self.cursors.append(c)
        self.pair_hline = PixelCursor(angle=0, movable=False, pen=pg.mkPen(t.cursor, width=1.2))
        add_marker(self.p_pair, self.pair_hline)

        self.diagnosis = QTextBrowser()
        self.diagnosis.setOpenExternalLinks(True)
        self.diagnosis.setToolTip(tip("diagnosis"))
        self.diagnosis.setMinimumWidth(220)
        self.diagnosis.setFrameShape(QTextBrowser.Shape.NoFrame)

        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.canvas, 3)
        body.addWidget(self.diagnosis, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(head)
        lay.addLayout(body, 1)
        timeline.index_changed.connect(self._on_index)
        self.clear()

    # -- data ---------------------------------------------------------------------
    def clear(self) -> None:
        self._steps = np.array([], dtype=np.int64)
        for c in (self.c_init, self.c_step, self.c_msd, self.c_fit, self.c_sharp, self.c_limit):
            c.setData([], [])
        self.image.clear()
        self.msd_text.setText("")
        for key in self.notes:
            self._note(key, "")
        self.set_diagnosis(None)

    def _note(self, key: str, text: str) -> None:
        self.notes[key][1].setText(text)

    def set_run(self, run: Any, report: dict[str, Any] | None) -> None:
        for part in self.run_parts(run, report):
            part()

    def run_parts(self, run: Any, report: dict[str, Any] | None) -> list[Callable[[], None]]:
        """:meth:`set_run` as five calls: one per plot, then the diagnosis text and the
        cursors. A caller that runs them one per event-loop turn (live training) keeps
        every plot on screen, each showing its old data until its turn: veiling the plots
        to reveal them one by one blanked them every time the live analysis came back."""
        rep = report or {}

        def distance() -> None:
            self._steps = np.asarray(run.steps, dtype=np.int64)
            steps = self._steps.astype(float)
            d = rep.get("distance") or {}
            fi, sl = as_array(d.get("from_init")), as_array(d.get("step_length"))
            if len(fi) == len(steps) and len(steps) > 1:
                # log axis: the 0 at init (and the step length at i = 0) are left out
                self.c_init.setData(steps[1:], fi[1:])
                self.c_step.setData(steps[1:], sl[1:])
                self._note("dist", "")
            else:
                self.c_init.setData([], [])
                self.c_step.setData([], [])
                self._note("dist", "not available: fewer than 2 snapshots")
            self.p_dist.enableAutoRange()

        def msd() -> None:
            self._set_msd(rep.get("diffusion"))
            self.p_msd.enableAutoRange()

        def sharpness() -> None:
            self._set_sharpness(run, rep.get("sharpness"), rep.get("sharpness_reason"))
            self.p_sharp.enableAutoRange()

        def pairwise() -> None:
            self._set_pairwise(rep.get("pairwise"))
            self.p_pair.enableAutoRange()

        def text_and_cursors() -> None:
            self.set_diagnosis(rep)
            self._on_index(self.timeline.index)

        return [distance, msd, sharpness, pairwise, text_and_cursors]

    def _set_msd(self, diff: dict[str, Any] | None) -> None:
        diff = diff or {}
        lags, msd = as_array(diff.get("lags")), as_array(diff.get("msd"))
        exponent = diff.get("exponent")
        if not len(lags) or len(lags) != len(msd):
            self.c_msd.setData([], [])
            self.c_fit.setData([], [])
            self.msd_text.setText("")
            self._note("msd", "not available: " + _wrap(diff.get("reason") or "no diffusion fit"))
            return
        ok = (lags > 0) & (msd > 0)
        self.c_msd.setData(lags[ok], msd[ok])
        self._note("msd", "")
        start = diff.get("segment_start_step")
        _retitle(self.p_msd, "mean sq. displacement"
                 + (f" (from step {start:,})" if start else ""))
        if exponent is not None and np.isfinite(exponent):
            rng = diff.get("fit_lag_range")
            fx, fy = msd_fit_line(lags, msd, float(exponent), tuple(rng) if rng else None)
            self.c_fit.setData(fx, fy)
            # plain words, short enough for the plot's width (the panel's diagnosis and
            # the tooltip say sub- and super-diffusive)
            kind = ("random walk" if 0.85 <= exponent <= 1.15 else
                    "confined" if exponent < 0.85 else "drifting")
            self.msd_text.setText(f"slope c = {exponent:.2f}  ({kind})")
        else:
            self.c_fit.setData([], [])
            self.msd_text.setText("exponent: not available")

    def set_sharpness(self, run: Any, sharp: Any, reason: str | None = None) -> None:
        """Sharpness table (``steps``, ``sharpness`` or ``values``, optional ``threshold``
        or ``lr``, ``verdict``) or None with the reason it is missing."""
        self._set_sharpness(run, sharp, reason)
        self.p_sharp.enableAutoRange()

    def _set_sharpness(self, run: Any, sharp: Any, reason: str | None) -> None:
        vals = None
        if isinstance(sharp, dict):
            vals = sharp.get("sharpness", sharp.get("values"))
        if not vals:
            self.c_sharp.setData([], [])
            self.c_limit.setData([], [])
            why = reason or (sharp.get("reason") if isinstance(sharp, dict) else None)
            if run.spec.get("live") and not why:  # measured on the saved run
                self._note("sharp", "measured once\ntraining has finished")
            else:
                self._note("sharp", "not available: " + _wrap(why or SHARPNESS_MISSING))
            return
        xs = as_array(sharp.get("steps"))
        self.c_sharp.setData(xs, as_array(vals))
        note = ""
        if sharp.get("threshold") is not None and any(v is not None for v in sharp["threshold"]):
            self.c_limit.setData(xs, as_array(sharp["threshold"]))
        elif sharp.get("lr") is not None:
            lrs = as_array(sharp.get("lr"))
            self.c_limit.setData(xs, 2.0 / np.where(lrs > 0, lrs, np.nan))
        else:
            lr = run.metric("lr", "learning_rate")
            if lr is not None:
                self.c_limit.setData(lr.steps.astype(float),
                                     2.0 / np.where(lr.values > 0, lr.values, np.nan))
            else:
                self.c_limit.setData([], [])
                note = "2/lr: no learning rate logged"
        self._note("sharp", note)
        verdict = sharp.get("verdict") or ""
        ratios = [r for r in (sharp.get("ratio") or []) if r is not None]
        title = "sharpness vs 2/lr"
        if ratios:
            title += f" (peak {100 * max(ratios):.0f}%)"
        _retitle(self.p_sharp, title)
        self.p_sharp.setToolTip(tip("sharpness") + (f"\n{verdict}" if verdict else ""))

    def _set_pairwise(self, pair: Any) -> None:
        if not pair or not isinstance(pair, dict) or pair.get("matrix") is None:
            self.image.clear()
            reason = pair.get("reason") if isinstance(pair, dict) else None
            self._note("pair", "not available: " + _wrap(reason or "not computed"))
            self._pair_rows = np.array([], dtype=np.int64)
            return
        m = np.asarray(pair["matrix"], dtype=float)
        rows = np.asarray(pair.get("indices", np.arange(len(m))), dtype=np.int64)
        self._pair_rows = rows
        steps = self._steps[np.clip(rows, 0, len(self._steps) - 1)].astype(float)
        lo, hi = float(steps[0]), float(steps[-1])
        span = hi - lo if hi > lo else 1.0
        finite = m[np.isfinite(m)]
        levels = (0.0, float(np.percentile(finite, 99)) if finite.size else 1.0)
        self.image.setImage(np.nan_to_num(m, nan=levels[1]), levels=levels)
        # pixel k covers steps lo + k * span / (n - 1), centred on the snapshot
        n = max(len(m) - 1, 1)
        px = span / n
        self.image.setRect(lo - px / 2, lo - px / 2, span + px, span + px)
        self._note("pair", "")

    def set_diagnosis(self, report: dict[str, Any] | None) -> None:
        t = style.current()
        if not report:
            self.diagnosis.setHtml(f"<p style='color:{t.muted}'>Open a run to see its diagnosis.</p>")
            return
        items = report.get("diagnosis") or []
        lines = [f"<p style='margin:0 0 4px 0'><b>Diagnosis</b> "
                 f"<span style='color:{t.muted}'>· {html.escape(str(report.get('name', '')))}"
                 "</span></p>"]
        if not items:
            lines.append(f"<p style='color:{t.muted}'>No findings available yet.</p>")
        else:
            lines.append("<ul style='margin-left:-18px'>")
            lines += [f"<li style='margin-bottom:4px'>{html.escape(str(s))}</li>" for s in items]
            lines.append("</ul>")
        self.diagnosis.setHtml("".join(lines))

    # -- timeline -----------------------------------------------------------------
    def _on_index(self, index: int) -> None:
        if not len(self._steps):
            return
        step = float(self._steps[min(index, len(self._steps) - 1)])
        for c in self.cursors:
            c.setValue(step)
        self.pair_hline.setValue(step)

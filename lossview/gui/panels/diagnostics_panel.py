"""Diagnostics panel: distance from init and step length (with the distance to the last
snapshot raw and modulo neuron permutations), MSD against lag, sharpness against its
stability limit, the pairwise distance matrix, and the diagnosis text.

Every word that judges the run is core's (:mod:`lossview.gui.panels.words` shows the answers of
:mod:`lossview.core.analysis.answers`): the MSD plot's tag is the weights verdict with the
number that decided it, the sharpness plot's is the stability verdict, and the limit line
is drawn only where core compared the learning rate with it. Missing measurements
(report values of None) say what is missing instead of drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QTextBrowser, QVBoxLayout, QWidget

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.explanations import tip
from lossview.core.analysis.report_model import Answer, Diffusion, Pairwise, RunReport, Sharpness
from lossview.gui.panels import words
from lossview.gui.panels.diagnostics_plots import (
    corner_text,
    diagnosis_html,
    distance_note,
    drawable,
    headroom,
    legend_entry,
    limit_line,
    long_lags,
    msd_fit_line,
    retitle,
    small_legend,
)
from lossview.gui.plotkit import style
from lossview.gui.plotkit.axes import nice_axes
from lossview.gui.plotkit.cursor import PixelCursor
from lossview.gui.plotkit.empty import empty_note
from lossview.gui.plotkit.legend_place import keep_clear
from lossview.gui.plotkit.widgets import add_marker, as_array, cache_item, header
from lossview.gui.timeline import Timeline

SHARPNESS_MISSING = "needs the model and data: File > Attach model file… (or --model FILE.py)"
#: a plot title's widest claim on its column (pixels): a longer title runs past its box
TITLE_MAX_PX = 100


class DiagnosticsPanel(QWidget):
    def __init__(self, timeline: Timeline, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline
        self._unit = "step"  # what the x axes count (the run's step_unit)
        t = style.current()
        head, _ = header("Diagnostics", tip("diagnosis"))

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.ci.setContentsMargins(2, 2, 4, 2)
        self.canvas.ci.setSpacing(6)
        self.p_dist = style.style_plot(self.canvas.addPlot(row=0, col=0, axisItems=nice_axes()),
                                       title="distance travelled", bottom="step")
        self.p_expl = style.style_plot(self.canvas.addPlot(row=0, col=1, axisItems=nice_axes()),
                                       title="distance to last", bottom="step")
        self.p_msd = style.style_plot(self.canvas.addPlot(row=0, col=2, axisItems=nice_axes()),
                                      title="mean sq. displacement", bottom="lag (steps)")
        self.p_sharp = style.style_plot(self.canvas.addPlot(row=0, col=3, axisItems=nice_axes()),
                                        title="sharpness vs 2/lr", bottom="step")
        self.p_pair = style.style_plot(self.canvas.addPlot(row=0, col=4, axisItems=nice_axes()),
                                       title="pairwise distance", bottom="step")
        self.plots = (self.p_dist, self.p_expl, self.p_msd, self.p_sharp, self.p_pair)
        for p in self.plots:
            p.getAxis("left").setWidth(42)
            p.setMinimumWidth(120)
            # a title's text does not size its column: "sharpness vs 2/lr (peak 65%)"
            # arriving with the sharpness re-laid out all four plots (22 ms repaint)
            p.titleLabel.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            p.titleLabel.setMaximumWidth(TITLE_MAX_PX)  # and neither does its length
            p.getAxis("left").enableAutoSIPrefix(False)
        self.p_dist.setLogMode(False, True)
        self.p_expl.setLogMode(False, True)
        self.p_msd.setLogMode(True, True)
        self.p_sharp.setLogMode(False, True)
        self.p_dist.setToolTip(tip("from_init"))
        self.p_expl.setToolTip(tip("permutation"))
        self.p_msd.setToolTip(tip("msd"))
        self.p_sharp.setToolTip(tip("sharpness"))
        self.p_pair.setToolTip(tip("pairwise"))

        small_legend(self.p_dist, (-4, 40))
        self.c_init = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5), name="from init",
                                      connect="finite")
        self.c_step = pg.PlotDataItem(pen=pg.mkPen(t.grad, width=1), name="step length",
                                      connect="finite")
        self.p_dist.addItem(self.c_init)
        self.p_dist.addItem(self.c_step)
        keep_clear(self.p_dist, self.p_dist.legend, (self.c_init, self.c_step), log_y=True)

        # exploration over the weights question's segment (answers.exploration); the
        # legend in the headroom above the curves (diagnostics_plots.headroom)
        self.expl_legend = small_legend(self.p_expl, (-4, 2))
        # raw drawn wide under the aligned curve: where no relabelling is found they coincide
        wide = pg.mkPen(style.opaque(t.val, 0.6, t.background), width=4)
        self.c_raw_last = pg.PlotDataItem(pen=wide, name="raw", connect="finite")
        self.c_aligned_last = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5),
                                              name="modulo permutation", connect="finite")
        dashed = pg.mkPen(t.muted, width=1.2, style=Qt.PenStyle.DashLine)
        self.c_relabel = pg.PlotDataItem(pen=dashed, name="relabelled copies")
        for c in (self.c_raw_last, self.c_aligned_last, self.c_relabel):
            self.p_expl.addItem(c)

        self.c_msd = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5), symbol="o", symbolSize=4,
                                     symbolBrush=t.train, symbolPen=None, connect="finite")
        self.c_fit = pg.PlotDataItem(pen=pg.mkPen(t.val, width=1.5, style=Qt.PenStyle.DashLine))
        self.p_msd.addItem(self.c_msd)
        self.p_msd.addItem(self.c_fit)
        self.msd_text = corner_text(self.p_msd, t.foreground)  # the weights verdict
        self.msd_text.setToolTip(tip("msd"))

        self.sharp_legend = small_legend(self.p_sharp, (-4, 2))
        # the title names the curve (sharpness); the legend the limit, where it is drawn
        self.c_sharp = pg.PlotDataItem(pen=pg.mkPen(t.train, width=1.5),
                                       symbol="o", symbolSize=4, symbolBrush=t.train,
                                       symbolPen=None, connect="finite")
        self.c_limit = pg.PlotDataItem(pen=pg.mkPen(t.divergence, width=1.5,
                                                    style=Qt.PenStyle.DashLine), connect="finite")
        self.limit_text = corner_text(self.p_sharp, t.muted)  # why no limit, if so
        self.p_sharp.addItem(self.c_sharp)
        self.p_sharp.addItem(self.c_limit)

        self.items = (self.c_init, self.c_step, self.c_raw_last, self.c_aligned_last,
                      self.c_relabel, self.c_msd, self.c_fit, self.c_sharp, self.c_limit)
        for c in self.items:
            cache_item(c)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setColorMap(pg.colormap.get("magma"))
        self.p_pair.addItem(self.image)
        self.p_pair.setAspectLocked(True)
        self.p_pair.invertY(True)

        self.notes = {}
        for key, p in (("dist", self.p_dist), ("expl", self.p_expl), ("msd", self.p_msd),
                       ("sharp", self.p_sharp), ("pair", self.p_pair)):
            self.notes[key] = (p, empty_note(p, t.muted))

        self.cursors = []
        for p in (self.p_dist, self.p_expl, self.p_sharp, self.p_pair):
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
        for c in self.items:
            c.setData([], [])
        self._set_exploration({})
        self.image.clear()
        self.msd_text.setText("")
        for key in self.notes:
            self._note(key, "")
        self.set_diagnosis(None)

    def _note(self, key: str, text: str) -> None:
        self.notes[key][1].setText(text)

    def set_run(self, run: Any, report: RunReport | None) -> None:
        for part in self.run_parts(run, report):
            part()

    def run_parts(self, run: Any, report: RunReport | None) -> list[Callable[[], None]]:
        """:meth:`set_run` as five calls: one per plot, then the diagnosis text and the
        cursors. A caller that runs them one per event-loop turn (live training) keeps
        every plot on screen, each showing its old data until its turn: veiling the plots
        to reveal them one by one blanked them every time the live analysis came back.
        The plots draw the report's snapshots (a live run's report: those analysed so
        far); the cursors are at the timeline's step."""
        rep = words.report_of(report)
        answers = rep.answers
        unit = words.step_unit(run, rep)
        steps = as_array(rep.steps)  # the analysed snapshots' steps

        def distance() -> None:
            self._set_unit(unit)
            d = rep.distance
            fi, sl = as_array(d.from_init), as_array(d.step_length)
            if len(fi) == len(steps) and drawable(fi[1:]):
                # log axis: the 0 at init (and the step length at i = 0) are left out
                self.c_init.setData(steps[1:], fi[1:])
                self.c_step.setData(steps[1:], sl[1:])
                self._note("dist", "")
            else:
                self.c_init.setData([], [])
                self.c_step.setData([], [])
                self._note("dist", f"not available: {d.reason}" if d.from_init is None
                           and d.reason else distance_note(steps, fi))
            self.p_dist.enableAutoRange()
            self._set_exploration(answers.exploration, rep.permutation)

        def msd() -> None:
            self._set_msd(rep.diffusion, answers.weights, unit)
            self.p_msd.enableAutoRange()

        def sharpness() -> None:
            self._set_sharpness(run, rep.sharpness, rep.sharpness_reason, answers.stability)

        def pairwise() -> None:
            self._set_pairwise(rep.pairwise, steps)
            self.p_pair.enableAutoRange()

        def text_and_cursors() -> None:
            self.set_diagnosis(rep)
            self._on_index(self.timeline.index)

        return [distance, msd, sharpness, pairwise, text_and_cursors]

    def show_answers(self, run: Any, report: RunReport) -> None:
        """A new report with core's answers recomputed (:meth:`RunReport.with_sharpness`,
        after the sharpness was measured): the sharpness plot, the verdict tags and the
        diagnosis again."""
        report = words.report_of(report)
        answers = report.answers
        self._set_msd(report.diffusion, answers.weights, words.step_unit(run, report))
        self._set_exploration(answers.exploration, report.permutation)
        self.set_sharpness(run, report.sharpness, report.sharpness_reason, answers.stability)
        self.set_diagnosis(report)

    def _set_unit(self, unit: str) -> None:
        """The x axes count steps or epochs, as the run's positions do."""
        if unit == self._unit:
            return
        self._unit = unit
        fg = style.current().foreground
        for p in (self.p_dist, self.p_expl, self.p_sharp, self.p_pair):
            p.setLabel("bottom", unit, color=fg)
        self.p_msd.setLabel("bottom", f"lag ({V.unit_word(unit, 2)})", color=fg)

    def _set_exploration(self, expl: Answer, permutation: Any = None) -> None:
        """Distance of each snapshot of the segment to the last one, raw and modulo neuron
        permutations, against the distance between relabelled copies of the last network
        (``answers.exploration``): the gap between the curves is relabelling (else why not,
        from the answer or the report's ``permutation`` part: a preview's "being computed")."""
        steps = as_array(expl.get("steps"))
        raw, aligned = as_array(expl.get("raw_to_last")), as_array(expl.get("aligned_to_last"))
        scale = expl.get("relabel_scale")
        if len(raw) == len(steps) == len(aligned) and drawable(raw, aligned):
            # log axis: the last snapshot's 0 (to itself) is left out
            self.c_raw_last.setData(steps, np.where(raw > 0, raw, np.nan))
            self.c_aligned_last.setData(steps, np.where(aligned > 0, aligned, np.nan))
            ends = ([steps[0], steps[-1]], [scale, scale]) if scale else ([], [])
            self.c_relabel.setData(*ends)
            self._note("expl", "")
            self.p_expl.enableAutoRange(x=True)
            self.p_expl.setYRange(*headroom([raw, aligned, [scale or np.nan]]), padding=0)
        else:
            for c in (self.c_raw_last, self.c_aligned_last, self.c_relabel):
                c.setData([], [])
            why = (expl.get("reason") or (permutation or {}).get("reason")
                   or ("the run diverged" if expl else "no answer"))
            # the plot has room for the reason's first clause; the diagnosis has it whole
            self._note("expl", "not measured: " + (why.split(" (", 1)[0]))
            self.p_expl.enableAutoRange()

    def _set_msd(self, diff: Diffusion | None, weights: Answer, unit: str) -> None:
        """The MSD against lag, the weights verdict's tag with the number that decided it,
        and (dashed) a power law with core's long-lag slope over the long lags."""
        diff = diff or {}
        lags, msd = as_array(diff.get("lags")), as_array(diff.get("msd"))
        if not len(lags) or len(lags) != len(msd):
            self.c_msd.setData([], [])
            self.c_fit.setData([], [])
            self.msd_text.setText("")
            self._note("msd", "not available: " + (diff.get("reason") or "no diffusion fit"))
            return
        ok = (lags > 0) & (msd > 0)
        self.c_msd.setData(lags[ok], msd[ok])
        self._note("msd", "")
        start = diff.get("segment_start_step")
        retitle(self.p_msd, "MSD"
                 + (f" (from {V.unit_word(unit)} {start:,})" if start else ""))
        slope = weights.get("msd_long_lag_slope")
        if slope is not None:
            self.c_fit.setData(*msd_fit_line(lags, msd, float(slope), long_lags(lags, weights)))
        else:
            self.c_fit.setData([], [])
        fg = style.current().foreground
        if weights.get("verdict"):
            number = words.weights_number(weights)
            text = words.verdict_html(weights["verdict"]) + (f"<br>{number}" if number else "")
        else:
            text = "weights verdict: not available"
        self.msd_text.setHtml(f"<span style='color:{fg}; font-size:8pt'>{text}</span>")

    def set_sharpness(self, run: Any, sharp: Any, reason: str | None = None,
                      stability: Answer | None = None) -> None:
        """Sharpness table (``steps``, ``sharpness`` or ``values``, ``lr``) with core's
        stability answer for it, or None with the reason it is missing."""
        self._set_sharpness(run, sharp, reason, stability or {})

    def _set_sharpness(self, run: Any, sharp: Any, reason: str | None,
                       stability: Answer) -> None:
        sharp = Sharpness.from_json(sharp) if isinstance(sharp, Mapping) else Sharpness()
        vals = sharp.eigenvalues
        if vals is None or not len(vals):
            self.c_sharp.setData([], [])
            self.c_limit.setData([], [])
            retitle(self.p_sharp, "sharpness vs 2/lr")
            self.limit_text.setText("")
            legend_entry(self.sharp_legend, self.c_limit, None)
            self.p_sharp.enableAutoRange()
            why = reason or sharp.reason
            if run.live and not why:  # measured on the saved run
                self._note("sharp", "measured once training has finished")
            else:
                self._note("sharp", "not available: " + (why or SHARPNESS_MISSING))
            return
        xs, ys = as_array(sharp.steps), as_array(vals)
        self.c_sharp.setData(xs, ys)
        lx, ly = limit_line(run, sharp, stability)
        self.c_limit.setData(lx, ly)
        legend_entry(self.sharp_legend, self.c_limit,
                      words.limit_label(stability) if words.limit_applies(stability) else None)
        self.p_sharp.enableAutoRange(x=True)  # y: the legend's line above the curves
        # the plot's top for the legend, or the note on why no limit (it covered the curve)
        note = words.limit_note(stability)
        self.p_sharp.setYRange(*headroom([ys, ly], share=0.5 if note else 0.22), padding=0)
        self.limit_text.setText(note)
        self._note("sharp", "")
        retitle(self.p_sharp, "sharpness · " + words.verdict_html(stability.get("verdict")))
        sentence = stability.get("sentence")
        self.p_sharp.setToolTip(tip("sharpness") + (f"\n\n{sentence}" if sentence else ""))

    def _set_pairwise(self, pair: Pairwise | None, snapshot_steps: np.ndarray) -> None:
        """The distance matrix of the report's snapshots (``snapshot_steps``: their steps)."""
        pair = Pairwise.from_json(pair) if isinstance(pair, Mapping) else Pairwise()
        if pair.matrix is None:
            self.image.clear()
            reason = pair.reason
            self._note("pair", "not available: " + (reason or "not computed"))
            self._pair_rows = np.array([], dtype=np.int64)
            return
        m = np.asarray(pair.matrix, dtype=float)
        rows = np.asarray(pair.indices if pair.indices is not None else np.arange(len(m)),
                          dtype=np.int64)
        self._pair_rows = rows
        if len(snapshot_steps):
            steps = snapshot_steps[np.clip(rows, 0, len(snapshot_steps) - 1)].astype(float)
        else:
            steps = rows.astype(float)
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

    def set_diagnosis(self, report: RunReport | None) -> None:
        self.diagnosis.setHtml(diagnosis_html(words.report_of(report)))

    # -- timeline -----------------------------------------------------------------
    def _on_index(self, index: int) -> None:
        step = self.timeline.step
        if step is None:
            return
        for c in self.cursors:
            c.setValue(float(step))
        self.pair_hline.setValue(float(step))

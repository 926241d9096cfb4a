"""Pieces of the diagnostics panel's plots: the fitted MSD power law, the stability limit
line, titles that do not size their column, legend entries that come and go.

The limit line and the MSD slope are core's (:mod:`lossview.core.analysis.answers`); these
functions only draw them.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pyqtgraph as pg

from lossview.core.analysis import verdicts as V
from lossview.core.analysis.metric_names import LR
from lossview.gui.panels import words
from lossview.gui.plotkit import style
from lossview.gui.plotkit.widgets import as_array


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


def retitle(plot: pg.PlotItem, title: str) -> None:
    """A new title in the panel's style, which does not size its column: pyqtgraph's
    LabelItem sets its minimum width to its text's at every change, so "sharpness vs 2/lr
    (peak 65%)" arriving with the sharpness widened a column, resized all four plots and
    re-rendered every axis (a 35-40 ms repaint). A title longer than its column runs past
    it (at the default window size every title fits)."""
    plot.setTitle(title, size="10pt", color=style.current().foreground)


def long_lags(lags: np.ndarray, weights: dict[str, Any]) -> tuple[float, float] | None:
    """The long lags core fitted its slope on (span/20 .. span/3 of the weights answer's
    segment), None (all lags) where fewer than two lags lie there."""
    seg = weights.get("segment")
    if seg is None or len(seg) < 2:
        return None
    span = float(seg[1] - seg[0])
    rng = (span / V.LONG_LAG_FROM, span / V.LONG_LAG_TO)
    return rng if np.sum((lags >= rng[0]) & (lags <= rng[1])) >= 2 else None


def limit_line(run: Any, sharp: dict, stability: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The stability limit in sharpness units, ``(2 + 2 beta) / lr``, where core compared
    the learning rate with it: over the logged learning rate (a schedule shows), else at
    the measured snapshots. Empty where the limit does not apply (adaptive optimizers)."""
    if not words.limit_applies(stability):
        return np.array([]), np.array([])
    per_lr = V.stability_ratio(1.0, 1.0, float(stability.get("momentum") or 0.0))
    logged = run.metric(*LR) if hasattr(run, "metric") else None
    if logged is not None and len(logged):
        x, lr = logged.steps.astype(float), np.asarray(logged.values, dtype=float)
    else:
        x, lr = as_array(sharp.get("steps")), as_array(sharp.get("lr"))
        if len(lr) != len(x):
            lr = np.full(len(x), float(stability.get("lr") or np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        return x, np.where(lr > 0, 1.0 / (per_lr * lr), np.nan)


def legend_entry(legend: pg.LegendItem, item: pg.PlotDataItem, name: str | None) -> None:
    """``item`` in ``legend`` as the plain text ``name`` (a legend label is HTML: "lr < 2"
    lost everything after its "<"); out of the legend for None."""
    label = legend.getLabel(item)
    if name is None:
        if label is not None:
            legend.removeItem(item)
        return
    name = html.escape(name)
    if label is None:
        legend.addItem(item, name)
    elif label.text != name:
        label.setText(name)


def fit_text_to_view(item: pg.TextItem, plot: pg.PlotItem, margin: float = 8.0) -> None:
    """Wrap ``item`` (a text in ``plot``'s view) to the view's width, now and on resize:
    a verdict tag such as "diffusing (random walk)" is wider than a narrow plot."""
    vb = plot.getViewBox()

    def fit() -> None:
        item.setTextWidth(max(vb.width() - margin, 40.0))

    vb.sigResized.connect(fit)
    fit()


def headroom(arrays: list, share: float = 0.35) -> tuple[float, float]:
    """A log-y range (log10 units) holding every positive value of ``arrays`` in its lower
    ``1 - share``: the top ``share`` is left for the plot's legend, which then covers no
    curve (in a plot ~150 px wide a legend spans most of its width)."""
    v = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays])
    v = np.log10(v[np.isfinite(v) & (v > 0)]) if len(v) else v
    if not len(v):
        return 0.0, 1.0
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, 0.2)
    lo -= 0.05 * span
    return lo, lo + (hi - lo + 0.05 * span) / (1.0 - share)


def drawable(*arrays) -> bool:
    """Some of ``arrays`` has two positive finite values: a curve a log axis can draw
    (a diverged run's distances are one point, then NaN)."""
    return any(np.count_nonzero(np.isfinite(a) & (np.asarray(a) > 0)) >= 2 for a in arrays)


def corner_text(plot: pg.PlotItem, color: str) -> pg.TextItem:
    """A text at the top left of ``plot``'s view, wrapped to its width (a verdict tag)."""
    item = pg.TextItem("", color=color, anchor=(0, 0))
    item.setParentItem(plot.getViewBox())
    item.setPos(4, 2)
    fit_text_to_view(item, plot)
    return item


def small_legend(plot: pg.PlotItem, offset: tuple[float, float]) -> pg.LegendItem:
    """A 7-pt legend on a translucent background."""
    legend = plot.addLegend(offset=offset, labelTextSize="7pt", verSpacing=-8)
    legend.setBrush(pg.mkBrush(style.current().background + "c0"))
    return legend


def diagnosis_html(report) -> str:
    """The diagnosis column: the run's name, then core's answers as a list, each with its
    verdict word bold in its colour (a RunReport, or None before a run)."""
    t = style.current()
    if not report:
        return f"<p style='color:{t.muted}'>Open a run to see its diagnosis.</p>"
    lines = [f"<p style='margin:0 0 4px 0'><b>Diagnosis</b> "
             f"<span style='color:{t.muted}'>· {html.escape(report.name or '')}</span></p>"]
    if not report.diagnosis:
        lines.append(f"<p style='color:{t.muted}'>No findings available yet.</p>")
    else:
        lines.append("<ul style='margin-left:-18px'>")
        lines += [f"<li style='margin-bottom:4px'>{s}</li>" for s in words.diagnosis_items(report)]
        lines.append("</ul>")
    return "".join(lines)


def distance_note(steps: np.ndarray, from_init: np.ndarray) -> str:
    """Why the distance plot has no curve: a log axis needs two positive distances, i.e.
    two snapshots with finite weights after the first; a diverged run may have one."""
    ok = np.flatnonzero(np.isfinite(from_init[1:]) & (from_init[1:] > 0)) + 1
    if len(ok) == 1 and len(steps) == len(from_init):
        i = int(ok[0])
        return (f"one snapshot with finite weights after the first: {from_init[i]:.3g} "
                f"from init at step {int(steps[i]):,}; no curve to draw")
    return "not available: fewer than 2 snapshots with finite weights after the first"

"""Where a plot's legend hides the least of its curves (matplotlib's ``loc="best"``).

A fixed corner always covers some run's data: the bottom-left one sat on the loss right
after its first drop, and a diverging run's loss climbs into the top-right one. The plot
is sampled along x for every curve (so a sparse validation curve counts as much as a
dense one), in the axes' own scale (log y in decades), and the corner whose legend-sized
box holds the fewest samples wins.
"""

from __future__ import annotations

import numpy as np

#: the corners, in the order ties are broken: a decreasing loss leaves the top right empty
CORNERS = ("top-right", "bottom-left", "bottom-right", "top-left")

#: samples taken along x for each curve
SAMPLES = 400


def samples(curves: list[tuple[np.ndarray, np.ndarray]], log_y: bool,
            x_bounds: tuple[float, float] | None = None) -> np.ndarray:
    """(n, 2) points of every curve in the unit square of their joint data bounds (x
    linear, y linear or log10); non-finite values, and values <= 0 on a log axis, dropped.
    ``x_bounds`` replaces the data's x bounds (a growing run's fixed frame)."""
    xs, ys = [], []
    for x, y in curves:
        x, y = np.asarray(x, float), np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y) & ((y > 0) if log_y else True)
        x, y = x[ok], y[ok]
        if len(x) < 1:
            continue
        y = np.log10(y) if log_y else y
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        grid = np.linspace(x[0], x[-1], SAMPLES) if len(x) > 1 else x
        xs.append(grid)
        ys.append(np.interp(grid, x, y))
        # the curve's own extremes too (interpolation on a grid can step over a spike)
        xs.append(x[[np.argmin(y), np.argmax(y)]])
        ys.append(y[[np.argmin(y), np.argmax(y)]])
    if not xs:
        return np.zeros((0, 2))
    x, y = np.concatenate(xs), np.concatenate(ys)

    def unit(v: np.ndarray, bounds=None) -> np.ndarray:
        lo, hi = bounds if bounds is not None else (v.min(), v.max())
        return (v - lo) / (hi - lo) if hi > lo else np.full_like(v, 0.5)

    return np.column_stack([unit(x, x_bounds), unit(y)])


def covered(points: np.ndarray, corner: str, box: tuple[float, float]) -> int:
    """How many unit-square ``points`` a ``box`` (width, height, as fractions of the plot)
    in ``corner`` covers."""
    w, h = box
    x, y = points[:, 0], points[:, 1]
    in_x = x >= 1 - w if corner.endswith("right") else x <= w
    in_y = y >= 1 - h if corner.startswith("top") else y <= h
    return int(np.count_nonzero(in_x & in_y))


def best_corner(curves: list[tuple[np.ndarray, np.ndarray]], box: tuple[float, float],
                log_y: bool = False, current: str | None = None,
                stickiness: float = 0.5, x_bounds: tuple[float, float] | None = None) -> str:
    """The corner whose ``box`` covers the fewest curve samples (ties: :data:`CORNERS`'
    order). With ``current`` (a legend already placed, data still growing) the legend
    only moves when the best corner covers less than ``stickiness`` times what the
    current one does, so it does not hop between near-equal corners. ``x_bounds``: see
    :func:`samples`."""
    pts = samples(curves, log_y, x_bounds)
    counts = {c: covered(pts, c, box) for c in CORNERS}
    best = min(CORNERS, key=lambda c: (counts[c], CORNERS.index(c)))
    if current in counts and counts[best] >= stickiness * counts[current]:
        return current
    return best


def anchor_args(corner: str, margin: float = 8.0) -> dict:
    """``LegendItem.anchor`` keywords putting a legend ``margin`` pixels inside ``corner``."""
    right, top = corner.endswith("right"), corner.startswith("top")
    pos = (1 if right else 0, 0 if top else 1)
    return {"itemPos": pos, "parentPos": pos,
            "offset": (-margin if right else margin, margin if top else -margin)}


def keep_clear(plot, legend, items, log_y: bool = False, margin: float = 4.0) -> None:
    """Keep ``legend`` in the corner of ``plot`` that hides the fewest samples of the
    curves ``items`` (PlotDataItems): placed again whenever their data or the plot's size
    change. A fixed corner hid the start of a rising curve in a narrow plot."""
    vb = plot.getViewBox()

    def place(*_) -> None:
        curves = [(c.xData, c.yData) for c in items
                  if c.isVisible() and c.xData is not None and len(c.xData)]
        if not curves or vb.width() < 50 or vb.height() < 50:
            return
        r = legend.boundingRect()
        box = ((r.width() + 2 * margin) / vb.width(), (r.height() + 2 * margin) / vb.height())
        legend.anchor(**anchor_args(best_corner(curves, box, log_y=log_y), margin))

    vb.sigResized.connect(place)
    for c in items:
        c.sigPlotChanged.connect(place)


#: a legend goes above its plot when its best corner would hide more than this share of
#: the curves' samples (a noisy mini-batch loss fills every corner)
ABOVE_SHARE = 0.0


def place(plot, legend, curves: list, log_y: bool = False, shown: str | None = None,
          growing: bool = False, x_bounds: tuple[float, float] | None = None) -> str | None:
    """Anchor ``legend`` in the corner of ``plot`` (a PlotItem) whose box hides the fewest
    samples of ``curves`` (``(x, y)`` pairs), or, where every corner hides some, in one
    row above the plot ("above"); returns where (None with no curves). ``shown``: where
    it is now; ``growing``: the data are still growing, it moves only for a corner
    clearly emptier (:func:`best_corner`'s ``current``); ``x_bounds``: see there."""
    if not curves:
        return None
    vb = plot.getViewBox()
    r = legend.boundingRect()
    box = ((r.width() + 8) / vb.width(), (r.height() + 8) / vb.height()) \
        if vb.width() > 50 and vb.height() > 50 else (0.35, 0.35)
    where = best_corner(curves, box, log_y=log_y, current=shown if growing else None,
                        x_bounds=x_bounds)
    pts = samples(curves, log_y, x_bounds)
    hidden = covered(pts, where, box)
    if hidden > ABOVE_SHARE * len(pts) or (growing and shown == "above" and hidden > 0):
        where = "above"
    if where == shown:
        return where
    above = where == "above"
    legend.setColumnCount(4 if above else 1)
    plot.setTitle(" " if above else None, size="8pt")  # the row the legend sits in
    legend.setParentItem(plot if above else vb)
    if above:  # its padding runs off the top: the row of entries sits in the title's room
        legend.anchor((0.5, 0), (0.5, 0), offset=(0, -8))
    else:
        legend.anchor(**anchor_args(where))
    return where

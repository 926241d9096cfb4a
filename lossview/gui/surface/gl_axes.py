"""The 3D view's axes: a frame on the floor along α and β and a vertical loss axis, with
tick marks (pyqtgraph.opengl lines) and their labels (2D text over the frame, at the
points the camera projects them to), so the surface reads with its coordinates and its
loss values.

The scene is drawn in a fixed box (``gl_view``): α and β each span [-1, 1] whatever
their values, heights span [0, ``height``]; the labels say the values. Also the line
geometry of the path and the basin outline (:func:`strip_to_segments`, :func:`densify`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter

from lossview.core.surface.scene import SurfaceScene
from lossview.gui.plotkit.axes import format_value

#: a tick mark's length, and the labels' distance from their axis (scene units)
TICK = 0.06
LABEL_OFFSET = 0.2
TITLE_OFFSET = 0.5
#: labels' point size
FONT_PT = 8


@dataclass(frozen=True)
class Label:
    at: tuple[float, float, float]  # scene position
    text: str
    title: bool = False


def nice_ticks(lo: float, hi: float, inset: float = 0.12) -> np.ndarray:
    """Two or three round values inside ``lo..hi``, at least ``inset`` of the span from
    either end (the ends are corners, where another axis' labels stand)."""
    span = hi - lo
    if not (np.isfinite(span) and span > 0):
        return np.array([lo])
    a, b = lo + inset * span, hi - inset * span
    mag = 10.0 ** np.floor(np.log10((b - a) / 4))
    for m in (1, 2, 2.5, 5, 10, 20, 25, 50):
        step = m * mag
        vals = np.arange(np.ceil(a / step) * step, b + 1e-9 * step, step)
        if len(vals) <= 3:
            break
    return np.round(vals / step) * step + 0.0 if len(vals) else np.array([(lo + hi) / 2])


def frame_segments(floor_z: float, height: float) -> np.ndarray:
    """Vertex pairs of the axes (``mode="lines"``): α along the front edge (β = -1), β
    along the right edge (α = 1), loss up the front-left corner."""
    segs = [[(-1, -1, floor_z), (1, -1, floor_z)], [(1, -1, floor_z), (1, 1, floor_z)],
            [(-1, -1, floor_z), (-1, -1, height)]]
    return np.asarray(segs, dtype=np.float32).reshape(-1, 3)


def tick_segments(scene: SurfaceScene, floor_z: float, height: float) -> np.ndarray:
    """Vertex pairs of the tick marks at :func:`axis_labels`' values."""
    (ua, ub, uz), _ = _ticks(scene)
    segs = [[(u, -1, floor_z), (u, -1 - TICK, floor_z)] for u in ua]
    segs += [[(1, u, floor_z), (1 + TICK, u, floor_z)] for u in ub]
    segs += [[(-1, -1, z * height), (-1 - TICK, -1 - TICK, z * height)] for z in uz]
    return np.asarray(segs, dtype=np.float32).reshape(-1, 3)


def _ticks(scene: SurfaceScene):
    """Positions along α, β (in [-1, 1]) and up the height (in [0, 1]) of round values,
    and those values."""
    a, b, s = scene.alphas, scene.betas, scene.scale
    va, vb = nice_ticks(float(a[0]), float(a[-1])), nice_ticks(float(b[0]), float(b[-1]))
    vz = nice_ticks(s.floor, s.ceiling, inset=0.0)  # log10 of the loss on a log scale
    span_z = s.ceiling - s.floor if s.ceiling > s.floor else 1.0

    def unit(v, lo, hi):
        return -1 + 2 * (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)

    pos = (unit(va, a[0], a[-1]), unit(vb, b[0], b[-1]), (vz - s.floor) / span_z)
    return pos, (va, vb, 10.0**vz if s.log else vz)


def _value(v: float) -> str:
    return format_value(float(f"{v:.3g}")) if v else "0"


def axis_labels(scene: SurfaceScene, floor_z: float, height: float) -> list[Label]:
    """Round values along α and β and up the loss axis, and the axis titles."""
    (ua, ub, uz), (va, vb, vz) = _ticks(scene)
    lo, mid = -1 - LABEL_OFFSET, LABEL_OFFSET / 1.5
    out = [Label((float(u), lo, floor_z), _value(v)) for u, v in zip(ua, va)]
    out += [Label((1 + LABEL_OFFSET, float(u), floor_z), _value(v)) for u, v in zip(ub, vb)]
    out += [Label((-1 - mid, -1 - mid, float(z) * height), _value(v)) for z, v in zip(uz, vz)]
    t = TITLE_OFFSET
    out += [Label((0.0, -1 - t, floor_z), "α", True), Label((1 + t, 0.0, floor_z), "β", True),
            Label((-1.0, -1.0, height + 0.16),
                  "loss" + (" (clipped)" if scene.scale.clipped else ""), True)]
    return out


class _Cached:
    key: tuple | None = None
    image: QImage | None = None


def paint_labels(p: QPainter, labels: list[Label], points: np.ndarray, color: QColor,
                 size: tuple[int, int]) -> None:
    """Draw ``labels`` centred on their projected ``points`` (window pixels; NaN: behind
    the camera), kept inside the ``size`` of the window.

    Painted once into an image by Qt's raster engine and drawn as that image (kept while
    labels, camera and size stay, as they do while scrubbing): text drawn directly over
    the GL frame set up QPainter's OpenGL text machinery on first use, a 55-62 ms block of
    the GUI thread on llvmpipe (bench_gui --only open --watch)."""
    dpr = p.device().devicePixelRatioF() if p.device() is not None else 1.0
    key = (tuple(labels), np.asarray(points, dtype=float).tobytes(), color.rgba(), size, dpr)
    if _Cached.key != key:
        _Cached.image = _labels_image(labels, points, color, size, dpr)
        _Cached.key = key
    p.drawImage(0, 0, _Cached.image)


def _labels_image(labels: list[Label], points: np.ndarray, color: QColor,
                  size: tuple[int, int], dpr: float) -> QImage:
    w, h = size
    image = QImage(max(round(w * dpr), 1), max(round(h * dpr), 1),
                   QImage.Format.Format_ARGB32_Premultiplied)
    image.setDevicePixelRatio(dpr)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    try:
        _draw_labels(p, labels, points, color, size)
    finally:
        p.end()
    return image


def _draw_labels(p: QPainter, labels: list[Label], points: np.ndarray, color: QColor,
                 size: tuple[int, int]) -> None:
    font = QFont(p.font())
    font.setPointSize(FONT_PT)
    bold = QFont(font)
    bold.setBold(True)
    p.setPen(color)
    p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
    w, h = size
    drawn: list[QRectF] = []
    # titles first; a tick value that would overlap a label already drawn is left out (a
    # small view crowds the corner where two axes meet)
    order = sorted(range(len(labels)), key=lambda i: not labels[i].title)
    for lab, (x, y) in ((labels[i], points[i]) for i in order):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        f = bold if lab.title else font
        p.setFont(f)
        r = QFontMetricsF(f).boundingRect(lab.text)
        box = QRectF(0, 0, r.width() + 2, r.height())
        box.moveCenter(QPointF(float(x), float(y)))
        box.moveLeft(min(max(box.left(), 1.0), w - box.width() - 1))
        box.moveTop(min(max(box.top(), 1.0), h - box.height() - 1))
        if any(box.intersects(d) for d in drawn):
            continue
        drawn.append(box)
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, lab.text)


def strip_to_segments(points: np.ndarray) -> np.ndarray:
    """NaN-separated polylines -> vertex pairs for ``mode="lines"`` (GL has no NaN breaks)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 2:
        return np.zeros((0, p.shape[1] if p.ndim == 2 else 3))
    ok = np.isfinite(p).all(axis=1)
    keep = ok[:-1] & ok[1:]
    return np.stack([p[:-1][keep], p[1:][keep]], axis=1).reshape(-1, p.shape[1])


def densify(coords: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` points per segment of a polyline, and each point's position in [0, 1] along
    the snapshots (for colouring)."""
    c = np.asarray(coords, dtype=np.float64)
    n = len(c)
    if n < 2:
        return c, np.zeros(n)
    f = np.linspace(0.0, n - 1, (n - 1) * k + 1)
    i = np.minimum(f.astype(int), n - 2)
    w = (f - i)[:, None]
    return (1 - w) * c[i] + w * c[i + 1], f / (n - 1)

"""The 3D loss surface (pyqtgraph.opengl items; the window they draw in is
:mod:`lossview.gui.surface.gl_window`).

The scene is drawn in a fixed box: the plane's longer side spans [-1, 1] and heights
span [0, ``HEIGHT``], whatever the loss values, so the camera never needs to chase the
data. Items are created once; a new surface calls ``setData`` on them, and scrubbing the
timeline moves only the marker (:meth:`SurfaceGLView.set_current`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from lossview.core.surface.scene import OVERFLOW_RGB, SurfaceScene, bilinear

# gl_window first: it turns PyOpenGL's error checking off before OpenGL.GL is imported
from lossview.gui.surface.gl_window import software_rendering, window_class  # isort: skip
from lossview.gui.surface.gl_axes import (  # isort: skip
    axis_labels, densify, frame_segments, paint_labels, strip_to_segments, tick_segments)
from lossview.gui.surface.gl_legend import SurfaceLegend  # isort: skip

#: height of the drawn surface relative to its half-width
HEIGHT = 0.9
#: lift of the path and basin outline above the surface, so they are not z-fighting it
LIFT = 0.012
#: the floor grid's depth below the surface's lowest point (at height 0): level with it,
#: the grid showed through a flat basin at the bottom
FLOOR_Z = -0.03
CAMERA = {"distance": 4.9, "elevation": 30.0, "azimuth": -60.0}
#: CAMERA frames the whole scene in a view up to this many times as wide as it is high
#: (pyqtgraph's field of view is horizontal); a wider one (the window at 1280 x 800 gives
#: ~3:1) has the camera moved back by as much, else the surface's top was cut off
FIT_ASPECT = 1.8
SURFACE_CMAP = "viridis"
#: grid points whose loss overflowed: at the height ceiling, in this colour (no colour map's)
OVERFLOW_COLOR = (*(c / 255 for c in OVERFLOW_RGB), 1.0)
BASIN_COLOR = (1.0, 1.0, 1.0, 0.95)
MARKER_COLOR = (1.0, 0.23, 0.19, 1.0)
HALO = (0.0, 0.0, 0.0, 0.55)
#: path colour from the first snapshot (white) to the last (orange)
PATH_START = np.array([1.0, 1.0, 1.0, 1.0])
PATH_END = np.array([1.0, 0.62, 0.1, 1.0])


#: the 3D marker redraws at most once per this many milliseconds while scrubbing
MARKER_INTERVAL_MS = 33
#: a click selects the nearest snapshot within this many pixels (a press and release
#: further apart than gl_window.CLICK_SLOP_PX is a drag that turns the camera)
PICK_RADIUS_PX = 12


def _overlay_options() -> dict:
    """Alpha blending without depth test: drawn over the surface, in the given colour."""
    from OpenGL import GL

    return {GL.GL_DEPTH_TEST: False, GL.GL_BLEND: True, GL.GL_CULL_FACE: False,
            "glBlendFuncSeparate": (GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA,
                                    GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)}


class SurfaceGLView(QWidget):
    """Rotatable 3D view of one :class:`SurfaceScene` with the path and a current marker.

    The GL view is a native child window (see :func:`gl_window.window_class`); ``QWidget.grab``
    does not see it, so exports paint :meth:`grab_image` in (``is_gl_container``).
    """

    is_gl_container = True
    #: a click within PICK_RADIUS_PX of a snapshot's point on the path selects it
    point_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        import pyqtgraph.opengl as gl

        self._gl = gl
        self.view = window_class()()
        self.view.on_click = self._on_click
        bg = pg.mkColor(pg.getConfigOption("background"))
        self.view.setBackgroundColor(bg)
        dark = bg.lightness() < 128
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.container = QWidget.createWindowContainer(self.view, self)
        self.container.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        lay.setSpacing(0)
        lay.addWidget(self.container, 1)
        self.legend = SurfaceLegend({"path_start": PATH_START, "path_end": PATH_END, "halo": HALO,
                                     "start": (1, 1, 1, 1), "marker": MARKER_COLOR,
                                     "basin": BASIN_COLOR}, SURFACE_CMAP, self)
        lay.addWidget(self.legend)
        # the axes: a frame with ticks on the floor and up one corner, and their labels
        # drawn over the frame (paint_over)
        self.axes_frame = gl.GLLinePlotItem(pos=frame_segments(FLOOR_Z, HEIGHT), mode="lines",
                                       width=1.0, antialias=not software_rendering(),
                                       color=(1, 1, 1, 0.6) if dark else (0, 0, 0, 0.6))
        self._labels: list = []
        self._label_pos = np.zeros((0, 3))
        self._label_color = pg.mkColor(pg.getConfigOption("foreground"))
        self.view.paint_over = self._paint_labels

        self.floor = gl.GLGridItem(size=pg.Vector(2, 2, 1),
                                   color=(255, 255, 255, 50) if dark else (0, 0, 0, 45))
        self.floor.setSpacing(0.25, 0.25, 1)
        self.floor.translate(0, 0, FLOOR_Z)
        self.surface = gl.GLSurfacePlotItem(shader="shaded", computeNormals=True, smooth=False,
                                            glOptions="opaque")
        self.basin = gl.GLLinePlotItem(mode="lines", width=2.5, color=BASIN_COLOR,
                                       antialias=not software_rendering(),
                                       glOptions="translucent")
        # the path and the marker are drawn over the surface (no depth test) so a ridge
        # in front never hides where the optimizer is
        over = _overlay_options()
        aa = not software_rendering()
        # every overlay is drawn twice, a wide dark halo under a bright core, so it reads
        # on any part of the colour map and on light or dark backgrounds
        self.path_halo = gl.GLLinePlotItem(mode="line_strip", width=5.0, antialias=aa,
                                           color=HALO, glOptions=over)
        self.path = gl.GLLinePlotItem(mode="line_strip", width=2.5, antialias=aa,
                                      glOptions=over)
        self.drop = gl.GLLinePlotItem(mode="lines", width=1.5, color=(0.1, 0.1, 0.1, 0.7),
                                      glOptions=over)
        self.start_halo = gl.GLScatterPlotItem(size=12, color=HALO, pxMode=True,
                                               glOptions=over)
        self.start = gl.GLScatterPlotItem(size=8, color=(1, 1, 1, 1), pxMode=True,
                                          glOptions=over)
        self.marker_halo = gl.GLScatterPlotItem(size=20, color=(0, 0, 0, 0.8), pxMode=True,
                                                glOptions=over)
        self.marker = gl.GLScatterPlotItem(size=15, color=MARKER_COLOR, pxMode=True,
                                           glOptions=over)
        self._overlays = (self.path_halo, self.path, self.drop, self.start_halo, self.start,
                          self.marker_halo, self.marker)
        self.axes_frame.setVisible(False)
        for depth, item in enumerate((self.floor, self.axes_frame, self.surface, self.basin,
                                      *self._overlays)):
            item.setDepthValue(depth)
            self.view.addItem(item)
        if software_rendering():
            # a scrub frame then draws only the marker over a copy of the rest (~2 ms
            # instead of ~10 on llvmpipe); a GPU draws the whole scene in about a
            # millisecond, so there pyqtgraph draws it as it always does
            self.view.set_moving_items((self.drop, self.marker_halo, self.marker))
        self.surface.setVisible(False)
        self._scene: SurfaceScene | None = None
        self._path_pos = np.zeros((0, 3), dtype=np.float32)
        self._ab_scale = np.ones(2)
        self._ab_centre = np.zeros(2)
        self._index = 0
        self._drawn = 0
        self._marker_pending = False
        self._marker_timer = QTimer(self)
        self._marker_timer.setSingleShot(True)
        self._marker_timer.setInterval(MARKER_INTERVAL_MS)
        self._marker_timer.timeout.connect(self._on_marker_timer)
        self._fit = 1.0  # the camera's distance relative to CAMERA's, for the view's shape
        self.reset_camera()

    # -- geometry ----------------------------------------------------------------
    def _xy(self, ab: np.ndarray) -> np.ndarray:
        return (np.asarray(ab, dtype=np.float64) - self._ab_centre) * self._ab_scale

    def reset_camera(self) -> None:
        """Back to the default oblique view of the whole surface."""
        self.view.opts["center"] = pg.Vector(0, 0, HEIGHT * 0.3)
        self.view.setCameraPosition(**{**CAMERA, "distance": CAMERA["distance"] * self._fit})

    def _aspect_fit(self) -> float:
        """How far back the camera must be, relative to CAMERA, for this view's shape."""
        w, h = self.container.width(), self.container.height()
        return max(1.0, w / max(h, 1) / FIT_ASPECT)

    def resizeEvent(self, ev) -> None:
        """Keep the scene framed as the view changes shape (a zoom the user made is kept,
        relative to the framing)."""
        super().resizeEvent(ev)
        fit = self._aspect_fit()
        if abs(fit - self._fit) > 1e-3:
            self.view.opts["distance"] *= fit / self._fit
            self._fit = fit
            self.view.update()

    def set_scene(self, scene: SurfaceScene, overlays: bool = True) -> None:
        """Draw a (possibly partial) surface, its basin outline and the lifted path.

        ``overlays=False`` leaves the path and markers hidden until :meth:`show_overlays`:
        the first frame on a software rasteriser compiles every item's shaders, so the
        first surface is drawn in two frames (event-loop turns) instead of one."""
        self._scene = scene
        a, b = scene.alphas, scene.betas
        self._ab_centre = np.array([(a[0] + a[-1]) / 2, (b[0] + b[-1]) / 2])
        # each axis stretched to [-1, 1]: a PCA plane is often much longer along PC1,
        # and a thin strip shows no basin; the 2D view keeps the true aspect ratio
        half = np.array([a[-1] - a[0], b[-1] - b[0]], dtype=np.float64) / 2
        self._ab_scale = np.where(half > 0, 1.0 / np.where(half > 0, half, 1.0), 1.0)
        x = (a - self._ab_centre[0]) * self._ab_scale[0]
        y = (b - self._ab_centre[1]) * self._ab_scale[1]
        h = scene.scale.unit(scene.loss)  # overflowed points (inf): at the ceiling, 1
        # per-vertex colours, flattened in the mesh's vertex order (x-major)
        colors = pg.colormap.get(SURFACE_CMAP).map(h.ravel(), mode="float").astype(np.float32)
        colors[scene.overflowed.ravel()] = OVERFLOW_COLOR
        self.surface.setData(x=x, y=y, z=h * HEIGHT, colors=colors)
        self.surface.setVisible(True)
        self.axes_frame.setVisible(True)
        self.axes_frame.setData(pos=np.concatenate(
            [frame_segments(FLOOR_Z, HEIGHT), tick_segments(scene, FLOOR_Z, HEIGHT)]))
        self._labels = axis_labels(scene, FLOOR_Z, HEIGHT)
        self._label_pos = np.array([lab.at for lab in self._labels], dtype=np.float64)
        self.legend.set_scene(scene)

        if len(scene.basin):
            ab = scene.basin
            hz = self._height_at(ab)
            pos = np.column_stack([self._xy(ab), hz * HEIGHT + LIFT])
            self.basin.setData(pos=strip_to_segments(pos).astype(np.float32))
            self.basin.setVisible(True)
        else:
            self.basin.setVisible(False)

        n = scene.n_points
        if n:
            self._path_pos = self._lift(scene.coords)
            # the drawn line follows the surface between snapshots (8 points a segment),
            # coloured from the first snapshot (white) to the last (orange)
            dense, t = densify(scene.coords, 8)
            line = self._lift(dense)
            col = ((1 - t[:, None]) * PATH_START + t[:, None] * PATH_END).astype(np.float32)
            self.path.setData(pos=line, color=col)
            self.path_halo.setData(pos=line)
            self.start.setData(pos=self._path_pos[:1])
            self.start_halo.setData(pos=self._path_pos[:1])
            for item in self._overlays:
                item.setVisible(overlays)
            self._index = min(self._index, n - 1)
            self._apply_marker()
        else:
            for item in self._overlays:
                item.setVisible(False)
        self.view.still_changed()

    @property
    def scene(self) -> SurfaceScene | None:
        """The scene drawn (None before the first :meth:`set_scene`)."""
        return self._scene

    def warm_step(self) -> None:
        """One of the two turns that prepare the scrub's copy of the scene (see
        ``gl_window``); nothing once it is prepared."""
        self.view.warm_step()

    def set_floor_visible(self, on: bool) -> None:
        """Show or hide the floor grid (hidden for the view's very first frame, which
        then only clears: each kind of item's first frame compiles its drawing code on a
        software renderer, so the first surface arrives over several turns)."""
        if self.floor.visible() != on:
            self.floor.setVisible(on)
            self.view.still_changed()

    def show_overlays(self, markers: bool = True) -> None:
        """Show the path and markers a :meth:`set_scene` with ``overlays=False`` held back;
        ``markers=False``: the path only (the markers' first frame is a turn of its own)."""
        if self._scene is not None and self._scene.n_points:
            for item in self._overlays:
                if markers or item in (self.path_halo, self.path):
                    item.setVisible(True)
            self.view.still_changed()

    def _lift(self, ab: np.ndarray) -> np.ndarray:
        """(alpha, beta) points -> scene positions on the surface (plus a small lift)."""
        hz = np.nan_to_num(self._height_at(ab), nan=0.0) * HEIGHT + LIFT
        return np.column_stack([self._xy(ab), hz]).astype(np.float32)

    def _height_at(self, ab: np.ndarray) -> np.ndarray:
        """Unit height of the surface under (alpha, beta) points (bilinear on the grid)."""
        s = self._scene
        assert s is not None
        return bilinear(s.alphas, s.betas, s.scale.unit(s.loss), ab)

    def set_current(self, index: int) -> None:
        """Move the marker to snapshot ``index``; the only update made while scrubbing.

        Throttled (DESIGN.md: expensive views update throttled, the scrub line live): the
        first move redraws at once, later ones within ``MARKER_INTERVAL_MS`` are coalesced
        into one redraw at the end of the interval, so a fast scrub re-renders the GL
        scene at most ~30 times a second while the 2D panels follow every step.
        """
        self._index = int(index)
        if self._marker_timer.isActive():
            self._marker_pending = True
            return
        self._apply_marker()
        self._marker_timer.start()

    def _on_marker_timer(self) -> None:
        if self._marker_pending:
            self._marker_pending = False
            self._apply_marker()
            self._marker_timer.start()

    def _apply_marker(self) -> None:
        self._drawn = self._index
        if not len(self._path_pos):
            return
        i = min(max(self._index, 0), len(self._path_pos) - 1)
        p = self._path_pos[i]
        self.marker.setData(pos=p[None, :])
        self.marker_halo.setData(pos=p[None, :])
        self.drop.setData(pos=np.array([[p[0], p[1], FLOOR_Z], p], dtype=np.float32))

    def project(self, points: np.ndarray) -> np.ndarray:
        """Scene points ``[N, 3]`` -> window coordinates ``[N, 2]`` (pixels, origin top
        left) with the current camera; NaN for points behind the camera."""
        v = self.view
        w, h = max(v.width(), 1), max(v.height(), 1)
        proj = v.projectionMatrix((0, 0, w, h), (0, 0, w, h))
        mvp = np.array((proj * v.viewMatrix()).data(), dtype=np.float64).reshape(4, 4).T
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        clip = np.column_stack([p, np.ones(len(p))]) @ mvp.T
        out = np.full((len(p), 2), np.nan)
        ok = clip[:, 3] > 1e-12
        ndc = clip[ok, :2] / clip[ok, 3:4]
        out[ok, 0] = (ndc[:, 0] + 1) / 2 * w
        out[ok, 1] = (1 - ndc[:, 1]) / 2 * h
        return out

    def point_at(self, x: float, y: float) -> int | None:
        """The snapshot whose point on the drawn path is nearest to window position
        ``(x, y)``, if within :data:`PICK_RADIUS_PX`."""
        if not len(self._path_pos):
            return None
        d = np.hypot(*(self.project(self._path_pos) - [x, y]).T)
        if not np.isfinite(d).any():
            return None
        k = int(np.nanargmin(d))
        return k if d[k] <= PICK_RADIUS_PX else None

    def _on_click(self, x: float, y: float) -> None:
        k = self.point_at(x, y)
        if k is not None:
            self.point_clicked.emit(k)

    def marker_position(self) -> np.ndarray | None:
        """Where the marker is drawn (scene coordinates), for tests."""
        return None if not len(self._path_pos) else self._path_pos[
            min(max(self._drawn, 0), len(self._path_pos) - 1)].copy()

    def _paint_labels(self, painter) -> None:
        """The axes' labels over the frame just drawn (the GL window's paint_over)."""
        if self._labels and self.axes_frame.visible():
            paint_labels(painter, self._labels, self.project(self._label_pos),
                         self._label_color, (self.view.width(), self.view.height()))

    def grab_frame(self):
        """The 3D frame alone as a QImage, as paintGL draws it (null if no GL context).

        Rendered afresh into an offscreen buffer (pyqtgraph's ``renderToArray``): the GL
        window's ``grabFramebuffer`` can return a blank frame before its next repaint.
        """
        from PySide6.QtGui import QImage

        w, h = self.view.width(), self.view.height()
        if w <= 0 or h <= 0 or not self.view.isValid():
            return self.view.grabFramebuffer()
        arr = np.ascontiguousarray(self.view.renderToArray((w, h)))
        img = QImage(arr.data, arr.shape[1], arr.shape[0], arr.strides[0],
                     QImage.Format.Format_ARGB32)
        return img.copy()

    def grab_image(self):
        """This widget as a QImage, as it is seen: the frame (:meth:`grab_frame`) with its
        axis labels, and the legend under it (exports paint it over the widget's place)."""
        from PySide6.QtCore import QPoint
        from PySide6.QtGui import QImage, QPainter

        frame = self.grab_frame()
        if frame.isNull():
            return frame
        img = QImage(self.size(), QImage.Format.Format_ARGB32)
        img.fill(self.palette().color(self.backgroundRole()))
        p = QPainter(img)
        try:
            p.drawImage(self.container.pos(), frame)
            p.translate(self.container.pos())
            self._paint_labels(p)
            p.resetTransform()
            self.legend.render(p, QPoint(self.legend.pos()))
        finally:
            p.end()
        return img

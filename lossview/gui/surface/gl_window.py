"""The window the 3D views draw in: :func:`window_class` is pyqtgraph's GL view on a
QOpenGLWindow (see its docstring), reporting clicks, drawing 2D text over the frame
(``paint_over``: the axis labels), and on a CPU rasteriser keeping a copy of the still
scene so a scrub frame only draws the marker. Whether a GL view can be made at all is
:mod:`lossview.gui.surface.gl_probe`'s (re-exported here).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

from PySide6.QtCore import Qt, QTimer

# gl_probe first: it turns PyOpenGL's error checking off before OpenGL.GL is imported
from lossview.gui.surface.gl_probe import (  # noqa: F401  (re-exported)
    gl_renderer,
    gl_unavailable_reason,
    match_pyopengl_to_qt,
    probe_context,
    shader_warmers,
    software_rendering,
)

#: a press and release further apart than this (pixels) is a drag, not a click
CLICK_SLOP_PX = 4
#: the 3D view's copy is prepared once no frame was drawn for this long
WARM_DELAY_MS = 150
#: bits of the 3D view's depth buffer (its window's and its copy's)
DEPTH_BITS = 24


@functools.cache
def window_class():
    """pyqtgraph's GL view on a QOpenGLWindow instead of a QOpenGLWidget.

    A QOpenGLWidget switches its whole top-level window to OpenGL composition for good
    (hidden or deleted, it stays switched): every later repaint of any panel is composed
    through OpenGL, ~30 ms a frame on a software rasteriser against ~3 ms raster
    (measured with one plot and a moving line in a 1600 x 1000 window). A QOpenGLWindow in
    a window container renders into its own native child window, and the rest of the
    window keeps painting with the raster engine.
    """
    from pyqtgraph.opengl.GLViewWidget import GLViewMixin
    from PySide6.QtGui import QSurfaceFormat
    from PySide6.QtOpenGL import QOpenGLFramebufferObjectFormat, QOpenGLWindow

    class GLViewWindow(GLViewMixin, QOpenGLWindow):
        """Also reports a click (press and release within a few pixels, not a drag that
        turns the camera) to ``on_click(x, y)`` in window coordinates, and can keep the
        still part of the scene in a framebuffer (:meth:`set_moving_items`)."""

        on_click = None
        #: called with a QPainter over each finished frame (2D text), or None
        paint_over = None
        #: items redrawn at every frame over the cached rest; () draws every item each frame
        moving: tuple = ()
        _cache = None  # QOpenGLFramebufferObject: the still items of the last frame
        _cache_key = None  # the still part the cache holds
        _cache_failed = False
        _generation = 0
        _warmed = 0  # warm-up steps done (see set_moving_items)
        _warm_timer = None
        #: a callable saying the app is computing (a surface in a worker): the quiet
        #: moment's warm-up then waits (a compile on a CPU shared with a worker took
        #: a third longer); None: never busy
        busy = None
        #: how many times the still items were drawn into the cache (tests, benchmarks)
        still_frames = 0

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            # A QOpenGLWindow draws into the window's own buffers, which have no depth
            # buffer unless asked for (a QOpenGLWidget's framebuffer object always had
            # one): the surface's depth test then did nothing, and where a ridge stands in
            # front of the slope behind it the triangles drawn later covered it.
            fmt = QSurfaceFormat(self.format())
            fmt.setDepthBufferSize(DEPTH_BITS)
            self.setFormat(fmt)

        def set_moving_items(self, items) -> None:
            """Keep the frame without ``items`` (the scrub's marker) in a framebuffer
            object: a frame in which only ``items`` changed copies it to the window and
            draws them on top.

            Why: on a CPU rasteriser a frame of the whole scene is ~10 ms (paintGL plus
            the rasterising at the swap) and the marker moves ~30 times a second while
            scrubbing; the copy and the marker alone are ~2 ms. ``items`` must not depend
            on the depth buffer of the still ones (the overlays ignore it).

            The still items are drawn into the framebuffer object and it is drawn into
            the window by a shader of our own (:mod:`~lossview.gui.surface.gl_copy`); no
            ``glBlitFramebuffer``: on llvmpipe a blit between the window and a
            framebuffer object compiled a blit shader on first use in every process,
            28-38 ms each way, whatever the formats. The first drawing into the object
            (its format's shaders) and the first copy still cost ~15-20 ms more than a
            frame: they are done in two steps, each in a quiet moment of its own
            (:data:`WARM_DELAY_MS` after a frame with none since, :attr:`busy` false) or
            when :meth:`warm_step` is called; until then frames are drawn whole.
            """
            self.moving = tuple(items)
            if self._warm_timer is None:
                self._warm_timer = QTimer(self)
                self._warm_timer.setSingleShot(True)
                self._warm_timer.setInterval(WARM_DELAY_MS)
                self._warm_timer.timeout.connect(self._on_quiet)
            self.still_changed()

        @property
        def copying(self) -> bool:
            """True once frames that only move the moving items use the copy."""
            return bool(self.moving) and self._warmed >= 2 and not self._cache_failed

        def still_changed(self) -> None:
            """The still items changed (new data, shown or hidden): redraw them once."""
            self._generation += 1
            self.update()

        def paintGL(self):
            self.frame()

        def paintOverGL(self):
            """2D drawing over the finished frame: ``paint_over(painter)`` (the axes'
            labels), a QPainter on the window."""
            if self.paint_over is not None:
                from PySide6.QtGui import QPainter

                p = QPainter(self)
                try:
                    self.paint_over(p)
                finally:
                    p.end()

        def frame(self) -> None:
            """Render one frame into the current framebuffer (what paintGL does): the
            still items as pyqtgraph draws them, into the cache, if the camera, the size
            or the scene changed since; the cache copied to the window; then the moving
            items."""
            if not self.moving or self._cache_failed:
                return super().paintGL()
            if self._warmed < 2:  # the first copy is not prepared yet: draw it all
                self._warm_timer.start()
                return super().paintGL()
            from OpenGL import GL

            from lossview.gui.surface.gl_copy import draw_texture

            region = self.getViewport()
            if not self._fill_cache(region):
                return super().paintGL()  # no framebuffer object: whole frames
            GL.glViewport(*region)
            draw_texture(self._cache.texture())
            self.setProjection(region, region)
            self.setModelview()
            with self._drawing(still=False):
                self.drawItemTree()

        def _fill_cache(self, region) -> bool:
            """Draw the still items into the cache unless it holds them for this camera,
            size and scene already; False where no framebuffer object can be made."""
            from OpenGL import GL

            key = (region, tuple((self.projectionMatrix(region, region)
                                  * self.viewMatrix()).data()),
                   self.opts["bgcolor"], self._generation)
            if key == self._cache_key and self._fits(region[2], region[3]):
                return True
            if not self._fits(region[2], region[3]) and not self._new_cache(*region[2:]):
                return False
            self._cache.bind()
            try:
                # pyqtgraph's paint draws into the current viewport: after an export
                # (renderToArray: its own, larger) or the warm-up's one-pixel copy, the
                # cache held a corner of the scene, shown until the camera moved
                GL.glViewport(*region)
                with self._drawing(still=True):
                    self.paint(region=region, viewport=region)
            finally:
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.defaultFramebufferObject())
            self._cache_key = key
            self.still_frames += 1
            return True

        def warm_step(self) -> None:
            """Do one step of the warm-up now, if not done yet (see
            :meth:`set_moving_items`)."""
            if self.moving:
                self._warm_up()

        def _on_quiet(self) -> None:
            if self.busy is not None and self.busy():
                self._warm_timer.start()  # another quiet moment, once the work is done
            else:
                self._warm_up()

        def _warm_up(self) -> None:
            """One step: fill the cache (which the next frame uses if nothing moved), or
            draw the copy once, on one pixel of the back buffer (undefined until the next
            frame, which draws every pixel); then wait for the next quiet moment."""
            from OpenGL import GL

            from lossview.gui.surface.gl_copy import draw_texture

            if self._warmed >= 2 or not self.isExposed() or not self.isValid():
                return
            self.makeCurrent()
            try:
                if self._warmed == 0:
                    if not self._fill_cache(self.getViewport()):
                        return
                else:
                    GL.glViewport(0, 0, 1, 1)
                    draw_texture(self._cache.texture())
                self._warmed += 1
            finally:
                self.doneCurrent()
            if self._warmed < 2:
                self._warm_timer.start()

        def _fits(self, w: int, h: int) -> bool:
            return self._cache is not None and (self._cache.width(), self._cache.height()) == (w, h)

        def _new_cache(self, w: int, h: int) -> bool:
            from PySide6.QtOpenGL import QOpenGLFramebufferObject as Fbo

            fmt = QOpenGLFramebufferObjectFormat()  # a texture, no samples, a depth buffer
            fmt.setAttachment(Fbo.Attachment.Depth)
            fbo = Fbo(w, h, fmt)
            if not fbo.isValid() or not fbo.texture():
                self._cache_failed = True  # every frame is drawn whole from now on
                self._cache = None
                return False
            self._cache, self._cache_key = fbo, None
            return True

        @contextmanager
        def _drawing(self, still: bool):
            """pyqtgraph's drawItemTree draws ``self.items``: only the still or only the
            moving ones for the duration."""
            every = self.items
            self.items = [i for i in every if (i in self.moving) != still]
            try:
                yield
            finally:
                self.items = every

        def mousePressEvent(self, ev):
            self._press = ev.position()
            super().mousePressEvent(ev)

        def mouseReleaseEvent(self, ev):
            super().mouseReleaseEvent(ev)
            press = getattr(self, "_press", None)
            self._press = None
            if press is None or ev.button() != Qt.MouseButton.LeftButton or self.on_click is None:
                return
            moved = ev.position() - press
            if abs(moved.x()) + abs(moved.y()) <= CLICK_SLOP_PX:
                self.on_click(ev.position().x(), ev.position().y())

    return GLViewWindow

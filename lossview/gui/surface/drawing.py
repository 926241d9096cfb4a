"""How the surface panel draws: a scene handed to its views over several frames.

A mixin of :class:`~lossview.gui.surface.panel.SurfacePanel` (kept apart so that each
module stays short): it reads the panel's views (``contour``, the 3D view, ``honesty``,
``message``), its ``toolbar``, ``timeline`` and ``status`` caption. A surface whose every
grid point overflowed is a one-line message in place of the views, never an exception.
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from PySide6.QtWidgets import QWidget

from lossview.core.surface.scene import SurfaceScene, build_scene
from lossview.gui.plotkit.frames import frames

log = logging.getLogger("lossview.gui.surface")


class SurfaceDrawing:
    """The drawing half of the surface panel (see the module doc)."""

    def _draw(self, surface: Any, scene: SurfaceScene | None = None) -> None:
        self.surface = surface
        self.status.set_surface(surface)
        try:
            self._redraw(scene)
        except Exception as e:  # noqa: BLE001 - a drawing failure is a message, not a crash
            self._drawing_failed(e)

    def _drawing_failed(self, e: Exception) -> None:
        log.exception("drawing the surface failed")
        self.surface = self.scene = None
        self._final = False
        frames().cancel(self, "draw")
        self._show_message(f"<b>Could not draw the loss surface:</b> "
                           f"{escape(f'{type(e).__name__}: {e}')}")

    def _redraw(self, scene: SurfaceScene | None = None) -> None:
        """Hand the scene to the views; ``scene`` comes from the worker, else (log-z
        toggled) it is rebuilt here from the surface.

        One view per frame of the window's update path (each is tens of milliseconds on a
        software renderer; :mod:`~lossview.gui.plotkit.frames`): the view on screen first,
        then the honesty plot, then the hidden view.
        The first 3D surface takes six frames of its own: the 3D view made, the GL window
        shown (its first frame empty: being exposed and sized is ~10 ms), the floor, the
        surface, the path, then the markers (the first frame of each kind of item
        compiles its drawing code: 5-20 ms each on llvmpipe).
        A final 3D surface ends with two frames that prepare the 3D view's scrub copy,
        if its quiet moments have not (nothing to do after the first time).
        """
        if self.surface is None:
            return
        if scene is None or scene.scale.log != self.toolbar.log_z():
            scene = build_scene(self.surface, self.toolbar.log_z())
        self.scene = scene
        if scene.nothing_finite:
            frames().cancel(self, "draw")
            self._show_message(f"<b>Nothing finite to draw:</b> the loss overflowed at all "
                               f"{scene.loss.size} grid points of this plane.")
            return
        final = self._final
        want_3d = not self.toolbar.wants_contour()

        def guarded(step):
            def run():
                if self.scene is not scene:
                    return None  # a newer scene (or none) replaced it
                try:
                    return step()  # a widget returned is laid out before it paints
                except Exception as e:  # noqa: BLE001 - a drawing failure is a message, not a crash
                    self._drawing_failed(e)
                    return None
            return run

        first_3d = want_3d and (self._gl_view is None or self._gl_view.scene is None)

        def make() -> None:  # the first 3D surface: the view made, not shown yet
            if self._ensure_gl(with_scene=False) and not self._gl_view.view.isExposed():
                self._gl_view.set_floor_visible(False)

        def create() -> None:  # the GL window shown, its first frame empty
            if self._gl_view is not None:
                self.stack.setCurrentWidget(self._gl_view)

        def floor() -> None:
            if self._gl_view is not None:
                self._gl_view.set_floor_visible(True)

        def front() -> QWidget | None:
            if want_3d and self._ensure_gl():
                # the first time, the path and markers follow a turn later (shaders
                # compile at each item's first frame)
                self._gl_view.set_scene(scene, overlays=not first_3d)
                self._gl_view.set_current(self.timeline.index)
                self._show_view()
                return None
            self.contour.set_scene(scene)
            self.contour.set_current(self.timeline.index)
            self._show_view()
            return self.contour

        def path() -> None:
            if self._gl_view is not None:
                self._gl_view.show_overlays(markers=False)

        def overlays() -> None:
            if self._gl_view is not None:
                self._gl_view.show_overlays()

        def honesty() -> QWidget:
            self.honesty.set_scene(scene)
            self.honesty.set_current(self.timeline.index)
            return self.honesty

        def back() -> QWidget | None:
            if want_3d and self._gl_view is not None:
                self.contour.set_scene(scene)
                self.contour.set_current(self.timeline.index)
                return self.contour
            if self._gl_view is not None:
                self._gl_view.set_scene(scene)
                self._gl_view.set_current(self.timeline.index)

        def warm() -> None:  # one turn each: preparing the 3D view's copy (~10-20 ms)
            if want_3d and self._gl_view is not None:
                self._gl_view.warm_step()

        def ready() -> None:
            if final and self._worker is None:
                self.surface_ready.emit()

        first = [make, create, floor, front, path, overlays]
        todo = (first if first_3d else [front]) + [honesty, back]
        if final and want_3d:  # so a scrub right after opening finds it ready
            todo += [warm, warm]
        frames().submit(self, "draw", [guarded(f) for f in [*todo, ready]])

    def _on_index(self, index: int) -> None:
        """Timeline moved: only the markers move."""
        self.contour.set_current(index)
        if self._gl_view is not None:
            self._gl_view.set_current(index)
        self.honesty.set_current(index)

    def _show_message(self, html: str) -> None:
        """``html`` in place of the surface (and no comparison with a surface below)."""
        self.message.setText(html)
        self.stack.setCurrentWidget(self.message)
        self.honesty.clear()

    def _show_view(self) -> None:
        if self.scene is None or self.scene.nothing_finite:
            return
        if not self.toolbar.wants_contour() and self._ensure_gl():
            self.stack.setCurrentWidget(self._gl_view)
        else:
            self.stack.setCurrentWidget(self.contour)

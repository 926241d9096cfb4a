"""Whether a 3D view can be made here, and what draws it: the OpenGL probe.

- :func:`gl_unavailable_reason` says whether a 3D view can be made here: PyOpenGL, and a
  throw-away context made once (:func:`probe_context`, before the window shows), which
  also tells which renderer draws it (:func:`software_rendering`);
- :func:`shader_warmers` compiles the 3D view's shader programs ahead of its first frame.
"""

from __future__ import annotations

import functools
import logging

import OpenGL

# PyOpenGL calls glGetError after every GL call by default: pyqtgraph's items make ~20
# calls an item a frame, so checking was about half of a 3D frame's time in Python (the
# scrub's slowest steps are the ones with a frame). Set before OpenGL.GL is imported
# (this module is imported first, see gui/app.PREWARM_MODULES).
OpenGL.ERROR_CHECKING = False

log = logging.getLogger("lossview.gui")
_RENDERER: dict[str, str] = {}
GL_RENDERER = 0x1F01
#: substrings of GL_RENDERER naming a CPU rasteriser (Mesa llvmpipe/softpipe, SwiftShader)
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swiftshader", "software")


def gl_renderer() -> str:
    """GL_RENDERER of the probe context ("" before :func:`probe_context` ran)."""
    return _RENDERER.get("renderer", "")


def software_rendering() -> bool:
    """True when OpenGL is rasterised on the CPU: the view then skips line antialiasing,
    which costs more than the rest of a frame there (measured: 44 -> 26 ms a frame)."""
    r = gl_renderer().lower()
    return any(s in r for s in SOFTWARE_RENDERERS)


@functools.cache
def gl_unavailable_reason() -> str | None:
    """None if an OpenGL >= 2.1 desktop context can be made here and PyOpenGL imports,
    else why not. Needs a QGuiApplication; the context part is :func:`probe_context`."""
    try:
        from PySide6.QtGui import QGuiApplication
    except ImportError as e:  # pragma: no cover - PySide6 is a dependency
        return f"Qt OpenGL support missing ({e})"
    if QGuiApplication.instance() is None:
        return "no Qt application"
    platform = QGuiApplication.platformName()
    if platform in ("offscreen", "minimal"):
        return f"the Qt platform '{platform}' has no OpenGL"
    reason = probe_context()  # first: it tells PyOpenGL which platform (EGL or GLX)
    if reason is not None:
        return reason
    try:
        import OpenGL.GL  # noqa: F401  (pyqtgraph.opengl needs PyOpenGL)
    except Exception as e:  # noqa: BLE001 - PyOpenGL fails to import in many ways: no 3D view
        return f"PyOpenGL cannot be imported ({type(e).__name__}: {e})"
    return None


def match_pyopengl_to_qt() -> None:
    """Make PyOpenGL look for the current context where Qt makes it: EGL or GLX.

    PyOpenGL picks its platform when ``OpenGL.GL`` is first imported, from the session
    (EGL when ``WAYLAND_DISPLAY`` is set, else GLX), and Qt from what the display offers:
    on an X server without GLX, Qt's contexts are EGL ones, under XWayland GLX ones. When
    the two differ, every item of the 3D view failed to draw ("Error while drawing item",
    PyOpenGL finding no current context). Called once a Qt context exists (the plugin
    Qt drew it with is then loaded, which is how this tells); does nothing when
    ``PYOPENGL_PLATFORM`` is set or PyOpenGL has already chosen."""
    import os
    import sys

    from PySide6.QtGui import QGuiApplication

    if not sys.platform.startswith("linux") or "PYOPENGL_PLATFORM" in os.environ \
            or "OpenGL.platform" in sys.modules:
        return
    if QGuiApplication.platformName() == "wayland":
        os.environ["PYOPENGL_PLATFORM"] = "egl"
        return
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            maps = f.read()
    except OSError:
        return
    # Qt's xcb platform tries its GLX integration plugin first and loads the EGL one
    # only when GLX fails (or when QT_XCB_GL_INTEGRATION asks for it)
    if "qxcb-egl-integration" in maps:
        os.environ["PYOPENGL_PLATFORM"] = "egl"
    elif "qxcb-glx-integration" in maps:
        os.environ["PYOPENGL_PLATFORM"] = "glx"


@functools.cache
def probe_context() -> str | None:
    """Make a throw-away context on an offscreen surface (pyqtgraph's glinfo recipe, so
    it never shows a window) and read its renderer (:func:`software_rendering`) with
    Qt's own GL functions: None if it is desktop OpenGL >= 2.1, else why not.

    The first context of a process costs ~40 ms (the driver loads; later ones ~2 ms), on
    the GUI thread (PySide's ``create()`` holds the GIL, so a background thread would
    stop it as long): ``run_app`` calls this before the window shows (``probe_gl``).
    """
    from PySide6.QtGui import QGuiApplication, QOffscreenSurface, QOpenGLContext

    if QGuiApplication.platformName() in ("offscreen", "minimal"):
        return f"the Qt platform '{QGuiApplication.platformName()}' has no OpenGL"
    ctx = QOpenGLContext()
    if not ctx.create():
        return "no OpenGL context could be created"
    match_pyopengl_to_qt()
    surf = QOffscreenSurface()
    surf.setFormat(ctx.format())
    surf.create()
    try:
        if not surf.isValid() or not ctx.makeCurrent(surf):
            return "an OpenGL context was created but cannot be made current"
        fmt = ctx.format()
        if ctx.isOpenGLES():
            return "only OpenGL ES is available (pyqtgraph.opengl needs desktop OpenGL)"
        if (fmt.majorVersion(), fmt.minorVersion()) < (2, 1):
            return f"OpenGL {fmt.majorVersion()}.{fmt.minorVersion()} is too old (needs 2.1)"
        try:
            _RENDERER["renderer"] = ctx.functions().glGetString(GL_RENDERER) or ""
        except Exception:  # noqa: BLE001 - the renderer's name is only informative
            _RENDERER["renderer"] = ""
        ctx.doneCurrent()
    finally:
        surf.destroy()
    return None


def shader_warmers() -> list:
    """Steps that compile, one per call, the shader programs the 3D surface view uses,
    on a throw-away context that shares the global share context (``share_gl_contexts``),
    so the view's own context finds them compiled: pyqtgraph keeps each program at class
    level. On llvmpipe they were most of the view's first frame (34 ms, shown while a run
    opens); each step is a few milliseconds, for an event-loop turn of its own. Empty if
    contexts are not shared, or PyOpenGL or pyqtgraph.opengl cannot be imported (the
    view then compiles them itself, as before). The last step releases the context."""
    from PySide6.QtGui import QOffscreenSurface, QOpenGLContext

    share = QOpenGLContext.globalShareContext()
    if share is None or gl_unavailable_reason() is not None:
        return []
    try:
        import pyqtgraph.opengl as gl
        from pyqtgraph.opengl import shaders
    except Exception:  # noqa: BLE001 - no precompiling: the view compiles them itself
        return []
    ctx = QOpenGLContext()
    ctx.setShareContext(share)
    ctx.setFormat(share.format())
    surf = QOffscreenSurface()
    surf.setFormat(share.format())
    surf.create()
    if not ctx.create() or not surf.isValid():
        surf.destroy()
        return []

    def compile_with(fn):
        def step() -> None:
            if ctx.makeCurrent(surf):
                try:
                    fn(ctx)
                except Exception:
                    log.debug("compiling a 3D shader ahead of time failed", exc_info=True)
                finally:
                    ctx.doneCurrent()
        return step

    def shaded(c) -> None:  # the surface (GLSurfacePlotItem, shader="shaded")
        shaders.getShaderProgram("shaded").program(
            es2_compat=c.hasExtension(b"GL_ARB_ES2_compatibility"))

    def release() -> None:
        surf.destroy()
        ctx.deleteLater()

    def copy(c) -> None:  # the scrub's copy of the still scene (software renderers)
        if software_rendering():
            from lossview.gui.surface.gl_copy import program

            program()

    return [compile_with(lambda c: gl.GLLinePlotItem.getShaderProgram()),  # grid, lines
            compile_with(lambda c: gl.GLScatterPlotItem.getShaderProgram()),  # markers
            compile_with(shaded), compile_with(copy), release]

"""The OpenGL work done before a 3D view exists: the probe context (before the window
shows, without PyOpenGL) and the shader programs compiled ahead of the view's first
frame, which the view's own context must then draw with. In a fresh interpreter: the
programs are kept at class level by pyqtgraph, and another test may have compiled them.
"""

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, time
from lossview.gui.app import make_app, probe_gl
app = make_app()
probe_gl()
from lossview.gui.surface import gl_window
print("PYOPENGL_AFTER_PROBE", "OpenGL.GL" in sys.modules)
print("REASON", gl_window.probe_context())
print("RENDERER", repr(gl_window.gl_renderer()).replace(" ", "_"))
if gl_window.gl_unavailable_reason() is not None:
    sys.exit(0)
import numpy as np
import pyqtgraph.opengl as gl
from pyqtgraph.opengl import shaders
import os
import OpenGL.platform
print("PYOPENGL", os.environ.get("PYOPENGL_PLATFORM"), type(OpenGL.platform.PLATFORM).__name__)
steps = gl_window.shader_warmers()
for s in steps:
    s()
progs = [gl.GLLinePlotItem._shaderProgram, gl.GLScatterPlotItem._shaderProgram,
         shaders.getShaderProgram("shaded").prog]
from lossview.gui.surface import gl_copy
print("STEPS", len(steps), "COMPILED", all(p is not None and p != -1 for p in progs),
      "COPY_WARMED", len(gl_copy._PROGRAMS), "SOFTWARE", gl_window.software_rendering())

# a 3D view of its own, drawing with those programs: a thick red line across it
from PySide6.QtWidgets import QWidget
view = gl_window.window_class()()
view.setCameraPosition(distance=5, elevation=90, azimuth=0)
view.opts["bgcolor"] = (0, 0, 0, 1)
line = gl.GLLinePlotItem(pos=np.array([[-3, 0, 0], [3, 0, 0]], float), color=(1, 0, 0, 1),
                         width=8, antialias=False)
view.addItem(line)
box = QWidget.createWindowContainer(view)
box.resize(200, 200)
box.show()
t = time.monotonic()
while not view.isExposed() and time.monotonic() - t < 10:
    app.processEvents(); time.sleep(0.01)
img = view.grabFramebuffer()
red = sum(1 for x in range(0, img.width(), 2) for y in range(0, img.height(), 2)
          if img.pixelColor(x, y).red() > 200 and img.pixelColor(x, y).green() < 60)
same = gl.GLLinePlotItem._shaderProgram is progs[0]
print("RED", red, "SAME_PROGRAM", same)
# the line as the still part, copied back each frame under a moving marker: the copy's
# program is the one compiled on the throw-away context
dot = gl.GLScatterPlotItem(pos=np.array([[0, 2, 0]], float), size=6, color=(0, 0, 1, 1))
view.addItem(dot)
view.set_moving_items((dot,))
view.update()
t = time.monotonic()
while not view.copying and time.monotonic() - t < 10:  # prepared in quiet moments
    app.processEvents(); time.sleep(0.01)
dot.setData(pos=np.array([[0, -2, 0]], float))  # only the moving item changed
t = time.monotonic()
while time.monotonic() - t < 0.3:
    app.processEvents(); time.sleep(0.01)
img = view.grabFramebuffer()
red = sum(1 for x in range(0, img.width(), 2) for y in range(0, img.height(), 2)
          if img.pixelColor(x, y).red() > 200 and img.pixelColor(x, y).green() < 60)
print("COPIED_RED", red, "COPY_PROGRAMS", len(gl_copy._PROGRAMS), "COPYING", view.copying)
# the container owns the GL window in C++ (PySide thinks Python does): delete it first,
# or ~QApplication reaches the deleted window (see tests/gui/conftest.py)
import shiboken6
box.close()
shiboken6.delete(box)
del view, box
app.processEvents()
"""


def run_script(**env):
    # without the PYOPENGL_PLATFORM that an earlier test's probe set in this process
    # (the app sets it for itself; a child would inherit it)
    base = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    return subprocess.run([sys.executable, "-c", SCRIPT], env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_the_probe_needs_no_pyopengl_and_the_warmed_programs_draw_in_a_view():
    out = run_script()
    assert out.returncode == 0, out.stderr[-2000:]
    words = out.stdout.split()
    # the probe (made before the window shows) does not import PyOpenGL on the GUI thread
    assert words[words.index("PYOPENGL_AFTER_PROBE") + 1] == "False"
    reason = out.stdout.split("REASON ", 1)[1].split("\n", 1)[0]
    if reason != "None":
        pytest.skip(f"no OpenGL context here: {reason}")
    assert words[words.index("RENDERER") + 1] not in ("''", '""')
    # four programs (the scrub's copy only where the renderer is a software one, the
    # only place it is used), then the release
    assert words[words.index("STEPS") + 1] == "5"
    software = words[words.index("SOFTWARE") + 1] == "True"
    assert words[words.index("COPY_WARMED") + 1] == ("1" if software else "0")
    assert words[words.index("COMPILED") + 1] == "True"
    # the view drew with the program compiled on the throw-away context (shared), and
    # did not compile its own
    assert int(words[words.index("RED") + 1]) > 100
    assert words[words.index("SAME_PROGRAM") + 1] == "True"
    # the still scene drawn into the cache and copied into the window looks the same
    assert int(words[words.index("COPIED_RED") + 1]) > 100
    assert words[words.index("COPY_PROGRAMS") + 1] == "1"
    assert words[words.index("COPYING") + 1] == "True"


def test_pyopengl_follows_qt_onto_egl():
    """Where Qt draws with EGL (an X server without GLX; forced here with Qt's own
    switch), PyOpenGL is told to look there too: it guessed GLX from the session, and
    every item of the 3D view failed to draw."""
    out = run_script(QT_XCB_GL_INTEGRATION="xcb_egl")
    assert out.returncode == 0, out.stderr[-2000:]
    reason = out.stdout.split("REASON ", 1)[1].split("\n", 1)[0]
    if reason != "None":
        pytest.skip(f"no EGL context here: {reason}")
    words = out.stdout.split()
    assert words[words.index("PYOPENGL") + 1: words.index("PYOPENGL") + 3] == ["egl",
                                                                              "EGLPlatform"]
    assert "Error while drawing" not in out.stderr
    assert int(words[words.index("RED") + 1]) > 100  # the view drew through EGL

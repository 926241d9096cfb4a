"""Drawing a texture over the whole viewport, pixel for pixel: how the 3D view puts its
cached still scene back in the window (see ``gl_window.window_class``).

Why a shader of our own and not ``glBlitFramebuffer``: Mesa flips every copy between a
window and a framebuffer object, and on llvmpipe that copy compiled a blit shader on first
use in every process (28-38 ms of the GUI thread, not kept by the disk shader cache).
This program is an ordinary GLSL one: compiled ahead of time on a shared context
(``gl_window.shader_warmers``) and its machine code kept by the disk cache, its first draw
took ~7 ms, later ones ~1.5 ms (measured on llvmpipe, 800 x 600).

Imports PyOpenGL: only called where a GL context is current.
"""

from __future__ import annotations

import numpy as np

_VERTEX = """#version 120
attribute vec2 corner;
varying vec2 uv;
void main() {
    uv = 0.5 * (corner + 1.0);
    gl_Position = vec4(corner, 0.0, 1.0);
}
"""
_FRAGMENT = """#version 120
uniform sampler2D still;
varying vec2 uv;
void main() {
    gl_FragColor = vec4(texture2D(still, uv).rgb, 1.0);
}
"""
_CORNERS = np.array([-1, -1, 1, -1, -1, 1, 1, 1], dtype=np.float32)
#: linked program and its locations, by share group (programs are shared within one)
_PROGRAMS: dict[int, tuple[int, int, int]] = {}


def program() -> tuple[int, int, int]:
    """``(program, corner attribute, sampler uniform)`` for the current context's share
    group, compiled on first use."""
    import shiboken6
    from OpenGL import GL
    from OpenGL.GL import shaders
    from PySide6.QtGui import QOpenGLContext

    ctx = QOpenGLContext.currentContext()
    # the group's C++ address: PySide may wrap one group in a new Python object each
    # time (a new id), and a freed wrapper's id is reused by an unrelated one
    key = shiboken6.getCppPointer(ctx.shareGroup())[0] if ctx is not None else 0
    found = _PROGRAMS.get(key)
    if found is not None and not GL.glIsProgram(found[0]):
        found = None  # a group at a freed group's address: compile again
    if found is None:
        prog = shaders.compileProgram(shaders.compileShader(_VERTEX, GL.GL_VERTEX_SHADER),
                                      shaders.compileShader(_FRAGMENT, GL.GL_FRAGMENT_SHADER),
                                      validate=False)
        found = _PROGRAMS[key] = (int(prog), GL.glGetAttribLocation(prog, "corner"),
                                  GL.glGetUniformLocation(prog, "still"))
    return found


def draw_texture(texture: int) -> None:
    """Cover the current viewport with ``texture`` (the viewport's size, sampled at texel
    centres: an exact copy), opaque, ignoring depth; GL state is left as it was."""
    from OpenGL import GL

    prog, corner, still = program()
    GL.glPushAttrib(GL.GL_ENABLE_BIT | GL.GL_TEXTURE_BIT | GL.GL_COLOR_BUFFER_BIT)
    try:
        for cap in (GL.GL_BLEND, GL.GL_DEPTH_TEST, GL.GL_CULL_FACE, GL.GL_SCISSOR_TEST):
            GL.glDisable(cap)
        GL.glUseProgram(prog)
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
        GL.glUniform1i(still, 0)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)  # the corners come from client memory
        GL.glEnableVertexAttribArray(corner)
        GL.glVertexAttribPointer(corner, 2, GL.GL_FLOAT, False, 0, _CORNERS)
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        GL.glDisableVertexAttribArray(corner)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    finally:
        GL.glUseProgram(0)
        GL.glPopAttrib()

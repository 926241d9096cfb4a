"""The loss-surface panel: toolbar, contour map, honesty strip, caption and the OpenGL 3D view."""

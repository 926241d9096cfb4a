"""Loss surfaces and curvature: exact batched grid evaluation, planes through a run's
trajectory, flat basins, Hessian eigenvalues and the 2/lr stability limit (docs/surface.md).

No Qt here. Long computations are generators (yield progress, return the result) so the GUI
can run them in a worker thread and cancel them with ``gen.close()``.
"""

#: Snapshots at which sharpness is measured by default, in the app and in ``analyze``
#: (evenly spaced over the finite prefix, its last always included). Kept here, free of
#: torch, so that the GUI reads it without importing torch.
SHARPNESS_POINTS = 12

"""The 2D panels of the timeline: loss, weight trajectory (PCA), diagnostics."""

"""Runs that are still training, for the tests of the views that follow one."""

from __future__ import annotations

from lossview.gui.training.live import LiveRun


def as_live(run) -> LiveRun:
    """``run`` as a :class:`LiveRun` whose training has not ended: its snapshots and
    metrics appended as the trainer's events append them."""
    live = LiveRun(run.path, run.spec)
    for i, s in enumerate(run.snapshots):
        live.append_snapshot(s.step, run.params(i), epoch=s.epoch)
    for name, series in run.metrics.items():
        live.append_metrics(series.steps, **{name: series.values})
    live.publish()
    assert live.live
    return live

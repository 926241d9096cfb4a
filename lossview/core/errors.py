"""Errors that lossview reports to a person as one line (CLI: exit 2; GUI: a message)."""

from __future__ import annotations


class LossviewError(Exception):
    """An input lossview cannot use. ``str(err)`` is a complete one-line explanation."""


class NoCheckpointsError(LossviewError):
    """A path that exists but holds nothing lossview can read as snapshots."""


class InconsistentSnapshotsError(LossviewError):
    """Snapshots whose parameter names or shapes disagree with no clear majority."""

"""Readers for checkpoint folders, auto-detected, and the native writer.

``open_run(path)`` returns a :class:`~lossview.core.run.Run` for any supported layout,
or raises :class:`~lossview.core.errors.LossviewError` with a one-line reason.
"""

from __future__ import annotations

from pathlib import Path

from lossview.core.errors import LossviewError, NoCheckpointsError
from lossview.core.io.native import RunWriter, is_native_run, open_native
from lossview.core.run import Run

__all__ = ["RunWriter", "detect_format", "open_run"]


def detect_format(path: Path | str) -> str:
    """Name of the format at ``path`` (see docs/format.md), or raise LossviewError."""
    path = Path(path)
    if not path.exists():
        raise LossviewError(f"no such file or folder: {path}")
    if path.is_dir() and is_native_run(path):
        return "lossview"
    from lossview.core.io import foreign

    return foreign.detect(path)


def open_run(path: Path | str) -> Run:
    """Open a run folder (or a single checkpoint file) of any supported format."""
    path = Path(path).expanduser()
    fmt = detect_format(path)
    if fmt == "lossview":
        return open_native(path)
    from lossview.core.io import foreign

    run = foreign.open_foreign(path, fmt)
    if not run.snapshots:
        raise NoCheckpointsError(f"no readable checkpoints in {path}")
    return run

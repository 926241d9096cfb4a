"""Detection and opening of checkpoint folders written by other tools (placeholder)."""

from __future__ import annotations

from pathlib import Path

from lossview.core.errors import NoCheckpointsError
from lossview.core.run import Run


def detect(path: Path) -> str:
    raise NoCheckpointsError(f"no checkpoints lossview can read in {path}")


def open_foreign(path: Path, fmt: str) -> Run:
    raise NoCheckpointsError(f"no checkpoints lossview can read in {path}")

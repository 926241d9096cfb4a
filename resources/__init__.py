"""Files shipped with lossview: icons and the recorded demo run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """Absolute path of a shipped resource (``"demo"``, ``"lossview.svg"``...)."""
    return ROOT / name

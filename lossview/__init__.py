"""lossview: see what the optimizer does after the loss stops moving.

Public API (imported lazily, so ``import lossview`` stays quick and pulls in no torch/Qt):

- :func:`open_run` - open any supported checkpoint folder as a :class:`Run`.
- :class:`Recorder` - record your own training loop in lossview's run format.
- :func:`loss_surface`, :func:`sharpness` - exact batched loss surfaces and curvature.
"""

from __future__ import annotations

import importlib
from typing import Any

from lossview._version import __version__

_LAZY = {
    "open_run": "lossview.core.io",
    "Run": "lossview.core.run",
    "RunWriter": "lossview.core.io",
    "Recorder": "lossview.core.train.recorder",
    "loss_surface": "lossview.core.surface.grid",
    "sharpness": "lossview.core.surface.curvature",
    "analyze": "lossview.core.analysis.report",
}

__all__ = ["__version__", *_LAZY]  # noqa: PLE0604 (_LAZY: the lazily imported names)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'lossview' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

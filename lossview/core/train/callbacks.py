"""Framework callbacks, imported only when asked for (lightning / transformers are optional).

- ``LossviewCallback``: PyTorch Lightning (:mod:`lossview.core.train.lightning_callback`).
- ``LossviewHFCallback``: Hugging Face Trainer (:mod:`lossview.core.train.hf_callback`).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"LossviewCallback": "lossview.core.train.lightning_callback",
         "LossviewHFCallback": "lossview.core.train.hf_callback"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)

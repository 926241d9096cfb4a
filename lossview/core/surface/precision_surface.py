"""A run surface computed in a reduced precision, with its measured error against float32.

Torch-free, like :mod:`~lossview.core.surface.results` (the app unpickles it without
torch). The ``precision`` record travels in the ``.npz`` (``meta["precision"]``), so a
cached or written bf16/TF32 surface says what it is when read back::

    {"precision": "bf16", "reference": "float32", "subgrid": [5, 5],
     "max_abs_error": ..., "max_rel_error": ..., "points": 25, "finite_mismatch": 0}

A float32 surface is a plain :class:`~lossview.core.surface.results.RunSurface`, saved
exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import numpy as np

from lossview.core.surface.results import RunSurface


@dataclass
class PrecisionSurface(RunSurface):
    """A :class:`RunSurface` whose grid (and snapshots' surface loss) were evaluated in
    ``precision["precision"]``; ``true_loss`` is float32 (the reference)."""

    precision: dict | None = None

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = super().to_arrays()
        meta = json.loads(str(arrays["meta"]))
        meta["precision"] = self.precision
        arrays["meta"] = np.array(json.dumps(meta))
        return arrays

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> RunSurface:
        """A :class:`PrecisionSurface` when ``a`` records a precision, else a RunSurface."""
        base = RunSurface.from_arrays(a)
        info = json.loads(str(a["meta"])).get("precision")
        if not info:
            return base
        return cls(**{f.name: getattr(base, f.name) for f in fields(RunSurface)}, precision=info)


def precision_of(s: RunSurface) -> dict | None:
    """The precision record of ``s`` (None: float32)."""
    return getattr(s, "precision", None)

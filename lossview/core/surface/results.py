"""What a loss-surface computation returns: plain numpy data, no torch.

Kept apart from :mod:`~lossview.core.surface.runsurface` (which needs torch) so that a
process receiving a surface from a worker process (the desktop app) unpickles it without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunSurface:
    """A surface on a plane through a run, with the trajectory placed on it.

    ``loss[i, j]`` is the loss at ``origin + alphas[i] d1 + betas[j] d2`` (NaN where not yet
    evaluated); a line has ``betas == [0.]``. ``coords[t]`` is snapshot t on the plane,
    ``off_plane[t]`` its distance from it, ``true_loss[t]`` its own loss and
    ``surface_loss[t]`` the loss at its projection.
    """

    alphas: np.ndarray
    betas: np.ndarray
    loss: np.ndarray
    coords: np.ndarray
    off_plane: np.ndarray
    true_loss: np.ndarray
    surface_loss: np.ndarray
    basin_mask: np.ndarray
    basin: dict
    plane: str
    explained: tuple | None
    kind: str = "pca"
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    bn_mode: str = "eval"
    evaluation: str = ""
    source: str = ""
    cached: bool = False

    def to_arrays(self) -> dict[str, np.ndarray]:
        import json

        return {"alphas": self.alphas, "betas": self.betas, "loss": self.loss,
                "coords": self.coords, "off_plane": self.off_plane, "true_loss": self.true_loss,
                "surface_loss": self.surface_loss, "basin_mask": self.basin_mask,
                "steps": self.steps,
                "meta": np.array(json.dumps({
                    "basin": self.basin, "plane": self.plane, "kind": self.kind,
                    "explained": None if self.explained is None else list(self.explained),
                    "bn_mode": self.bn_mode, "evaluation": self.evaluation,
                    "source": self.source}))}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> RunSurface:
        import json

        meta = json.loads(str(a["meta"]))
        ex = meta.get("explained")
        return cls(a["alphas"], a["betas"], a["loss"], a["coords"], a["off_plane"],
                   a["true_loss"], a["surface_loss"], a["basin_mask"].astype(bool),
                   meta["basin"], meta["plane"], None if ex is None else tuple(ex),
                   meta.get("kind", ""), a["steps"], meta.get("bn_mode", "eval"),
                   meta.get("evaluation", ""), meta.get("source", ""))


@dataclass
class SurfaceProgress:
    fraction: float
    partial: RunSurface

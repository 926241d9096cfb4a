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

    Diverged runs: the plane spans the finite snapshots only; ``skipped`` lists the
    snapshots left out (``{"step", "reason"}``; their coords and surface loss are NaN).
    ``nonfinite[i, j]`` marks grid points where the loss itself is inf/NaN (overflowed),
    set on the final result. ``suspicious`` says why the numbers should not be trusted
    (a constant surface), ``loss_note`` how the loss was chosen when the model file did
    not say.
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
    nonfinite: np.ndarray | None = None
    skipped: list = field(default_factory=list)
    suspicious: str | None = None
    loss_note: str | None = None

    @property
    def n_nonfinite(self) -> int:
        """Grid points whose loss is inf/NaN (0 until the grid is complete)."""
        return 0 if self.nonfinite is None else int(np.count_nonzero(self.nonfinite))

    def nonfinite_text(self) -> str | None:
        """``"N of M grid points non-finite (loss overflowed)"``, or None when there are none."""
        n = self.n_nonfinite
        return f"{n} of {self.loss.size} grid points non-finite (loss overflowed)" if n else None

    def skipped_text(self) -> str | None:
        """``"left out K of T snapshots from step S on (why)"``, or None when none was."""
        if not self.skipped:
            return None
        first = self.skipped[0]
        return (f"left out {len(self.skipped)} of {len(self.steps)} snapshots from step "
                f"{first['step']} on ({first['reason']})")

    def to_arrays(self) -> dict[str, np.ndarray]:
        import json

        nonfinite = ~np.isfinite(self.loss) if self.nonfinite is None else self.nonfinite
        return {"alphas": self.alphas, "betas": self.betas, "loss": self.loss,
                "coords": self.coords, "off_plane": self.off_plane, "true_loss": self.true_loss,
                "surface_loss": self.surface_loss, "basin_mask": self.basin_mask,
                "steps": self.steps, "nonfinite": nonfinite,
                "meta": np.array(json.dumps({
                    "basin": self.basin, "plane": self.plane, "kind": self.kind,
                    "explained": None if self.explained is None else list(self.explained),
                    "bn_mode": self.bn_mode, "evaluation": self.evaluation,
                    "source": self.source, "skipped": self.skipped,
                    "n_nonfinite": int(np.count_nonzero(nonfinite)),
                    "suspicious": self.suspicious, "loss_note": self.loss_note}))}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> RunSurface:
        import json

        meta = json.loads(str(a["meta"]))
        ex = meta.get("explained")
        nonfinite = (np.asarray(a["nonfinite"], bool) if "nonfinite" in a
                     else ~np.isfinite(a["loss"]))
        return cls(a["alphas"], a["betas"], a["loss"], a["coords"], a["off_plane"],
                   a["true_loss"], a["surface_loss"], a["basin_mask"].astype(bool),
                   meta["basin"], meta["plane"], None if ex is None else tuple(ex),
                   meta.get("kind", ""), a["steps"], meta.get("bn_mode", "eval"),
                   meta.get("evaluation", ""), meta.get("source", ""), False, nonfinite,
                   list(meta.get("skipped", [])), meta.get("suspicious"), meta.get("loss_note"))


@dataclass
class SurfaceProgress:
    fraction: float
    partial: RunSurface

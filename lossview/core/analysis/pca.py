"""PCA of the weight trajectory from the centred Gram matrix, and its random-walk baseline.

With ``Y`` the centred T x D snapshot matrix and ``G = Y Y^T = U diag(lambda) U^T``, the
PCA of the trajectory is ``Y = U S V^T`` with ``S = sqrt(lambda)``: explained-variance
ratios ``lambda_k / sum(lambda)``, snapshot coordinates ``U S`` and unit directions
``v_k = Y^T u_k / s_k`` (computed on demand by :func:`pca_directions`, one streaming pass).

Random-walk baseline (Antognini & Sohl-Dickstein 2018): for snapshots at steps ``s_i`` of
a random walk with i.i.d. steps in high dimension, ``E[G]`` is proportional to ``C K C``
with ``K_ij = min(s_i, s_j) - s_0``. Its eigenvalues give the expected ratios (for evenly
spaced snapshots exactly ``6 / ((T^2 - 1)(2 - 2 cos(k pi / T)))``) and its eigenvectors the
expected time profiles (``cos(pi k (t - 1/2) / T)``). Computing the baseline from the real
snapshot steps keeps it honest for log-spaced checkpoints. See docs/analysis.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lossview.core.analysis.gram import Gram, centred_gram, double_centre, subsample
from lossview.core.run import Run

#: Number of leading components compared with the random-walk baseline.
RW_COMPONENTS = 5
#: Fewest snapshots for which the baseline comparison means anything.
RW_MIN_SNAPSHOTS = 5


@dataclass
class PCAResult:
    """PCA of the snapshots ``indices`` (at ``steps``).

    ``coords[i, k]`` is snapshot i on component k (mean at 0; sign chosen so that the last
    snapshot lies on the positive side of the first). ``eigvecs`` are the matching unit
    time profiles (columns of U).
    """

    indices: np.ndarray
    steps: np.ndarray
    eigenvalues: np.ndarray  # all T, descending, >= 0
    explained_variance_ratio: np.ndarray  # first k
    coords: np.ndarray  # T x k
    eigvecs: np.ndarray  # T x k
    baseline: dict = field(default_factory=dict)

    @property
    def singular_values(self) -> np.ndarray:
        return np.sqrt(self.eigenvalues[: self.coords.shape[1]])

    @property
    def random_walk_similarity(self) -> float | None:
        return self.baseline.get("similarity")

    def to_json(self, n_coords: int = 2, n_more: int = 5) -> dict:
        """JSON form; ``coords`` holds PC1 and PC2 (DESIGN.md), ``coords_k`` the first
        ``n_more`` components for views that let the user choose."""
        return {
            "indices": self.indices.tolist(),
            "steps": self.steps.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(),
            "random_walk_similarity": self.baseline.get("similarity"),
            "random_walk": {k: v for k, v in self.baseline.items() if k != "similarity"},
            "coords": self.coords[:, :n_coords].tolist(),
            "coords_k": self.coords[:, :n_more].tolist(),
        }


def _eigh_desc(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, u = np.linalg.eigh(g)
    order = np.argsort(lam)[::-1]
    return np.maximum(lam[order], 0.0), u[:, order]


def random_walk_baseline(steps: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Expected explained-variance ratios (all T) and time profiles (T x T columns, unit
    norm) of a high-dimensional random walk observed at ``steps``."""
    s = np.asarray(steps, dtype=np.float64)
    s = s - s[0]
    k = np.minimum(s[:, None], s[None, :])
    lam, u = _eigh_desc(double_centre(k))
    tot = lam.sum()
    return (lam / tot if tot > 0 else lam), u


def random_walk_ratios_even(t: int) -> np.ndarray:
    """Closed form for ``t`` evenly spaced points: ``6 / ((t^2-1)(2-2cos(k pi/t)))``."""
    k = np.arange(1, t)
    return 6.0 / ((t * t - 1.0) * (2.0 - 2.0 * np.cos(k * np.pi / t)))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return float(a @ b / den) if den > 0 else 0.0


def compare_with_random_walk(ratios: np.ndarray, coords: np.ndarray,
                             steps: Sequence[int]) -> dict:
    """Spectrum and profile agreement with a random walk at the same steps.

    With baseline ratios ``r0_k``, weights ``w_k = r0_k / sum_j r0_j`` over the first
    ``K = min(5, T - 1)`` components::

        spectrum   = exp(-sum_k w_k |ln(r_k / r0_k)|)
        profiles   = sum_k w_k |corr(coords_k, profile0_k)|
        similarity = spectrum * profiles            (in [0, 1])
    """
    t = len(steps)
    if t < RW_MIN_SNAPSHOTS:
        return {"similarity": None,
                "reason": f"needs at least {RW_MIN_SNAPSHOTS} snapshots, the run has {t}"}
    r0, prof = random_walk_baseline(steps)
    kk = min(RW_COMPONENTS, t - 1, coords.shape[1], len(ratios))
    w = r0[:kk] / r0[:kk].sum()
    r = np.maximum(np.asarray(ratios[:kk], dtype=float), 1e-12)
    spectrum = float(np.exp(-np.sum(w * np.abs(np.log(r / r0[:kk])))))
    corrs = np.array([abs(_corr(coords[:, j], prof[:, j])) for j in range(kk)])
    profiles = float(np.sum(w * corrs))
    return {
        "similarity": spectrum * profiles,
        "spectrum_agreement": spectrum,
        "profile_agreement": profiles,
        "baseline_ratio": r0[:kk].tolist(),
        "profile_correlation": corrs.tolist(),
    }


def pca_from_gram(gram: Gram, k: int = 10) -> PCAResult:
    """PCA of the snapshots behind ``gram`` (first ``k`` components)."""
    t = len(gram)
    lam, u = _eigh_desc(gram.gram) if t else (np.zeros(0), np.zeros((0, 0)))
    k = max(min(k, t - 1), 0)
    tot = lam.sum()
    ratios = lam[:k] / tot if tot > 0 else np.zeros(k)
    u = u[:, :k]
    flip = np.where(u[-1] < 0, -1.0, 1.0) if t else np.ones(k)
    u = u * flip
    coords = u * np.sqrt(lam[:k])
    res = PCAResult(gram.indices, gram.steps, lam, ratios, coords, u)
    if tot > 0:
        res.baseline = compare_with_random_walk(ratios, coords, gram.steps)
    else:
        res.baseline = {"similarity": None, "reason": "the weights did not move"}
    return res


def pca(run: Run, k: int = 10, indices: Sequence[int] | None = None,
        max_snapshots: int | None = 2000) -> PCAResult:
    """Exact PCA of the run's snapshots (evenly subsampled to ``max_snapshots``)."""
    idx = subsample(len(run), max_snapshots) if indices is None else indices
    return pca_from_gram(centred_gram(run, idx), k)


def pca_directions(run: Run, k: int = 2, indices: Sequence[int] | None = None,
                   center: str | int = "mean", max_snapshots: int | None = 2000,
                   gram: Gram | None = None, return_origin: bool = False):
    """Unit principal directions of the trajectory as flat float64 vectors, shape (k, D).

    Parameters
    ----------
    center : ``"mean"`` (ordinary PCA, origin = mean of the snapshots), ``"first"``,
        ``"last"`` or a position in ``indices``: uncentred PCA of ``w_i - w_ref``, i.e. the
        plane through that snapshot that best fits the trajectory.
    gram : a centred Gram matrix of the same snapshots, to skip recomputing it.
    return_origin : also return the origin of the plane (mean or reference snapshot).

    ``v_k = sum_i u_ik (w_i - w_ref) / s_k`` is accumulated in one pass over the snapshots,
    holding ``k + 2`` vectors. Signs follow :func:`pca_from_gram`.
    """
    if gram is None:
        idx = subsample(len(run), max_snapshots) if indices is None else indices
        gram = centred_gram(run, idx)
    t = len(gram)
    if t < 2:
        raise ValueError("principal directions need at least two finite snapshots")
    if center == "mean":
        ref, g = 0, gram.gram
    else:
        ref = {"first": 0, "last": t - 1}.get(center, center)  # type: ignore[arg-type]
        ref = int(ref) % t
        g = gram.about(ref)
    lam, u = _eigh_desc(g)
    k = min(k, t - 1)
    u = u[:, :k] * np.where(u[-1, :k] < 0, -1.0, 1.0)
    s = np.sqrt(lam[:k])
    if np.any(s <= 0):
        raise ValueError("the trajectory spans fewer than k directions")
    w_ref = run.vector(int(gram.indices[ref]))
    v = np.zeros((k, run.n_params))
    mean = np.zeros(run.n_params) if return_origin else None
    for row, (_, w) in enumerate(run.iter_vectors(gram.indices.tolist())):
        d = w - w_ref
        for j in range(k):
            v[j] += (u[row, j] / s[j]) * d
        if mean is not None:
            mean += d
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    if not return_origin:
        return v
    origin = w_ref + mean / t if center == "mean" else w_ref
    return v, origin

"""Directions in weight space: Gaussian draws and Li et al. (2018) filter normalisation.

Filter normalisation follows the authors' code (tomgoldstein/loss-landscape,
``net_plotter.py``): for every parameter with ``dim() > 1`` each slice along dim 0 (an
output filter of a convolution, the incoming weights of one neuron of a Linear layer) is
rescaled to the norm of the matching slice of the weights, ``d_i *= |w_i| / (|d_i| + 1e-10)``.
Parameters with ``dim() <= 1`` (biases, normalisation scales and shifts) are zeroed
(``--xignore biasbn``, the setting of the paper's figures) unless ``include_biasbn`` is
set, in which case the direction equals the weights themselves, as in that code.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from lossview.core.errors import LossviewError

Params = dict[str, torch.Tensor]

NORMALIZATIONS = ("filter", "layer", "none")


def normalize_direction(d: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor],
                        normalization: str | None = "filter",
                        include_biasbn: bool = False) -> Params:
    """Rescale the direction ``d`` to the scale of ``weights``, parameter by parameter.

    Parameters
    ----------
    d, weights : name -> tensor with identical shapes.
    normalization : ``"filter"`` (per output filter/row, Li et al.), ``"layer"`` (whole
        tensor norm matched to the weight's), or ``"none"``/None (left as drawn).
    include_biasbn : for ``dim() <= 1`` parameters, use the weights themselves as the
        direction (Li et al.'s default) instead of zero (their ``--xignore biasbn``).
        Ignored when ``normalization`` is ``"none"``.
    """
    norm = "none" if normalization is None else str(normalization)
    if norm not in NORMALIZATIONS:
        raise LossviewError(f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}")
    out: Params = {}
    for name, di in d.items():
        w = weights[name]
        if di.shape != w.shape:
            raise LossviewError(f"direction {name!r} has shape {tuple(di.shape)}, "
                                f"weights {tuple(w.shape)}")
        if norm == "none":
            out[name] = di.clone()
        elif di.dim() <= 1:
            out[name] = w.detach().clone() if include_biasbn else torch.zeros_like(di)
        elif norm == "filter":
            dims = tuple(range(1, di.dim()))
            dn = torch.linalg.vector_norm(di, dim=dims, keepdim=True)
            wn = torch.linalg.vector_norm(w, dim=dims, keepdim=True)
            out[name] = di * (wn / (dn + 1e-10))
        else:  # layer
            out[name] = di * (torch.linalg.vector_norm(w) / (torch.linalg.vector_norm(di) + 1e-10))
    return out


def random_direction(weights: Mapping[str, torch.Tensor], generator: torch.Generator,
                     normalization: str | None = "filter", include_biasbn: bool = False) -> Params:
    """One Gaussian direction with the shapes of ``weights``, normalised (see module doc).

    Drawn parameter by parameter in the order of ``weights`` (``torch.randn(w.size())``
    as in Li et al.'s code), in float64 and cast to each weight's dtype, so the draw for
    a given seed does not depend on the model's precision.
    """
    raw = {n: torch.randn(tuple(w.shape), generator=generator, dtype=torch.float64).to(w.dtype)
           for n, w in weights.items()}
    return normalize_direction(raw, weights, normalization, include_biasbn)


def random_plane(weights: Mapping[str, torch.Tensor], seed: int = 0,
                 normalization: str | None = "filter",
                 include_biasbn: bool = False) -> tuple[Params, Params]:
    """Two independent normalised random directions (d1 drawn first, then d2)."""
    g = torch.Generator().manual_seed(int(seed))
    d1 = random_direction(weights, g, normalization, include_biasbn)
    d2 = random_direction(weights, g, normalization, include_biasbn)
    return d1, d2


def dict_to_flat(d: Mapping[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    return torch.cat([d[n].reshape(-1) for n in names])


def flat_to_dict(v: torch.Tensor, names: list[str], shapes: Mapping[str, tuple[int, ...]]) -> Params:
    out: Params = {}
    i = 0
    for n in names:
        k = 1
        for s in shapes[n]:
            k *= int(s)
        out[n] = v[i:i + k].reshape(shapes[n])
        i += k
    if i != v.numel():
        raise ValueError(f"flat vector has {v.numel()} entries, shapes need {i}")
    return out

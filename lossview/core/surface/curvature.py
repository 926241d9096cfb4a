"""Curvature of the loss: Hessian-vector products, top eigenvalues, Hutchinson trace.

Hessian-vector products: for data up to ``graph_cache_samples`` samples the gradient's
graph is built once per batch and each ``H v`` is one backward pass through it (double
backward, as PyHessian); for more data, :mod:`torch.func` forward-over-reverse (``jvp`` of
``grad``, no graph kept), with reverse-over-reverse as a fallback for operations without
forward-mode support.
The top eigenvalues come from Lanczos on HVPs (own loop with full reorthogonalisation and
an exact residual stopping rule, so it stops at the first sufficient step), ARPACK
(:func:`scipy.sparse.linalg.eigsh` on a ``LinearOperator``, as in Cohen et al.'s
edge-of-stability code) or power iteration. The model is in eval mode by default (BatchNorm uses its running statistics,
like PyHessian); ``train=True`` uses batch statistics. The loss is the mean over all of
``data`` (full batch). Parameters of the model are never modified. A product that is not
finite (inf/NaN weights, an overflowing loss) raises :class:`NonFiniteCurvature` (a
one-line :class:`~lossview.core.errors.LossviewError`) instead of failing inside an
eigensolver.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vjp

from lossview.core.errors import LossviewError
from lossview.core.surface.directions import flat_to_dict
from lossview.core.surface.evaluate import as_batches, batch_size, eval_mode


class NonFiniteCurvature(LossviewError):
    """A Hessian-vector product came out inf/NaN: no eigenvalue exists to report."""


@dataclass
class HessianOperator:
    """``H v`` for the full-data mean loss at ``params`` (flat vectors in model dtype)."""

    model: nn.Module
    loss_fn: Callable
    data: Any
    params: Mapping[str, torch.Tensor] | None = None
    buffers: Mapping[str, torch.Tensor] | None = None
    train: bool = False
    #: Up to this many samples, each batch's gradient graph is kept between products.
    graph_cache_samples: int = 65536

    def __post_init__(self) -> None:
        self.batches = as_batches(self.data)
        self.sizes = [batch_size(x) for x, _ in self.batches]
        own = dict(self.model.named_parameters())
        self.names = list(own)
        self.shapes = {n: tuple(p.shape) for n, p in own.items()}
        src = own if self.params is None else self.params
        self.dtype = next(iter(own.values())).dtype
        self.theta = torch.cat([torch.as_tensor(src[n]).detach().to(self.dtype).reshape(-1)
                                for n in self.names])
        self.bufs = {n: b.detach() for n, b in self.model.named_buffers()}
        if self.buffers:
            self.bufs.update({n: torch.as_tensor(v).to(self.bufs[n].dtype)
                              for n, v in self.buffers.items() if n in self.bufs})
        self.n = self.theta.numel()
        self.mode = "forward-over-reverse"
        self.calls = 0
        self._graphs: list | None = None

    def _loss(self, theta: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        p = flat_to_dict(theta, self.names, self.shapes)
        return self.loss_fn(functional_call(self.model, (p, self.bufs), (x,)), y)

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Full-data mean loss and gradient at ``params``."""
        total, g = 0.0, torch.zeros_like(self.theta)
        with eval_mode(self.model, self.train):
            for (x, y), k in zip(self.batches, self.sizes):
                th = self.theta.detach().requires_grad_(True)
                loss = self._loss(th, x, y)
                (gb,) = torch.autograd.grad(loss, th)
                total += float(loss.detach()) * k
                g += gb * k
        s = float(sum(self.sizes))
        return total / s, g / s

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` (``v`` flat, any float dtype; result in the model's dtype)."""
        v = torch.as_tensor(v).to(self.dtype).reshape(-1)
        out = torch.zeros_like(self.theta)
        self.calls += 1
        if self._graphs is None and sum(self.sizes) <= self.graph_cache_samples:
            self._build_graphs()
        if self._graphs:
            for (th, g), k in zip(self._graphs, self.sizes):
                (hv,) = torch.autograd.grad(g, th, v, retain_graph=True)
                out += hv * k
        else:
            with eval_mode(self.model, self.train):
                for (x, y), k in zip(self.batches, self.sizes):
                    out += self._hvp(v, x, y) * k
        out /= float(sum(self.sizes))
        if not bool(torch.isfinite(out).all()):
            dtype = str(self.dtype).replace("torch.", "")
            raise NonFiniteCurvature("a Hessian-vector product is not finite at these weights "
                                     f"({dtype}): they or the loss overflowed")
        return out

    def _build_graphs(self) -> None:
        """Keep each batch's gradient graph (double backward, as PyHessian does): every
        later ``H v`` is one backward pass through it, no forward pass."""
        graphs = []
        try:
            with eval_mode(self.model, self.train):
                for x, y in self.batches:
                    th = self.theta.detach().clone().requires_grad_(True)
                    (g,) = torch.autograd.grad(self._loss(th, x, y), th, create_graph=True)
                    if not g.requires_grad:  # loss linear in the weights: H = 0
                        g = g + 0.0 * th
                    graphs.append((th, g))
        except RuntimeError:
            graphs = []
        self._graphs = graphs

    def _hvp(self, v: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        f = lambda th: self._loss(th, x, y)  # noqa: E731
        if self.mode == "forward-over-reverse":
            try:
                return jvp(grad(f), (self.theta,), (v,))[1]
            except (NotImplementedError, RuntimeError):
                self.mode = "reverse-over-reverse"
        _, pullback = vjp(grad(f), self.theta)
        return pullback(v)[0]

    def dense(self) -> np.ndarray:
        """The full Hessian (n HVPs): only for small models and tests."""
        eye = torch.eye(self.n, dtype=self.dtype)
        h = torch.stack([self.matvec(e) for e in eye]).double().numpy()
        return (h + h.T) / 2

    def linear_operator(self):
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.n, self.n), dtype=np.float64,
                              matvec=lambda v: self.matvec(torch.from_numpy(np.ravel(v)))
                              .double().numpy())


def top_eigenvalues(op: HessianOperator, k: int = 1, method: str = "lanczos", tol: float = 1e-6,
                    maxiter: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest (algebraic) eigenvalues, descending, and their eigenvectors [n, k]."""
    k = int(k)
    if k < 1:
        raise LossviewError("k must be at least 1")
    if k >= op.n:
        w, v = np.linalg.eigh(op.dense())
        order = np.argsort(w)[::-1][:k]
        return w[order], v[:, order]
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(op.n)
    if method == "power":
        if k != 1:
            raise LossviewError("power iteration gives the top eigenvalue only; use method='lanczos'")
        lam, vec = power_iteration(op, v0, tol=tol, maxiter=maxiter or 1000)
        return np.array([lam]), vec[:, None]
    if method == "lanczos":
        return lanczos(op, k, v0, tol=tol, maxiter=maxiter or min(op.n, 300))
    if method != "arpack":
        raise LossviewError(f"method must be 'lanczos', 'arpack' or 'power', not {method!r}")
    from scipy.sparse.linalg import eigsh

    ncv = min(op.n, max(2 * k + 1, k + 8))
    w, v = eigsh(op.linear_operator(), k=k, which="LA", tol=tol, v0=v0, ncv=ncv,
                 maxiter=maxiter)
    order = np.argsort(w)[::-1]
    return w[order], v[:, order]


def lanczos(op: HessianOperator, k: int, v0: np.ndarray, tol: float = 1e-6,
            maxiter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Lanczos with full reorthogonalisation, stopped as soon as the top ``k`` Ritz pairs
    have residuals ``|H y - theta y| <= tol * |theta|``.

    The residual of a Ritz pair is ``beta_j |s_j|`` (last component of the tridiagonal
    eigenvector times the next off-diagonal), known without another product, so the
    iteration stops at the first step that achieves the accuracy asked for. The
    tridiagonal problem is solved by :func:`scipy.linalg.eigh_tridiagonal`.
    """
    from scipy.linalg import eigh_tridiagonal

    # Vectors stay in torch (float64): mixing numpy's BLAS threads with torch's on a
    # small machine makes both spin against each other.
    n = op.n
    m_max = min(maxiter, n)
    v = torch.as_tensor(v0, dtype=torch.float64)
    qs = [v / v.norm()]
    alpha: list[float] = []
    beta: list[float] = []
    theta = s = None
    for j in range(m_max):
        w = op.matvec(qs[j]).double()
        a = float(qs[j] @ w)
        alpha.append(a)
        w -= a * qs[j]
        if j > 0:
            w -= beta[-1] * qs[j - 1]
        basis = torch.stack(qs)
        w -= basis.T @ (basis @ w)  # full reorthogonalisation (twice is enough)
        w -= basis.T @ (basis @ w)
        b = float(w.norm())
        if j:
            theta, s = eigh_tridiagonal(np.array(alpha), np.array(beta))
        else:
            theta, s = np.array(alpha), np.ones((1, 1))
        order = np.argsort(theta)[::-1][:k]
        if j + 1 >= k:
            res = b * np.abs(s[-1, order])
            if np.all(res <= tol * np.maximum(np.abs(theta[order]), 1e-30)) or b < 1e-12 * max(
                    abs(theta[order[0]]), 1e-30):
                break
        qs.append(w / b)
        beta.append(b)
    order = np.argsort(theta)[::-1][:k]
    m = len(alpha)
    vecs = (torch.stack(qs[:m]).T @ torch.from_numpy(np.ascontiguousarray(s[:, order]))).numpy()
    return theta[order], vecs


def power_iteration(op: HessianOperator, v0: np.ndarray, tol: float = 1e-6,
                    maxiter: int = 1000) -> tuple[float, np.ndarray]:
    """Largest-magnitude eigenvalue by power iteration (stops when the Rayleigh quotient
    changes by less than ``tol`` relative, PyHessian's rule)."""
    v = torch.as_tensor(v0, dtype=torch.float64)
    v = v / v.norm()
    lam = None
    for _ in range(maxiter):
        hv = op.matvec(v).double()
        new = float(v @ hv)
        v = hv / (hv.norm() + 1e-300)
        if lam is not None and abs(new - lam) / (abs(lam) + 1e-6) < tol:
            lam = new
            break
        lam = new
    return float(lam), v.numpy()


def sharpness(model: nn.Module, loss_fn: Callable, data: Any, k: int = 1,
              method: str = "lanczos", tol: float = 1e-3, maxiter: int | None = None,
              params: Mapping[str, torch.Tensor] | None = None,
              buffers: Mapping[str, torch.Tensor] | None = None,
              train: bool = False, seed: int = 0) -> float | np.ndarray:
    """Largest Hessian eigenvalue of the mean loss over ``data`` (the "sharpness").

    Parameters
    ----------
    model, loss_fn, data : as for :func:`lossview.loss_surface`.
    k : number of top eigenvalues; ``k == 1`` returns a float, otherwise a descending array.
    method : ``"lanczos"`` (default: stops at the first step where the top ``k`` Ritz
        residuals are below ``tol``), ``"arpack"`` (scipy ``eigsh``) or ``"power"``.
    tol : stop when each Ritz pair's residual ``|H y - theta y| <= tol |theta|``. The
        eigenvalue's own error is then about ``tol^2 theta / gap`` (second order), e.g.
        ~1e-6 relative for the default 1e-3 on a typical spectrum; ask less for more.
    params, buffers : evaluate at these weights/statistics instead of the model's own.
    train : BatchNorm/Dropout in train mode (default eval mode, running statistics).
    """
    op = HessianOperator(model, loss_fn, data, params, buffers, train)
    w, _ = top_eigenvalues(op, k, method, tol, maxiter, seed)
    return float(w[0]) if k == 1 else w


def hessian_trace(model: nn.Module, loss_fn: Callable, data: Any, n_probes: int = 100,
                  seed: int = 0, params: Mapping[str, torch.Tensor] | None = None,
                  buffers: Mapping[str, torch.Tensor] | None = None,
                  train: bool = False) -> tuple[float, float]:
    """Hutchinson's estimate of tr H with Rademacher probes: ``(estimate, standard error)``.

    ``E[v'Hv] = tr H`` and ``Var[v'Hv] = 2 (|H|_F^2 - sum_i H_ii^2)`` (science.md §7).
    """
    op = HessianOperator(model, loss_fn, data, params, buffers, train)
    g = torch.Generator().manual_seed(int(seed))
    vals = []
    for _ in range(int(n_probes)):
        v = (torch.randint(0, 2, (op.n,), generator=g) * 2 - 1).to(op.dtype)
        vals.append(float(v.double() @ op.matvec(v).double()))
    a = np.asarray(vals)
    se = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se

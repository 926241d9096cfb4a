"""Curvature of the loss: Hessian-vector products, top eigenvalues, Hutchinson trace.

Hessian-vector products: for data up to ``graph_cache_samples`` samples the gradient's
graph is built once per batch and each ``H v`` is one backward pass through it (double
backward, as PyHessian); for more data, batch by batch with :mod:`torch.func`, keeping no
graph between batches: forward-over-reverse (``jvp`` of ``grad``) or reverse-over-reverse
(``vjp`` of ``grad``), whichever the first batch measures faster (on a CPU, reverse).
Weights, data and vectors live on ``device`` (default: the model's); data already there
(as :func:`~lossview.core.surface.stability.iter_sharpness` places it, once for all
snapshots) is not copied again.
The top eigenvalues come from thick-restart Lanczos on HVPs (own loop with full
reorthogonalisation, at most ``ncv`` basis vectors, and an exact residual stopping rule,
so it stops at the first sufficient step), ARPACK
(:func:`scipy.sparse.linalg.eigsh` on a ``LinearOperator``, as in Cohen et al.'s
edge-of-stability code) or power iteration. The model is in eval mode by default
(BatchNorm uses its running statistics, like PyHessian); ``train=True`` uses batch
statistics. The loss is the mean over all of ``data`` (full batch). Parameters of the model are
never modified. A product that is not
finite (inf/NaN weights, an overflowing loss) raises :class:`NonFiniteCurvature` (a
one-line :class:`~lossview.core.errors.LossviewError`) instead of failing inside an
eigensolver.
"""

from __future__ import annotations

import time
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
from lossview.core.surface.loop import resolve_device, to_device
from lossview.core.surface.precision import full_float32


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
    #: Where weights, data and vectors live: ``None`` the model's parameters' device,
    #: ``"auto"`` CUDA when available, or a device (TF32 off there: float32 stays exact).
    device: str | torch.device | None = None

    def __post_init__(self) -> None:
        own = dict(self.model.named_parameters())
        first = next(iter(own.values()))
        self.device = dev = resolve_device(self.device, first.device)
        self.batches = [(to_device(x, dev), to_device(y, dev)) for x, y in as_batches(self.data)]
        self.sizes = [batch_size(x) for x, _ in self.batches]
        self.names = list(own)
        self.shapes = {n: tuple(p.shape) for n, p in own.items()}
        src = own if self.params is None else self.params
        self.dtype = first.dtype
        self.theta = torch.cat([torch.as_tensor(src[n]).detach().to(dev, self.dtype).reshape(-1)
                                for n in self.names])
        self.bufs = {n: b.detach().to(dev) for n, b in self.model.named_buffers()}
        if self.buffers:
            self.bufs.update({n: torch.as_tensor(v).to(dev, self.bufs[n].dtype)
                              for n, v in self.buffers.items() if n in self.bufs})
        self.n = self.theta.numel()
        #: How uncached products are formed: "auto" times both on the first batch, once.
        self.mode = "auto"
        self.calls = 0
        self._graphs: list | None = None

    def _loss(self, theta: torch.Tensor, x: Any, y: Any) -> torch.Tensor:
        p = flat_to_dict(theta, self.names, self.shapes)
        return self.loss_fn(functional_call(self.model, (p, self.bufs), (x,)), y)

    def loss(self) -> float:
        """Full-data mean loss at ``params`` (forward passes only, on ``device``)."""
        total = 0.0
        with torch.no_grad(), eval_mode(self.model, self.train), full_float32(self.device):
            for (x, y), k in zip(self.batches, self.sizes):
                total += float(self._loss(self.theta, x, y)) * k
        return total / float(sum(self.sizes))

    def loss_and_grad(self) -> tuple[float, torch.Tensor]:
        """Full-data mean loss and gradient at ``params``."""
        total, g = 0.0, torch.zeros_like(self.theta)
        with eval_mode(self.model, self.train), full_float32(self.device):
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
        v = torch.as_tensor(v).to(self.device, self.dtype).reshape(-1)
        out = torch.zeros_like(self.theta)
        self.calls += 1
        with full_float32(self.device):
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
        if self.mode == "auto":  # keep the faster way for this model (measured, once)
            times = {}
            for mode in ("forward-over-reverse", "reverse-over-reverse"):
                self.mode = mode
                t = time.perf_counter()
                out = self._hvp(v, x, y)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                times[self.mode] = time.perf_counter() - t
            self.mode = min(times, key=times.get)
            return out
        if self.mode == "forward-over-reverse":
            try:
                return jvp(grad(f), (self.theta,), (v,))[1]
            except (NotImplementedError, RuntimeError):
                self.mode = "reverse-over-reverse"
        _, pullback = vjp(grad(f), self.theta)
        return pullback(v)[0]

    def dense(self) -> np.ndarray:
        """The full Hessian (n HVPs): only for small models and tests."""
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        h = torch.stack([self.matvec(e) for e in eye]).double().cpu().numpy()
        return (h + h.T) / 2

    def linear_operator(self):
        from scipy.sparse.linalg import LinearOperator

        return LinearOperator((self.n, self.n), dtype=np.float64,
                              matvec=lambda v: self.matvec(torch.from_numpy(np.ravel(v)))
                              .double().cpu().numpy())


def top_eigenvalues(op: HessianOperator, k: int = 1, method: str = "lanczos", tol: float = 1e-6,
                    maxiter: int | None = None, seed: int = 0,
                    ncv: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest (algebraic) eigenvalues, descending, and their eigenvectors [n, k].

    ``maxiter`` bounds the Hessian-vector products (Lanczos: default 1000; ARPACK: its
    restarts); ``ncv`` the vectors Lanczos keeps (default :func:`default_ncv`).
    """
    k = int(k)
    if k < 1:
        raise LossviewError("k must be at least 1")
    if k >= op.n:
        w, v = np.linalg.eigh(op.dense())
        order = np.argsort(w)[::-1][:k]
        return w[order], v[:, order]
    if method == "lanczos":
        return lanczos(op, k, None, tol=tol, maxiter=maxiter or 1000, ncv=ncv, seed=seed)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(op.n)
    if method == "power":
        if k != 1:
            raise LossviewError("power iteration gives the top eigenvalue only; use method='lanczos'")
        lam, vec = power_iteration(op, v0, tol=tol, maxiter=maxiter or 1000)
        return np.array([lam]), vec[:, None]
    if method != "arpack":
        raise LossviewError(f"method must be 'lanczos', 'arpack' or 'power', not {method!r}")
    from scipy.sparse.linalg import eigsh

    ncv = min(op.n, max(2 * k + 1, k + 8))
    w, v = eigsh(op.linear_operator(), k=k, which="LA", tol=tol, v0=v0, ncv=ncv,
                 maxiter=maxiter)
    order = np.argsort(w)[::-1]
    return w[order], v[:, order]


def lanczos(op: HessianOperator, k: int, v0: np.ndarray | None = None, tol: float = 1e-6,
            maxiter: int = 1000, ncv: int | None = None,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Thick-restart Lanczos (Wu & Simon 2000) with full reorthogonalisation, holding at
    most ``ncv`` basis vectors; stops as soon as the top ``k`` Ritz pairs have residuals
    ``|H y - theta y| <= tol * |theta|``.

    The basis grows one vector per product. When it holds ``ncv`` vectors it is
    compressed, in place, to the ``keep`` best Ritz vectors (``k`` plus about half the
    rest), and the last residual direction continues the iteration. A Ritz pair's
    residual is ``|b' s|`` (the coupling to the next direction times its eigenvector),
    known without another product. The projected matrix is at most ``ncv x ncv`` (dense
    ``eigh``). Memory: at most ``max(ncv + 1, 2k)`` parameter-sized float64 vectors on
    ``op.device`` (the basis and a work vector that becomes the next direction; the ``k``
    eigenvectors returned), counted in ``op.last_solve["max_vectors"]``; the operator's
    own vectors and graphs come on top. ``maxiter`` bounds the products.
    """
    n = op.n
    m = min(n, max(int(ncv) if ncv else default_ncv(k), k + 2))
    keep = min(m - 1, k + (m - k) // 2)
    dev = op.device
    f64 = torch.float64
    rows: list[torch.Tensor] = []  # the orthonormal basis, one row per vector
    if v0 is None:  # the only reference: normalised in place
        q = torch.from_numpy(np.random.default_rng(seed).standard_normal(n)).to(dev)
        q /= q.norm()
    else:
        q = torch.as_tensor(v0, dtype=f64).to(dev)
        q = q / q.norm()
    # The small projected problem stays in torch on the CPU: numpy's BLAS threads, spinning
    # after each call, would compete with torch's for the cores (see docs/benchmarks.md).
    t = torch.zeros(0, 0, dtype=f64)  # projected matrix V' H V
    b = torch.zeros(0, dtype=f64)  # H V = V T + q b'  (q: unit, orthogonal to V)
    theta = s = None
    held = products = restarts = 0
    while True:
        rows.append(q)
        j = len(rows)
        w = op.matvec(q).to(dev, f64)
        products += 1
        held = max(held, j + 1)
        h = _orthogonalise(w, rows)
        h += _orthogonalise(w, rows)  # twice is enough (Giraud et al. 2005)
        tj = torch.zeros(j, j, dtype=f64)
        tj[:j - 1, :j - 1] = t
        tj[j - 1, :j - 1] = tj[:j - 1, j - 1] = (b + h[:j - 1]) / 2
        tj[j - 1, j - 1] = h[j - 1]
        t = tj
        beta = float(w.norm())
        b = torch.zeros(j, dtype=f64)
        b[-1] = beta
        theta, s = torch.linalg.eigh(t)
        theta, s = theta.flip(0), s.flip(1)  # descending
        if j >= k:
            res = (b @ s[:, :k]).abs()
            scale = theta[:k].abs().clamp_min(1e-30)
            if bool((res <= tol * scale).all()) or beta < 1e-12 * max(abs(float(theta[0])), 1e-30):
                break
        if products >= maxiter or j >= n:
            break
        q = w.div_(beta)
        del w
        if j == m:  # compress to the best `keep` Ritz vectors, in place
            y = s[:, :keep]
            _combine_in_place(rows, y)
            del rows[keep:]
            t = torch.diag(theta[:keep])
            b = y.T @ b
            restarts += 1
    del w, q
    _combine_in_place(rows, s[:, :k])  # the Ritz vectors, in the basis's place
    del rows[k:]
    held = max(held, 2 * k)
    vecs = torch.stack(rows)
    del rows
    op.last_solve = {"products": products, "restarts": restarts, "ncv": m,
                     "max_vectors": held, "basis_dtype": "float64"}
    return theta[:k].numpy().copy(), vecs.T.cpu().numpy()


def default_ncv(k: int) -> int:
    """Basis size of :func:`lanczos` when none is given: 20, or ``2k + 10`` for large ``k``."""
    return max(20, 2 * int(k) + 10)


def _orthogonalise(w: torch.Tensor, rows: list[torch.Tensor]) -> np.ndarray:
    """One classical Gram-Schmidt pass of ``w`` against ``rows``, in place; coefficients."""
    h = torch.stack([r @ w for r in rows]).tolist()  # one device sync
    for r, c in zip(rows, h):
        w.add_(r, alpha=-c)
    return torch.tensor(h, dtype=torch.float64)


def _combine_in_place(rows: list[torch.Tensor], y: torch.Tensor, chunk: int = 1 << 16) -> None:
    """``rows[:l] = y' rows`` (``y``: [len(rows), l]) one column block at a time, so only
    an ``l x chunk`` block is ever allocated besides the rows themselves."""
    l = y.shape[1]
    yt = y.T.contiguous().to(rows[0].device)
    n = rows[0].numel()
    for a in range(0, n, chunk):
        block = yt @ torch.stack([r[a:a + chunk] for r in rows])
        for i in range(l):
            rows[i][a:a + chunk] = block[i]


def power_iteration(op: HessianOperator, v0: np.ndarray, tol: float = 1e-6,
                    maxiter: int = 1000) -> tuple[float, np.ndarray]:
    """Largest-magnitude eigenvalue by power iteration (stops when the Rayleigh quotient
    changes by less than ``tol`` relative, PyHessian's rule)."""
    v = torch.as_tensor(v0, dtype=torch.float64).to(op.device)
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
    return float(lam), v.cpu().numpy()


def sharpness(model: nn.Module, loss_fn: Callable, data: Any, k: int = 1,
              method: str = "lanczos", tol: float = 1e-3, maxiter: int | None = None,
              params: Mapping[str, torch.Tensor] | None = None,
              buffers: Mapping[str, torch.Tensor] | None = None,
              train: bool = False, seed: int = 0, ncv: int | None = None,
              device: str | torch.device | None = None) -> float | np.ndarray:
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
    ncv : most vectors Lanczos keeps (default ``max(20, 2k + 10)``); memory is about
        ``ncv + 1`` parameter-sized float64 vectors.
    device : where the weights, data and vectors live: ``None`` (the model's device),
        ``"cpu"``, ``"cuda[:i]"`` or ``"auto"`` (CUDA when available).
    """
    op = HessianOperator(model, loss_fn, data, params, buffers, train, device=device)
    w, _ = top_eigenvalues(op, k, method, tol, maxiter, seed, ncv)
    return float(w[0]) if k == 1 else w


def hessian_trace(model: nn.Module, loss_fn: Callable, data: Any, n_probes: int = 100,
                  seed: int = 0, params: Mapping[str, torch.Tensor] | None = None,
                  buffers: Mapping[str, torch.Tensor] | None = None,
                  train: bool = False, device: str | torch.device | None = None,
                  ) -> tuple[float, float]:
    """Hutchinson's estimate of tr H with Rademacher probes: ``(estimate, standard error)``.

    ``E[v'Hv] = tr H`` and ``Var[v'Hv] = 2 (|H|_F^2 - sum_i H_ii^2)`` (docs/science.md §7).
    The probes are drawn on the CPU (the same for every ``device``).
    """
    op = HessianOperator(model, loss_fn, data, params, buffers, train, device=device)
    g = torch.Generator().manual_seed(int(seed))
    vals = []
    for _ in range(int(n_probes)):
        v = (torch.randint(0, 2, (op.n,), generator=g) * 2 - 1).to(op.device, op.dtype)
        vals.append(float(v.double() @ op.matvec(v).double()))
    a = np.asarray(vals)
    se = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se

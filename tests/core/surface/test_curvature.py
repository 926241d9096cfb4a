"""Top Hessian eigenvalues (Lanczos, power iteration) and Hutchinson's trace."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
from torch import nn

import lossview
from lossview.core.surface.curvature import HessianOperator, default_ncv, hessian_trace, top_eigenvalues


def small():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=g)
    return m, nn.CrossEntropyLoss(), (x, y)


def autograd_hessian(m, loss_fn, x, y) -> np.ndarray:
    names = [n for n, _ in m.named_parameters()]
    params = tuple(p.detach() for _, p in m.named_parameters())

    def f(*ps):
        return loss_fn(torch.func.functional_call(m, dict(zip(names, ps)), (x,)), y)

    h = torch.autograd.functional.hessian(f, params)
    sizes = [p.numel() for p in params]
    off = np.concatenate([[0], np.cumsum(sizes)])
    out = np.zeros((off[-1], off[-1]))
    for i in range(len(params)):
        for j in range(len(params)):
            out[off[i]:off[i + 1], off[j]:off[j + 1]] = h[i][j].reshape(sizes[i], sizes[j]).numpy()
    return out


def test_lanczos_and_power_iteration_match_the_autograd_hessian():
    m, loss_fn, (x, y) = small()
    ref = np.sort(np.linalg.eigvalsh(autograd_hessian(m, loss_fn, x, y)))[::-1]
    top3 = lossview.sharpness(m, loss_fn, (x, y), k=3, tol=1e-9)
    np.testing.assert_allclose(top3, ref[:3], rtol=1e-8)
    assert lossview.sharpness(m, loss_fn, (x, y), tol=1e-9) == pytest.approx(ref[0], rel=1e-8)
    # default tol 1e-3 bounds the residual; the eigenvalue error is second order in it
    assert lossview.sharpness(m, loss_fn, (x, y)) == pytest.approx(ref[0], rel=1e-5)
    arpack = lossview.sharpness(m, loss_fn, (x, y), k=2, method="arpack", tol=1e-10)
    np.testing.assert_allclose(arpack, ref[:2], rtol=1e-8)
    # power iteration converges at rate ref[1]/ref[0]; tol 1e-10 on the Rayleigh quotient
    assert lossview.sharpness(m, loss_fn, (x, y), method="power", tol=1e-10) == pytest.approx(
        ref[0], rel=1e-5)
    op = HessianOperator(m, loss_fn, (x, y))
    np.testing.assert_allclose(op.dense(), autograd_hessian(m, loss_fn, x, y), atol=1e-12)


def test_batches_and_params_arguments():
    m, loss_fn, (x, y) = small()
    whole = lossview.sharpness(m, loss_fn, (x, y))
    parts = lossview.sharpness(m, loss_fn, [(x[:25], y[:25]), (x[25:], y[25:])])
    assert parts == pytest.approx(whole, rel=1e-9)
    moved = {n: p.detach() * 1.5 for n, p in m.named_parameters()}
    at_moved = lossview.sharpness(m, loss_fn, (x, y), params=moved)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    assert lossview.sharpness(m, loss_fn, (x, y)) == pytest.approx(at_moved, rel=1e-9)


def test_known_spectrum_of_the_builtin_quadratic():
    from lossview.core.train.problems import problem_from_spec

    p = problem_from_spec({"name": "quadratic", "dim": 12, "n": 64, "max_eig": 1.0, "min_eig": 0.05})
    m = p.make_model()
    top = lossview.sharpness(m, p.loss_fn, p.train_data, k=3, tol=1e-6)
    # the Hessian is exactly Q diag(h) Q' at every point; float32 model
    np.testing.assert_allclose(top, np.sort(p.eigenvalues)[::-1][:3], rtol=1e-5)
    assert top[0] == pytest.approx(1.0, rel=1e-5)
    est, se = hessian_trace(m, p.loss_fn, p.train_data, n_probes=400, seed=0)
    # Rademacher: Var[v'Hv] = 2(|H|_F^2 - sum H_ii^2); 5 standard errors
    h = p.hessian.double().numpy()
    sd = np.sqrt(2 * ((h ** 2).sum() - (np.diag(h) ** 2).sum()) / 400)
    assert abs(est - p.eigenvalues.sum()) < 5 * sd
    assert se == pytest.approx(sd, rel=0.3)


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    # v'Hv = sum_i h_i v_i^2 = tr H for every Rademacher v
    class Diag(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(5, dtype=torch.float64))

        def forward(self, x):
            return self.w.expand(len(x), -1)

    h = torch.tensor([1.0, 2.0, 3.0, 0.5, 7.0], dtype=torch.float64)
    loss_fn = lambda o, t: 0.5 * ((o - t) ** 2 * h).sum(-1).mean()  # noqa: E731
    data = (torch.zeros(4, 1, dtype=torch.float64), torch.zeros(4, 5, dtype=torch.float64))
    est, se = hessian_trace(Diag(), loss_fn, data, n_probes=10)
    assert est == pytest.approx(13.5, rel=1e-12) and se == pytest.approx(0.0, abs=1e-12)
    top = lossview.sharpness(Diag(), loss_fn, data, k=5, tol=1e-10).tolist()
    assert top == pytest.approx([7, 3, 2, 1, 0.5])


def mlp_200():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(80, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (80,), generator=g)
    return m, nn.CrossEntropyLoss(), (x, y)


def func_hessian_eigenvalues(m, loss_fn, x, y) -> np.ndarray:
    """Exact spectrum: torch.func.hessian of the flat-parameter loss, then eigvalsh."""
    names = [n for n, _ in m.named_parameters()]
    shapes = [p.shape for _, p in m.named_parameters()]
    theta = torch.cat([p.detach().reshape(-1) for p in m.parameters()])

    def f(t):
        ps, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            ps[n] = t[i:i + k].reshape(s)
            i += k
        return loss_fn(torch.func.functional_call(m, ps, (x,)), y)

    return np.sort(np.linalg.eigvalsh(torch.func.hessian(f)(theta).numpy()))[::-1]


@pytest.mark.parametrize(("k", "ncv"), [(1, 6), (5, 12), (5, None)])
def test_restarted_lanczos_keeps_few_vectors_and_matches_the_exact_spectrum(k, ncv):
    m, loss_fn, (x, y) = mlp_200()
    ref = func_hessian_eigenvalues(m, loss_fn, x, y)
    op = HessianOperator(m, loss_fn, (x, y))
    assert op.n == 243
    w, v = top_eigenvalues(op, k, tol=1e-10, ncv=ncv)
    np.testing.assert_allclose(w, ref[:k], rtol=1e-8)
    # the returned vectors are orthonormal eigenvectors
    np.testing.assert_allclose(v.T @ v, np.eye(k), atol=1e-8)
    hv = np.stack([op.matvec(torch.from_numpy(np.ascontiguousarray(v[:, i]))).numpy()
                   for i in range(k)], 1)
    assert np.abs(hv - v * w).max() <= 1e-8 * w[0]
    info = op.last_solve
    m_ = ncv or default_ncv(k)
    assert info["ncv"] == m_ and info["restarts"] >= (1 if ncv else 0)
    assert info["max_vectors"] <= max(m_ + 1, 2 * k)


def test_the_solver_holds_at_most_ncv_plus_one_parameter_sized_vectors():
    # Count, at every product, the live float64 tensors of n entries other than the
    # operator's own (its weights and cached gradient graph): the solver's vectors.
    m, loss_fn, (x, y) = mlp_200()
    op = HessianOperator(m, loss_fn, (x, y))
    inner, live = op.matvec, []

    def counted(v):
        own = {id(op.theta)} | {id(t) for pair in op._graphs or [] for t in pair}
        gc.collect()
        live.append(sum(1 for o in gc.get_objects() if torch.is_tensor(o) and id(o) not in own
                        and o.dtype == torch.float64 and o.numel() == op.n))
        return inner(v)

    op.matvec = counted
    w, _ = top_eigenvalues(op, 2, tol=1e-10, ncv=7)
    assert op.last_solve["restarts"] >= 3
    assert max(live) <= 7 and len(live) == op.last_solve["products"]
    np.testing.assert_allclose(w, func_hessian_eigenvalues(m, loss_fn, x, y)[:2], rtol=1e-8)


def test_device_argument_keeps_everything_on_that_device():
    m, loss_fn, (x, y) = small()
    here = lossview.sharpness(m, loss_fn, (x, y), k=2, tol=1e-10)
    on_cpu = lossview.sharpness(m, loss_fn, (x, y), k=2, tol=1e-10, device="cpu")
    np.testing.assert_allclose(on_cpu, here, rtol=1e-12)
    auto = HessianOperator(m, loss_fn, (x, y), device="auto")
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        on_gpu = lossview.sharpness(m, loss_fn, (x, y), k=2, tol=1e-10, device="cuda")
        np.testing.assert_allclose(on_gpu, here, rtol=1e-8)
        op = HessianOperator(m, loss_fn, (x, y), device="cuda")
        assert op.theta.is_cuda and all(t.is_cuda for t in op.batches[0])


def test_products_without_kept_graphs_pick_a_mode_and_agree():
    m, loss_fn, (x, y) = mlp_200()
    batches = [(x[:30], y[:30]), (x[30:], y[30:])]
    cached = HessianOperator(m, loss_fn, batches)
    streamed = HessianOperator(m, loss_fn, batches, graph_cache_samples=0)
    v = torch.randn(cached.n, dtype=torch.float64)
    torch.testing.assert_close(streamed.matvec(v), cached.matvec(v), rtol=1e-12, atol=1e-14)
    assert streamed.mode in ("forward-over-reverse", "reverse-over-reverse")
    assert not streamed._graphs
    w, _ = top_eigenvalues(streamed, 2, tol=1e-10)
    np.testing.assert_allclose(w, func_hessian_eigenvalues(m, loss_fn, x, y)[:2], rtol=1e-8)

"""The numba kernels of the MLP fast path: each equals its float64 definition to float32
rounding, keeps NaN and infinities where torch's operations would, and the surfaces they
serve equal a forward pass at every point's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

pytest.importorskip("numba")

from lossview.core.surface import fastkernels
from lossview.core.surface.evaluate import PlaneEvaluator

K = fastkernels.preload()


@pytest.fixture(autouse=True)
def _loaded():
    """The kernels loaded (conftest.py resets them before every test)."""
    assert fastkernels.preload() is K


def _ce_reference(logits, bias, target):
    """Each point's cross-entropy summed over the samples, in float64 from the definition."""
    x = logits.astype(np.float64) + bias.astype(np.float64)[:, :, None]
    m = x.max(axis=1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=1)) + m[:, 0]
    picked = np.take_along_axis(x, target[None, None, :].repeat(len(x), 0), 1)[:, 0]
    return (lse - picked).sum(axis=1)


@pytest.mark.parametrize("relu", [True, False])
def test_combine_is_the_three_term_combination(relu):
    rng = np.random.default_rng(0)
    n = 3 * 1024 + 37  # several tiles and a short last one
    z = rng.standard_normal((3, n)).astype(np.float32)
    coef = np.concatenate([np.ones((5, 1)), rng.uniform(-2, 2, (5, 2))], 1).astype(np.float32)
    out = np.empty((5, n), np.float32)
    K.combine(coef, z[0], z[1], z[2], out, relu)
    want = coef.astype(np.float64) @ z.astype(np.float64)
    if relu:
        want = np.maximum(want, 0)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=2e-6)
    assert (out >= 0).all() == relu


def test_combine_relu_keeps_nan_as_torch_relu_does():
    z = np.array([[np.nan, -1.0, 2.0, np.inf], [0, 0, 0, -np.inf], [0, 0, 0, 0]], np.float32)
    out = np.empty((1, 4), np.float32)
    K.combine(np.array([[1, 1, 0]], np.float32), z[0], z[1], z[2], out, True)
    want = torch.relu(torch.tensor(z[0]) + torch.tensor(z[1])).numpy()
    np.testing.assert_array_equal(out[0], want)  # nan, 0, 2, nan (inf - inf)


@pytest.mark.parametrize(("classes", "rows", "scale"), [(10, 228, 3.0), (2, 700, 1.0), (37, 45, 30.0)])
def test_ce_sum_is_the_cross_entropy_sum(classes, rows, scale):
    """Rows beyond one float64 product of sums (700 > 256), many classes, logits far apart
    (exponentials down to e^-120, clamped at e^-87: far below the sum's rounding)."""
    rng = np.random.default_rng(classes)
    p = 6
    logits = (rng.standard_normal((p, classes, rows)) * scale).astype(np.float32)
    bias = rng.standard_normal((p, classes)).astype(np.float32)
    target = rng.integers(0, classes, rows)
    total = np.full(p, 0.25)  # the kernel adds to it
    flags = np.zeros(p, np.uint8)
    bad = K.ce_sum(logits, bias, target, total, np.empty((4, rows), np.float32), flags,
                   K.log_run(classes))
    want = _ce_reference(logits, bias, target) + 0.25
    assert bad == 0 and not flags.any()
    np.testing.assert_allclose(total, want, rtol=1e-6)
    # torch's own float32 arithmetic is as far from the float64 definition
    t = torch.log_softmax(torch.tensor(logits) + torch.tensor(bias)[:, :, None], 1)
    torch_sum = -t.gather(1, torch.tensor(target).view(1, 1, -1).expand(p, 1, -1)).sum((1, 2),
                                                                                       dtype=torch.float64)
    np.testing.assert_allclose(total - 0.25, torch_sum.numpy(), rtol=2e-6)


def test_ce_sum_flags_points_with_logits_that_are_not_finite():
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 5, 40)).astype(np.float32)
    logits[1, 2, 7] = np.inf
    logits[3, 0, 39] = np.nan
    total, flags = np.zeros(4), np.zeros(4, np.uint8)
    bad = K.ce_sum(logits, np.zeros((4, 5), np.float32), np.zeros(40, np.int64), total,
                   np.empty((4, 40), np.float32), flags, 256)
    assert bad == 2 and flags.tolist() == [0, 1, 0, 1]
    assert total[1] == 0 and total[3] == 0  # left for torch's operations
    np.testing.assert_allclose(total[[0, 2]], _ce_reference(
        logits[[0, 2]], np.zeros((2, 5), np.float32), np.zeros(40, np.int64)), rtol=1e-6)


def _brute(model, loss_fn, x, y, d1, d2, a, b):
    params = {k: p.detach() + a * d1[k] + b * d2[k] for k, p in model.named_parameters()}
    with torch.no_grad():
        return float(loss_fn(functional_call(model, params, (x,)), y))


@pytest.mark.parametrize(("first_act", "loss"), [(nn.ReLU, "ce"), (nn.Tanh, "ce"), (nn.ReLU, "mse"),
                                             (nn.ReLU, "ce-no-bias")])
def test_surfaces_with_the_kernels_equal_the_forward_pass(monkeypatch, first_act, loss):
    torch.manual_seed(0)
    out = 1 if loss == "mse" else 7
    model = nn.Sequential(nn.Linear(6, 40), first_act(), nn.Linear(40, 24), nn.ReLU(),
                          nn.Linear(24, out, bias=loss != "ce-no-bias"))
    x = torch.randn(600, 6)
    y = torch.randn(600, 1) if loss == "mse" else torch.randint(0, out, (600,))
    loss_fn = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()
    d1 = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    d2 = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    pts = np.random.default_rng(1).uniform(-2, 2, (9, 2))
    ev = PlaneEvaluator(model, loss_fn, (x, y), None, d1, d2)
    ev.chunk_size = lambda: 4
    monkeypatch.setattr("lossview.core.surface.fastpath.TILE_BYTES", 4 * 150 * 41 * 4)
    got = ev.losses(pts)  # 4 blocks of 150 rows
    assert ev._kernels is K
    want = np.array([_brute(model, loss_fn, x, y, d1, d2, a, b) for a, b in pts])
    np.testing.assert_allclose(got, want, rtol=2e-6)
    assert ev.path == "first-layer+mlp+numba"
    off = PlaneEvaluator(model, loss_fn, (x, y), None, d1, d2, path="first-layer+mlp")
    off.chunk_size = lambda: 4
    np.testing.assert_allclose(off.losses(pts), got, rtol=1e-6)  # torch's operations
    assert off._kernels is None and off.path == "first-layer+mlp"


@pytest.mark.parametrize("kernels", [{"combine"}, {"ce"}])
def test_each_kernel_alone_gives_the_forward_pass_losses(monkeypatch, kernels):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 4))
    x, y = torch.randn(300, 5), torch.randint(0, 4, (300,))
    d1 = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    d2 = {k: torch.randn_like(p) for k, p in model.named_parameters()}
    pts = np.random.default_rng(4).uniform(-1.5, 1.5, (5, 2))
    monkeypatch.setattr(fastkernels, "KERNELS", kernels)
    ev = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, y), None, d1, d2)
    got = ev.losses(pts)
    assert ev._kernels is K
    want = [_brute(model, nn.CrossEntropyLoss(), x, y, d1, d2, a, b) for a, b in pts]
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_a_point_whose_logits_overflow_gets_torch_s_loss():
    """Far out on the plane the logits overflow to inf: the kernel hands those points to
    torch's operations, so the surface says what the torch path says (not a number)."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
                          nn.Linear(16, 3))
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    d = {k: torch.full_like(p, 1.0) for k, p in model.named_parameters()}
    pts = np.array([[0.0, 0.0], [1e12, 0.0], [0.5, 0.0]])
    ev = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, y), None, d, d)
    got = ev.losses(pts)
    assert ev._kernels is K
    assert not np.isfinite(got[1])
    want = [_brute(model, nn.CrossEntropyLoss(), x, y, d, d, a, b) for a, b in pts[[0, 2]]]
    np.testing.assert_allclose(got[[0, 2]], want, rtol=2e-6)


def test_kernels_load_once_their_savings_would_have_paid_for_them(monkeypatch):
    state = {"module": None, "failed": False, "forgone": 0.0}
    monkeypatch.setattr(fastkernels, "_state", state)
    monkeypatch.setattr(fastkernels, "LOAD_COST_S", 0.6)
    monkeypatch.setattr(fastkernels, "FIRST_CALL_S", 0.6)
    # the medium MLP's 41 x 41 surface: 1,681 points x 2,048 samples x (129 + 10 logits)
    one = 1681 * 2048 * (129 * fastkernels.SAVED_PER_HIDDEN_S + 10 * fastkernels.SAVED_PER_LOGIT_S)
    surfaces = 0
    while fastkernels.for_work(1681, 2048, 129, 10) is None:
        surfaces += 1
    assert surfaces == int(np.ceil(0.6 / one)) - 1  # loaded by the surface that pays
    assert fastkernels.for_work(1, 1, 1, 0) is state["module"]


def test_the_path_name_pins_the_kernels_and_one_evaluator_never_switches(monkeypatch):
    """The reported path names whether the kernels ran: passed to another evaluator (tiles
    in other processes) it runs the same arithmetic, bit for bit. An evaluator keeps its
    choice even when the kernels load later in the process."""
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 5))
    x, y = torch.randn(200, 4), torch.randint(0, 5, (200,))
    pts = np.random.default_rng(5).uniform(-1, 1, (6, 2))
    on = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, y))
    assert on.path == "first-layer+mlp+numba"  # loaded in this process
    again = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, y), path=on.path)
    np.testing.assert_array_equal(again.losses(pts), on.losses(pts))
    assert again._kernels is K
    # a process where the kernels are not loaded (yet): its evaluators keep torch's
    monkeypatch.setattr(fastkernels, "_state", {"module": None, "failed": False, "forgone": 0.0})
    monkeypatch.setattr(fastkernels, "LOAD_COST_S", 0.0)  # the next evaluation pays
    monkeypatch.setattr(fastkernels, "FIRST_CALL_S", 0.0)
    off = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, y))
    assert off.path == "first-layer+mlp"  # read before evaluating: decided now
    first = off.losses(pts)  # its savings forgone load the kernels ...
    assert fastkernels.loaded() is K and off._kernels is None  # ... for later evaluators
    np.testing.assert_array_equal(off.losses(pts), first)
    pinned = PlaneEvaluator(model, nn.CrossEntropyLoss(), (x, y), path="first-layer+mlp")
    np.testing.assert_array_equal(pinned.losses(pts), first)
    assert pinned.path == "first-layer+mlp"
    np.testing.assert_allclose(on.losses(pts), first, rtol=1e-6)

"""The loop path (one forward pass per point, weights updated in place) and the probe that
picks it, against brute force: a plain loop of ``functional_call`` forward passes at each
perturbed point. The general models here are a BatchNorm CNN in eval mode (not a
Sequential, in-place ReLU after its first conv) and a model with tied weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

import lossview
from lossview.core.errors import LossviewError
from lossview.core.surface.evaluate import PlaneEvaluator
from lossview.core.surface.grid import iter_grid


def block(i, o, stride):
    return [nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o),
            nn.ReLU(inplace=True)]


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(*block(3, 4, 1), *block(4, 6, 2), *block(6, 8, 2))
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class Tied(nn.Module):
    """Input embedding shared with the output layer (a language model's weight tying)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 5)
        self.mid = nn.Linear(5, 5)
        self.out = nn.Linear(5, 7, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, x):
        return self.out(torch.tanh(self.mid(self.emb(x))))


def cnn_case(dtype):
    torch.manual_seed(0)
    m = CNN().to(dtype)
    x = torch.randn(24, 3, 8, 8, dtype=dtype)
    y = torch.randint(0, 3, (24,))
    with torch.no_grad():  # non-trivial running statistics
        m.train()(x * 1.5 + 0.3)
    m.eval()
    return m, nn.CrossEntropyLoss(), x, y


def directions(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3
             for n, p in model.named_parameters()} for _ in range(2)]


def brute(model, loss_fn, batches, center, d1, d2, pts, buffers=None):
    bufs = dict(model.named_buffers()) if buffers is None else buffers
    n = sum(len(x) for x, _ in batches)
    out = []
    with torch.no_grad():
        for a, b in pts:
            p = {k: center[k] + a * d1[k] + b * d2[k] for k in center}
            out.append(sum(float(loss_fn(functional_call(model, (p, bufs), (x,)), y)) * len(x)
                           for x, y in batches) / n)
    return np.array(out)


PTS = np.array([(a, b) for a in (-0.6, 0.0, 0.45) for b in (-0.5, 0.25)])


def snapshot(model):
    return ({n: p.detach().clone() for n, p in model.named_parameters()},
            {n: b.clone() for n, b in model.named_buffers()}, [m.training for m in model.modules()])


def assert_untouched(model, before):
    params, bufs, flags = before
    for n, p in model.named_parameters():
        assert torch.equal(p, params[n]) and type(p) is nn.Parameter
    for n, b in model.named_buffers():
        assert torch.equal(b, bufs[n])
    assert [m.training for m in model.modules()] == flags
    assert all("forward" not in vars(m) for m in model.modules())


@pytest.mark.parametrize(("fast", "layout", "path"), [
    (True, "loop", "loop+first-layer"), (False, "loop", "loop"),
    (True, "loop+channels-last", "loop+first-layer+channels-last"),
    (False, "loop+channels-last", "loop+channels-last")])
def test_batchnorm_cnn_loop_equals_brute_force_in_float64(fast, layout, path):
    m, loss_fn, x, y = cnn_case(torch.float64)
    m.train()  # the evaluation is in eval mode whatever the flags; they are restored
    d1, d2 = directions(m)
    center = {n: p.detach().clone() for n, p in m.named_parameters()}
    before = snapshot(m)
    batches = [(x[:10], y[:10]), (x[10:], y[10:])]
    ev = PlaneEvaluator(m, loss_fn, batches, None, d1, d2, path=layout, fast=fast)
    assert ev.path == path
    # the reported name pins the same path (another process, a tile)
    assert PlaneEvaluator(m, loss_fn, batches, None, d1, d2, path=path, fast=fast).path == path
    got = ev.losses(PTS)
    m.eval()
    ref = brute(m, loss_fn, batches, center, d1, d2, PTS)
    m.train()
    np.testing.assert_allclose(got, ref, rtol=1e-11)
    assert_untouched(m, before)


def test_batchnorm_cnn_float32_loop_batched_and_brute_force_agree_to_rounding():
    m, loss_fn, x, y = cnn_case(torch.float32)
    d1, d2 = directions(m)
    center = {n: p.detach().clone() for n, p in m.named_parameters()}
    ref = brute(m, loss_fn, [(x, y)], center, d1, d2, PTS)
    for path in ("loop", "loop+channels-last", "batched"):
        got = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path=path).losses(PTS)
        np.testing.assert_allclose(got, ref, rtol=2e-6, err_msg=path)


class Viewing(CNN):
    """Flattens with ``.view``: fails on channels-last activations."""

    def forward(self, x):
        h = self.features(x)
        return self.head(h.view(h.shape[0], -1)[:, : h.shape[1]])


def test_a_model_that_cannot_run_channels_last_keeps_nchw():
    m, loss_fn, x, y = cnn_case(torch.float64)
    v = Viewing().double()
    v.load_state_dict(m.state_dict())
    v.eval()
    d1, d2 = directions(v)
    center = {n: p.detach().clone() for n, p in v.named_parameters()}
    ev = PlaneEvaluator(v, loss_fn, (x, y), None, d1, d2, path="loop+channels-last")
    assert ev.path == "loop+first-layer"
    np.testing.assert_allclose(ev.losses(PTS), brute(v, loss_fn, [(x, y)], center, d1, d2, PTS),
                               rtol=1e-11)


def test_loop_uses_given_buffers_and_loss_at_matches():
    m, loss_fn, x, y = cnn_case(torch.float64)
    d1, d2 = directions(m)
    center = {n: p.detach().clone() + 0.01 for n, p in m.named_parameters()}
    bufs = {n: (b + 0.5 if b.is_floating_point() else b) for n, b in m.named_buffers()}
    before = snapshot(m)
    ev = PlaneEvaluator(m, loss_fn, (x, y), center, d1, d2, buffers=bufs, path="loop")
    ref = brute(m, loss_fn, [(x, y)], center, d1, d2, PTS, buffers=bufs)
    np.testing.assert_allclose(ev.losses(PTS), ref, rtol=1e-11)
    at_center = brute(m, loss_fn, [(x, y)], center, d1, d2, [(0.0, 0.0)], buffers=bufs)[0]
    assert ev.loss_at(center) == pytest.approx(at_center, rel=1e-12)
    assert_untouched(m, before)


def test_tied_weights_and_a_first_layer_that_is_not_linear_take_the_plain_loop():
    torch.manual_seed(0)
    m = Tied().double()
    x, y = torch.randint(0, 7, (30,)), torch.randint(0, 7, (30,))
    d1, d2 = directions(m)
    assert len(d1) == 3  # the tied weight is one parameter
    center = {n: p.detach().clone() for n, p in m.named_parameters()}
    before = snapshot(m)
    ev = PlaneEvaluator(m, nn.CrossEntropyLoss(), (x, y), None, d1, d2, path="loop")
    assert ev.path == "loop"
    ref = brute(m, nn.CrossEntropyLoss(), [(x, y)], center, d1, d2, PTS)
    np.testing.assert_allclose(ev.losses(PTS), ref, rtol=1e-11)
    assert_untouched(m, before)
    assert m.out.weight is m.emb.weight


def test_auto_probes_once_and_says_which_path_ran():
    m, loss_fn, x, y = cnn_case(torch.float32)
    d1, d2 = directions(m)
    s = lossview.loss_surface(m, loss_fn, (x, y), directions=(d1, d2), steps=3)
    paths = ("loop+first-layer", "loop+first-layer+channels-last", "generic")
    assert s.path in paths
    ev = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2)
    assert ev.path in paths
    assert set(ev.probe_times) == {"batched", "loop", "loop+channels-last"}
    assert all(t > 0 for t in ev.probe_times.values())
    # the MLP fast path is taken without a probe
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    ev = PlaneEvaluator(mlp, nn.CrossEntropyLoss(), (torch.randn(9, 4), torch.randint(0, 2, (9,))))
    assert ev.path == "first-layer+mlp" and ev.probe_times == {}


def test_loop_path_progress_cancel_and_a_failing_loss_leave_the_model_as_it_was():
    m, loss_fn, x, y = cnn_case(torch.float64)
    d1, d2 = directions(m)
    before = snapshot(m)
    ev = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path="loop")
    alphas = betas = np.linspace(-0.5, 0.5, 5)
    gen = iter_grid(ev, alphas, betas)
    first = next(gen)
    assert first.mask.sum() == 1
    assert_untouched(m, before)  # between chunks the model is the caller's
    gen.close()

    def bad(out, tgt):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        PlaneEvaluator(m, bad, (x, y), None, d1, d2, path="loop").losses(PTS)
    assert_untouched(m, before)


def test_device_places_the_evaluation_and_matches_the_default():
    m, loss_fn, x, y = cnn_case(torch.float64)
    d1, d2 = directions(m)
    ref = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path="loop").losses(PTS)
    for device in ("cpu", "auto"):
        ev = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path="loop", device=device)
        want = "cuda" if (device == "auto" and torch.cuda.is_available()) else "cpu"
        assert ev.device.type == want
        assert all(v.device.type == want for v in ev.d1.values())
        assert ev.batches[0][0].device.type == want
        np.testing.assert_allclose(ev.losses(PTS), ref, rtol=1e-11)
    s = lossview.loss_surface(m, loss_fn, (x, y), steps=3, device="cpu", path="batched")
    assert s.path == "generic" and all(v.device.type == "cpu" for v in s.d1.values())
    with pytest.raises(LossviewError):
        PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path="fastest")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_equals_cpu_in_float32_by_every_path():
    m, loss_fn, x, y = cnn_case(torch.float32)
    d1, d2 = directions(m)
    ref = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path="loop").losses(PTS)
    for path in ("loop", "loop+channels-last", "batched", "auto"):
        got = PlaneEvaluator(m, loss_fn, (x, y), None, d1, d2, path=path,
                             device="cuda").losses(PTS)
        np.testing.assert_allclose(got, ref, rtol=1e-5, err_msg=path)
    assert all(p.device.type == "cpu" for p in m.parameters())

"""Acceptance tests of ``answers.stability`` (and of a diverged run's answers) on runs made as
users make them (issue 18): plain PyTorch loops saving the tutorial's general checkpoint
(with ``optimizer_state_dict``, where lossview reads lr and momentum), a model file for the
curvature, and the truth from exact Hessians computed here.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import user_runs as ur

NOT_AFTER_DIVERGENCE = re.compile(r"converg|improv|confin|settl", re.IGNORECASE)


@pytest.fixture(scope="module")
def linreg(tmp_path_factory):
    """Data, model file and exact Hessian of the ill-conditioned linear regression."""
    root = tmp_path_factory.mktemp("linreg")
    x, y = ur.linreg_data()
    model_file = ur.write_model_file(root / "linreg_model.py", ur.LINREG_SRC, x, y)
    x64 = x.double().numpy()
    hess = 2.0 * x64.T @ x64 / len(x64)        # of mean((x.w - y)^2)
    # truth: that is the loss's Hessian, by autograd on the very loss the model file defines
    model = ur.model_from_source(ur.LINREG_SRC, seed=6)
    w0 = model.weight.detach().double().flatten()
    auto = torch.autograd.functional.hessian(
        lambda w: torch.nn.functional.mse_loss(x.double() @ w[:, None], y.double()), w0)
    np.testing.assert_allclose(auto.numpy(), hess, rtol=1e-10, atol=1e-12)
    eig = np.linalg.eigvalsh(hess)
    assert eig[-1] / eig[0] > 300                # ill-conditioned
    return root, model_file, eig


def stability(capsys, run):
    return ur.analyze(capsys, run.folder, run.model_file)["answers"]["stability"]


def states_limit(ans: dict, lam: float, limit: float) -> None:
    text = ans["sentence"]
    assert ur.states_number(text, lam), text
    assert ur.states_number(text, limit), text


# ---------------------------------------------------------------- 5. lr against 2/lambda_max


def test_gd_at_half_the_limit_is_stable(linreg, capsys):
    root, model_file, eig = linreg
    lam = eig[-1]
    run = ur.linreg_gd(root / "half", model_file, lr=1.0 / lam, momentum=0.0, total=200, every=10)
    # truth: lr lambda_max = 1 < 2, every mode contracts, the loss never rises
    assert np.all(np.abs(1 - run.info["lr"] * eig) < 1)
    assert np.all(np.diff(run.losses) <= 1e-6 * run.losses[0])

    ans = stability(capsys, run)
    assert ans["verdict"] == "stable", ans["sentence"]
    assert ans["lr"] == pytest.approx(run.info["lr"], rel=1e-6)
    assert ans["sharpness"] == pytest.approx(lam, rel=0.02)
    assert ans["lr_limit"] == pytest.approx(2.0 / lam, rel=0.02)
    states_limit(ans, lam, 2.0 / lam)


def test_gd_above_the_limit_is_unstable(linreg, capsys):
    root, model_file, eig = linreg
    lam = eig[-1]
    run = ur.linreg_gd(root / "above", model_file, lr=2.6 / lam, momentum=0.0, total=30, every=2)
    # truth: the top mode grows by |1 - 2.6| = 1.6 a step: the loss grows a million-fold,
    # still finite
    assert abs(1 - run.info["lr"] * lam) == pytest.approx(1.6)
    assert np.all(np.isfinite(run.losses)) and np.all(np.isfinite(run.weights))
    assert run.losses[-1] > 1e6 * run.losses[0]

    ans = stability(capsys, run)
    assert ans["verdict"] in ("unstable", "diverged"), ans["sentence"]
    assert ans["lr"] == pytest.approx(run.info["lr"], rel=1e-6)


def test_heavy_ball_momentum_moves_the_limit_to_2_plus_2_beta(linreg, capsys):
    root, model_file, eig = linreg
    lam, beta = eig[-1], 0.9
    run = ur.linreg_gd(root / "momentum", model_file, lr=3.0 / lam, momentum=beta, total=300,
                       every=10)
    lr = run.info["lr"]
    # truth: lr lambda_max = 3 > 2 (plain GD would diverge) but < 2 + 2 beta = 3.8: the
    # heavy-ball iteration [[1 + beta - lr lambda, -beta], [1, 0]] contracts on every mode
    assert 2 < lr * lam < 2 + 2 * beta
    radius = [max(abs(np.linalg.eigvals([[1 + beta - lr * e, -beta], [1, 0]]))) for e in eig]
    assert max(radius) < 1
    assert run.losses[-1] < 1e-3 * run.losses[0]

    ans = stability(capsys, run)
    assert ans["verdict"] == "stable", ans["sentence"]
    assert ans["lr"] == pytest.approx(lr, rel=1e-6)
    assert ans["lr_limit"] == pytest.approx(3.8 / lam, rel=0.02)
    states_limit(ans, lam, 3.8 / lam)


# ---------------------------------------------------------------- 6. divergence


def test_a_diverged_relu_net_is_diverged_everywhere_and_never_converging(tmp_path, capsys):
    run = ur.diverging_relu(tmp_path)
    finite = np.isfinite(run.losses) & np.all(np.isfinite(run.weights), axis=1)
    # truth: a finite start whose loss grows a thousand-fold, then inf/NaN to the end
    n_finite = int(np.argmin(finite))
    assert n_finite >= 5 and not finite[n_finite:].any()
    assert np.max(run.losses[:n_finite]) > 1e3 * run.losses[0]
    assert not np.all(np.isfinite(run.weights[-1]))

    rep = ur.analyze(capsys, run.folder, run.model_file)   # exit 0, no traceback
    ans = rep["answers"]
    assert ans["loss"]["verdict"] == "diverged", ans["loss"]["sentence"]
    assert ans["weights"]["verdict"] == "diverged", ans["weights"]["sentence"]
    assert ans["stability"]["verdict"] in ("diverged", "unstable"), ans["stability"]["sentence"]
    assert ans["stability"]["lr"] == pytest.approx(1.5)
    # the limit is quoted where the instability began (the first snapshot beyond it), not
    # at the last finite weights, whose curvature has already blown up: here step 0,
    # where the exact Hessian of the model file's loss gives lambda_max
    st = ans["stability"]
    model = ur.model_from_source(ur.RELU_SRC, seed=0)
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    data = torch.load(run.model_file.with_name(run.model_file.stem + "_data.pt"))
    flat = torch.cat([p.reshape(-1) for p in params.values()])

    def loss_of(v):
        out, i = {}, 0
        for k, p in params.items():
            out[k] = v[i:i + p.numel()].reshape(p.shape)
            i += p.numel()
        pred = torch.func.functional_call(model, out, (data["x"].double(),))
        return torch.nn.functional.mse_loss(pred, data["y"].double())

    lam0 = float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, flat.double()))[-1])
    assert st["sharpness_step"] == 0 and st["sharpness"] == pytest.approx(lam0, rel=1e-2)
    assert st["lr_limit"] == pytest.approx(2 / lam0, rel=1e-2) and st["lr_limit"] < 1.5
    assert f"{2 / lam0:.3g}" in st["sentence"]
    for text in ur.sentences(rep):
        assert not NOT_AFTER_DIVERGENCE.search(text), text


# ---------------------------------------------------------------- 7. catapult


def test_a_catapult_is_said_and_not_called_unstable(tmp_path, capsys):
    run = ur.catapult(tmp_path)
    lr = run.info["lr"]
    ratios = [lr * np.linalg.eigvalsh(ur.uv_hessian(w))[-1] for w in run.weights]
    every = run.info["all_losses"]
    # truth (exact Hessians): above 2/lr at the first snapshot only, well below from the
    # next on; the loss spikes more than tenfold, then falls far below where it started
    assert ratios[0] == pytest.approx(3.0, rel=1e-4)
    assert max(ratios[1:]) < 1.0
    assert np.max(every[:10]) > 10 * every[0]
    assert every[-1] < 1e-6 * every[0]

    ans = stability(capsys, run)
    assert ans["verdict"] != "unstable", ans["sentence"]
    assert "catapult" in ans["sentence"].lower(), ans["sentence"]
    assert ans["lr"] == pytest.approx(lr, rel=1e-6)

"""Curvature, surfaces and the full-data loss on a run that diverged, from a user's model file.

The run is a plain PyTorch loop (ReLU MLP, MSE, SGD at a learning rate far above 2/lambda)
saved with ``torch.save(model.state_dict(), ...)`` at every step until the weights are
NaN; the truth (which snapshots are finite, their losses, their exact Hessians) is
computed here with plain torch.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import lossview
from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface.finite import LOSS_FULL, finite_prefix, model_loss_series
from lossview.core.surface.runsurface import run_to_end, surface_for_run
from lossview.core.surface.stability import iter_sharpness, sharpness_report
from lossview.core.surface.usermodel import load_model_file

STEPS = 18  # snapshots 0..17; with lr 0.07 the loss overflows at step 12, NaN from 13
LAST = 11  # the last finite snapshot
SPAN = 3e5  # a line this long from snapshot 0 through LAST overflows towards its ends

MODEL_FILE = '''
from pathlib import Path
import torch
from torch import nn
D = torch.load(Path(__file__).with_name("data.pt"))
def build_model():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
def batches():
    return [(D["x"][:40], D["y"][:40]), (D["x"][40:], D["y"][40:])]
'''
LOSS_FN = '''
def loss_fn(outputs, targets):
    return torch.nn.functional.mse_loss(outputs, targets)
'''


def net():
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    """``(folder, x, y, states)``: the user's loop, saved as users save it."""
    root = tmp_path_factory.mktemp("diverged")
    (root / "ckpt").mkdir()
    torch.manual_seed(0)
    x = torch.randn(64, 4) * 4
    y = x[:, :1] - x[:, 1:2]
    torch.save({"x": x, "y": y}, root / "data.pt")
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.07)
    states = []
    for step in range(STEPS):
        torch.save(model.state_dict(), root / "ckpt" / f"model_{step}.pt")
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    (root / "model.py").write_text(MODEL_FILE + LOSS_FN)
    (root / "noloss.py").write_text(MODEL_FILE)
    return root, x, y, states


def direct_loss(state, x, y) -> float:
    m = net()
    m.load_state_dict(state)
    with torch.no_grad():
        return float(nn.functional.mse_loss(m(x), y))


def finite_truth(states, x, y) -> list[int]:
    """Indices with finite weights and a finite full-data loss, computed directly."""
    return [i for i, s in enumerate(states)
            if all(torch.isfinite(v).all() for v in s.values()) and math.isfinite(direct_loss(s, x, y))]


def exact_top_eigenvalue(state, x, y) -> float:
    """Largest eigenvalue of the exact Hessian (torch.func.hessian in float64, eigvalsh)."""
    m = net().double()
    names = [n for n, _ in m.named_parameters()]
    shapes = [state[n].shape for n in names]
    theta = torch.cat([state[n].double().reshape(-1) for n in names])
    xd, yd = x.double(), y.double()

    def f(th):
        parts = torch.split(th, [sh.numel() for sh in shapes])
        ps = {n: t.reshape(sh) for n, t, sh in zip(names, parts, shapes)}
        return nn.functional.mse_loss(torch.func.functional_call(m, ps, (xd,)), yd)

    return float(np.linalg.eigvalsh(torch.func.hessian(f)(theta).numpy())[-1])


def test_the_fixture_really_diverges(diverged):
    _, x, y, states = diverged
    fin = finite_truth(states, x, y)
    assert fin == list(range(LAST + 1))  # then finite weights whose loss overflows; NaN after
    assert all(torch.isfinite(v).all() for v in states[LAST + 1].values())
    assert torch.isnan(states[LAST + 2]["0.weight"]).any()


def test_sharpness_rows_only_at_finite_snapshots_and_equal_the_exact_hessian(diverged):
    root, x, y, states = diverged
    run = open_run(root / "ckpt")
    table = sharpness_report(run, model_file=str(root / "model.py"))
    fin = finite_truth(states, x, y)
    assert table["steps"] == fin  # the whole finite prefix (12 <= 12 points)
    assert [s["step"] for s in table["skipped"]] == list(range(LAST + 1, STEPS))
    assert "loss is inf" in table["skipped"][0]["reason"]
    assert all("NaN in" in s["reason"] for s in table["skipped"][1:])
    assert table["reason"] is None and table["suspicious"] is None and table["loss_note"] is None
    for k in (0, LAST):
        assert table["sharpness"][k] == pytest.approx(exact_top_eigenvalue(states[k], x, y), rel=1e-3)
    for key in ("lr", "momentum", "optimizer", "threshold", "ratio"):
        assert key in table


def test_explicit_indices_skip_non_finite_snapshots_without_computing(diverged):
    root, *_ = diverged
    run = open_run(root / "ckpt")
    src = load_model_file(root / "model.py")
    gen = iter_sharpness(run, indices=[2, 14, -1], source=src)
    fractions = []
    while True:
        try:
            fractions.append(next(gen))
        except StopIteration as stop:
            table = stop.value
            break
    assert fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert table["steps"] == [2]
    assert table["skipped"] == [{"step": 14, "reason": "non-finite weights (NaN in 0.weight)"},
                                {"step": 17, "reason": "non-finite weights (NaN in 0.weight)"}]


def test_lanczos_on_nan_weights_is_a_one_line_error(diverged):
    _, x, y, states = diverged
    m = net()
    m.load_state_dict(states[-1])
    with pytest.raises(LossviewError, match="not finite"):
        lossview.sharpness(m, nn.MSELoss(), (x, y))


def test_nothing_finite_gives_a_reason_not_an_exception(diverged, tmp_path):
    root, _, _, states = diverged
    folder = tmp_path / "allnan"
    folder.mkdir()
    for step in (LAST + 1, LAST + 2, LAST + 3):
        torch.save(states[step], folder / f"model_{step}.pt")
    run = open_run(folder)
    table = sharpness_report(run, model_file=str(root / "model.py"))
    assert table["steps"] == [] and table["sharpness"] == []
    assert "no snapshot has finite weights" in table["reason"]
    assert [s["step"] for s in table["skipped"]] == [LAST + 1, LAST + 2, LAST + 3]
    assert "loss is inf" in table["skipped"][0]["reason"]
    with pytest.raises(LossviewError, match="nothing to draw a surface through"):
        run_to_end(surface_for_run(run, model_file=str(root / "model.py"), steps=3, cache=False))


def test_full_data_loss_series_equals_the_direct_loss(diverged):
    root, x, y, states = diverged
    run = open_run(root / "ckpt")
    series = model_loss_series(run, model_file=str(root / "model.py"))
    assert series.steps.tolist() == list(range(STEPS)) and LOSS_FULL == "loss_full"
    want = [direct_loss(s, x, y) for s in states[:LAST + 1]]
    np.testing.assert_allclose(series.values[:LAST + 1], want, rtol=1e-5)
    assert series.values[LAST + 1] == np.inf  # finite weights, overflowing loss
    assert np.isnan(series.values[LAST + 2:]).all()  # NaN weights: not evaluated
    part = model_loss_series(run, model_file=str(root / "model.py"), indices=[3, 0, -1])
    assert part.steps.tolist() == [0, 3, STEPS - 1]
    np.testing.assert_allclose(part.values[:2], [want[0], want[3]], rtol=1e-5)


def test_default_surface_spans_the_finite_snapshots(diverged):
    root, x, y, states = diverged
    run = open_run(root / "ckpt")
    s = run_to_end(surface_for_run(run, model_file=str(root / "model.py"), steps=9, cache=False))
    n = LAST + 1
    assert np.isfinite(s.coords[:n]).all() and np.isnan(s.coords[n:]).all()
    np.testing.assert_allclose(s.coords[LAST], [0, 0], atol=1e-9)  # through the last finite one
    # "explains x%": the PCA of the finite snapshots, computed here with numpy
    w = np.stack([np.concatenate([states[i][k].double().numpy().ravel() for k in states[i]])
                  for i in range(n)])
    sv = np.linalg.svd(w - w.mean(0), compute_uv=False) ** 2
    np.testing.assert_allclose(s.explained, sv[:2] / sv.sum(), rtol=1e-6)
    assert [d["step"] for d in s.skipped] == list(range(n, STEPS))
    assert s.skipped_text().startswith(f"left out {STEPS - n} of {STEPS} snapshots from step {n} on")
    assert np.isfinite(s.true_loss[:n]).all() and s.true_loss[n] == np.inf
    np.testing.assert_allclose(s.true_loss[:n], [direct_loss(st, x, y) for st in states[:n]],
                               rtol=1e-5)
    assert np.isnan(s.surface_loss[n:]).all() and np.isfinite(s.surface_loss[:n]).all()
    assert s.nonfinite.shape == s.loss.shape and s.n_nonfinite == int((~np.isfinite(s.loss)).sum())
    fp = finite_prefix(run, load_model_file(root / "model.py"))
    assert fp.last == LAST and fp.indices == list(range(n))


def test_grid_points_that_overflow_are_marked_and_counted(diverged):
    root, x, y, states = diverged
    run = open_run(root / "ckpt")
    s = run_to_end(surface_for_run(run, plane="line", snapshots=(0, LAST), steps=41, span=SPAN,
                                   model_file=str(root / "model.py"), cache=False))
    # the line w0 + a (w_last - w0), evaluated here point by point in float32
    expect = []
    for a in s.alphas:
        st = {k: states[0][k] + float(a) * (states[LAST][k] - states[0][k]) for k in states[0]}
        expect.append(not math.isfinite(direct_loss(st, x, y)))
    assert 0 < sum(expect) < len(expect)
    assert s.nonfinite[:, 0].tolist() == expect
    assert s.nonfinite_text() == f"{sum(expect)} of 41 grid points non-finite (loss overflowed)"


def test_cli_surface_and_analyze_on_the_diverged_run(diverged, tmp_path, capsys):
    root, x, y, states = diverged
    out = tmp_path / "s.npz"
    assert main(["surface", str(root / "ckpt"), "--model", str(root / "model.py"), "--plane",
                 "line", "0", str(LAST), "--span", str(SPAN), "--steps", "41", "--no-cache",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"left out {STEPS - LAST - 1} of {STEPS} snapshots from step {LAST + 1} on" in text
    with np.load(out) as f:
        n = int(f["nonfinite"].sum())
        assert n > 0 and json.loads(str(f["meta"]))["n_nonfinite"] == n
    assert f"{n} of 41 grid points non-finite (loss overflowed)" in text
    # a plane through a NaN snapshot is refused in one line
    assert main(["surface", str(root / "ckpt"), "--model", str(root / "model.py"), "--plane",
                 "line", "0", "12", "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "non-finite weights or loss" in err and "Traceback" not in err
    # analyze --model: exit 0, sharpness rows at the finite snapshots only
    assert main(["analyze", str(root / "ckpt"), "--model", str(root / "model.py"), "--json"]) == 0
    cap = capsys.readouterr()
    sharp = json.loads(cap.out)["sharpness"]
    assert sharp["steps"] == finite_truth(states, x, y) and "Traceback" not in cap.err
    assert all(v is not None and math.isfinite(v) for v in sharp["sharpness"])
    assert [d["step"] for d in sharp["skipped"]] == list(range(LAST + 1, STEPS))


def test_cli_surface_exits_2_when_nothing_is_finite(diverged, tmp_path, capsys):
    root, _, _, states = diverged
    folder = tmp_path / "allnan"
    folder.mkdir()
    for step in (LAST + 2, STEPS - 1):
        torch.save(states[step], folder / f"model_{step}.pt")
    capsys.readouterr()
    assert main(["surface", str(folder), "--model", str(root / "model.py"), "--no-cache"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(err) == 1 and "no snapshot has finite weights and a finite loss" in err[0]


def test_float_targets_without_loss_fn_is_a_one_line_error(diverged, capsys):
    root, *_ = diverged
    with pytest.raises(LossviewError, match="defines no loss_fn and its targets are float32"):
        load_model_file(root / "noloss.py")
    for cmd in (["surface", str(root / "ckpt"), "--no-cache"], ["analyze", str(root / "ckpt")]):
        capsys.readouterr()
        assert main([*cmd, "--model", str(root / "noloss.py")]) == 2
        err = capsys.readouterr().err
        assert "define loss_fn(outputs, targets)" in err and "Traceback" not in err

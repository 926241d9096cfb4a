"""The built-in problem `eos`: full-batch GD on a tanh MLP reaches the edge of stability.

Cohen et al. 2021: under gradient descent with step lr the sharpness (top Hessian
eigenvalue of the training loss) rises while below 2/lr, then hovers at 2/lr while the
loss keeps falling non-monotonically. The truth here is the closed form 2/lr: for two
learning rates the measured sharpness starts far below it, ends within 15 % of it, and the
two plateaus differ by the ratio of the learning rates.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossview.cli import main
from lossview.core.io import open_run
from lossview.core.surface.stability import iter_sharpness
from lossview.core.train.config import TrainConfig
from lossview.core.train.problems import PROBLEMS, build_problem
from lossview.core.train.trainer import Trainer, run_to_end

LRS = (0.025, 0.05)
STEPS, EVERY = 1000, 100  # 11 snapshots; sharpness reaches 2/lr by step ~400 at lr 0.025


def _drain(gen):
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """1,441 weights: one torch thread is fastest (and the machine may be shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def eos_runs(tmp_path_factory):
    """Both runs and the sharpness at every snapshot; one through the CLI, one the Trainer."""
    root = tmp_path_factory.mktemp("eos")
    out = {}
    for lr in LRS:
        path = root / f"lr{lr}"
        if lr == LRS[0]:
            rc = main(["train", "eos", "--lr", str(lr), "--steps", str(STEPS),
                       "--every", str(EVERY), "--out", str(path), "--quiet"])
            assert rc == 0
        else:
            summary = run_to_end(Trainer(TrainConfig("eos", lr=lr, steps=STEPS, every=EVERY),
                                         path).run())
            assert summary.status == "finished"
        run = open_run(path)
        table = _drain(iter_sharpness(run, indices=range(len(run))))
        out[lr] = (run, table)
    return out


def test_defaults_are_full_batch_gradient_descent_on_mse(eos_runs):
    run, _ = eos_runs[LRS[0]]
    assert run.spec["optimizer"]["name"] == "sgd" and run.spec["optimizer"]["momentum"] == 0.0
    assert run.spec["training"]["batch_size"] is None  # the whole dataset every step
    assert run.spec["problem"]["name"] == "eos"
    assert list(run.steps) == list(range(0, STEPS + 1, EVERY))
    p = PROBLEMS["eos"]
    assert (p.default_lr, p.default_batch_size, p.default_momentum) == (0.025, None, 0.0)


@pytest.mark.parametrize("lr", LRS)
def test_sharpness_rises_to_2_over_lr_and_hovers_there(eos_runs, lr):
    run, table = eos_runs[lr]
    assert table["steps"] == [int(s) for s in run.steps]
    sharp = np.array(table["sharpness"])
    ratio = sharp * lr / 2.0  # lr * lambda_max / 2: 1 at the stability limit
    assert np.allclose(table["threshold"], 2.0 / lr)
    assert np.allclose(table["ratio"], ratio)
    # progressive sharpening: far below the limit at the start, rising until it gets there
    assert ratio[0] < 0.2
    first = int(np.argmax(ratio >= 0.85))
    assert first > 0 and ratio[first] >= 0.85
    assert np.all(np.diff(sharp[:first + 1]) > 0)
    assert run.steps[first] <= STEPS // 2
    # then it hovers at 2/lr: within 15 % at most of the last third's snapshots
    late = ratio[len(ratio) - len(ratio) // 3 - 1:]
    assert np.mean((late >= 0.85) & (late <= 1.15)) >= 0.8
    assert 0.9 <= np.median(late) <= 1.1


@pytest.mark.parametrize("lr", LRS)
def test_loss_falls_non_monotonically_at_the_edge(eos_runs, lr):
    run, table = eos_runs[lr]
    loss = run.metric("loss")
    steps, values = np.asarray(loss.steps), np.asarray(loss.values)
    assert np.all(np.isfinite(values)) and len(values) == STEPS
    edge = table["steps"][int(np.argmax(np.array(table["sharpness"]) * lr / 2 >= 0.85))]
    at_edge = values[steps >= edge]
    # short timescales: the loss goes up at many steps (a stable GD run never does)
    assert np.mean(np.diff(at_edge) > 0) > 0.1
    # long timescales: it still decreases
    assert values[-100:].mean() < 0.8 * at_edge[:100].mean()
    assert values[-1] < 0.05 * values[0]


def test_plateau_sharpness_scales_like_one_over_lr(eos_runs):
    plateaus = {}
    for lr, (_, table) in eos_runs.items():
        sharp = np.array(table["sharpness"])
        plateaus[lr] = np.median(sharp[len(sharp) - len(sharp) // 3 - 1:])
    lo, hi = LRS
    assert plateaus[lo] / plateaus[hi] == pytest.approx(hi / lo, rel=0.1)


def test_the_trainer_does_exactly_plain_full_batch_gradient_descent(tmp_path):
    """The run's weights after 30 steps equal a plain PyTorch GD loop's on the same problem."""
    p = build_problem("eos")
    model = p.make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = p.train_data
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    run_to_end(Trainer(TrainConfig("eos", lr=0.05, steps=30, every=30), tmp_path / "r").run())
    run = open_run(tmp_path / "r")
    assert list(run.steps) == [0, 30]
    want = {k: v.detach().numpy() for k, v in model.named_parameters()}
    got = run.params(1)
    assert set(got) == set(want) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                     "out.weight", "out.bias"}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6)


def test_data_and_options():
    p = build_problem("eos", seed=3, n=50, n_val=0, dim=4, hidden=8, depth=3, amplitude=2.0)
    x, y = p.train_data
    assert x.shape == (50, 4) and y.shape == (50, 1) and p.val_data is None
    # the targets are a sine of one projection of the inputs: |y| <= amplitude
    assert float(y.abs().max()) <= 2.0 and float(y.std()) > 0.5
    names = [n for n, _ in p.make_model().named_parameters()]
    assert names == [f"{layer}.{w}" for layer in ("fc1", "fc2", "fc3", "out")
                     for w in ("weight", "bias")]
    q = build_problem("eos")
    assert q.train_data[0].shape == (200, 10) and q.val_data[0].shape == (200, 10)


@pytest.mark.parametrize(("argv", "msg"), [
    (["--set", "depth=0"], "eos needs n, dim, hidden and depth >= 1"),
    (["--set", "width=3"], "problem 'eos' has no option 'width'"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, argv, msg):
    rc = main(["train", "eos", "--steps", "5", "--out", str(tmp_path / "r"), *argv])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and "\n" not in err and "Traceback" not in err


def test_the_train_dialogs_catalogue_lists_eos():
    from lossview.core.tasks.jobs import problem_catalog
    from lossview.core.train.names import PROBLEM_NAMES

    catalog = _drain(problem_catalog())
    assert "eos" in PROBLEM_NAMES and "eos" in catalog
    entry = catalog["eos"]
    assert entry["default_lr"] == 0.025 and entry["default_batch_size"] is None
    assert entry["default_optimizer"] == "sgd" and "Edge of Stability" in entry["description"]


@pytest.mark.parametrize("lr", LRS)
def test_analyze_answers_edge_with_the_numbers(eos_runs, lr, capsys):
    """`lossview analyze` on the trained run: stability "edge", lr_limit = 2/lambda_max at
    the last snapshot (checked against the sharpness measured above), numbers in words."""
    import json

    run, table = eos_runs[lr]
    assert main(["analyze", str(run.path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    st = rep["answers"]["stability"]
    assert st["verdict"] == "edge", st["sentence"]
    assert st["lr"] == pytest.approx(lr) and st["optimizer"] == "sgd"
    assert st["lr_limit"] == pytest.approx(2.0 / st["sharpness"])
    assert st["lr_limit"] == pytest.approx(lr, rel=0.15)  # at the edge: 2/lambda ~ lr
    assert st["sharpness"] == pytest.approx(table["sharpness"][-1], rel=0.02)
    assert not st["catapult"]  # hovering a few % above 2/lr is the edge, not a catapult
    assert "edge of stability" in st["sentence"] and f"{2 / st['sharpness']:.3g}" in st["sentence"]
    assert st["sentence"] in rep["diagnosis"] and rep["sharpness"]["verdict"] == st["sentence"]

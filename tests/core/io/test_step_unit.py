"""Run.step_unit: "epoch" when the positions the reader found are epochs, else "step"; each case
from real files saved the way users save them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import lossview
from lossview.core.io import open_run


def _weights_per_epoch(n=3):
    """The model's state_dict after each of ``n`` epochs of a plain SGD loop."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(1))
    y = x.sum(1, keepdim=True)
    out = []
    for _ in range(n):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        out.append({k: v.clone() for k, v in model.state_dict().items()})
    return out


@pytest.mark.parametrize(("key", "unit"), [("epoch", "epoch"), ("global_step", "step"),
                                      ("iteration", "step")])
def test_position_key_in_a_checkpoint_dict(tmp_path, key, unit):
    for e, sd in enumerate(_weights_per_epoch()):
        torch.save({"model_state_dict": sd, key: 10 * e + 1}, tmp_path / f"c{e}.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1, 11, 21] and run.step_unit == unit


def test_step_key_wins_over_epoch_key(tmp_path):
    for e, sd in enumerate(_weights_per_epoch()):
        torch.save({"state_dict": sd, "epoch": e, "global_step": 50 * e}, tmp_path / f"c{e}.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [0, 50, 100] and run.step_unit == "step"
    assert [s.epoch for s in run.snapshots] == [0.0, 1.0, 2.0]


@pytest.mark.parametrize(("pattern", "positions", "unit"), [
    ("epoch_{e}.pt", [1, 2, 3], "epoch"),
    ("model_epoch{e}_loss_0.{e}5.pt", [1, 2, 3], "epoch"),   # the epoch, not the loss digits
    ("ep{e}.pt", [1, 2, 3], "epoch"),
    ("model_{e}.pt", [1, 2, 3], "step"),                    # a bare number: no unit known
    ("step_{e}00.pt", [100, 200, 300], "step"),
    ("epoch{e}-step{e}0.pt", [10, 20, 30], "step"),          # a step word wins
])
def test_bare_state_dicts_by_file_name(tmp_path, pattern, positions, unit):
    for e, sd in enumerate(_weights_per_epoch(), start=1):
        torch.save(sd, tmp_path / pattern.format(e=e))
    run = open_run(tmp_path)
    assert run.steps.tolist() == positions and run.step_unit == unit
    # the snapshots are in training order: the weights of epoch e at position e
    ref = _weights_per_epoch()
    np.testing.assert_array_equal(run.params(2)["weight"], ref[2]["weight"].numpy())


@pytest.mark.parametrize("names", [
    ["weights.01-0.95.npz", "weights.02-0.61.npz", "weights.10-0.12.npz"],  # Keras's classic
    ["weights.01.npz", "weights.02.npz", "weights.10.npz"],
    ["model.01-0.95.npz", "model.02-0.61.npz", "model.10-0.12.npz"],
    ["01-0.95.npz", "02-0.61.npz", "10-0.12.npz"],
])
def test_keras_style_epoch_names(tmp_path, names):
    for name, sd in zip(names, _weights_per_epoch()):
        np.savez(tmp_path / name, **{k: v.numpy() for k, v in sd.items()})
    run = open_run(tmp_path)
    # weights.{epoch:02d}-{val_loss:.2f}: the epoch orders them, not the loss's digits
    assert run.steps.tolist() == [1, 2, 10] and run.step_unit == "epoch"
    assert [s.source.name for s in run.snapshots] == names


def test_safetensors_metadata(tmp_path):
    sds = _weights_per_epoch()
    for e, sd in enumerate(sds):
        save_file(sd, str(tmp_path / f"a{e}.safetensors"), metadata={"epoch": str(e)})
    assert open_run(tmp_path).step_unit == "epoch"
    for e, sd in enumerate(sds):
        save_file(sd, str(tmp_path / f"a{e}.safetensors"), metadata={"step": str(7 * e)})
    run = open_run(tmp_path)
    assert run.steps.tolist() == [0, 7, 14] and run.step_unit == "step"


def test_mixed_positions_are_steps(tmp_path):
    sds = _weights_per_epoch()
    torch.save({"model_state_dict": sds[0], "epoch": 0}, tmp_path / "a.pt")
    torch.save({"model_state_dict": sds[1], "global_step": 5}, tmp_path / "b.pt")
    assert open_run(tmp_path).step_unit == "step"


def test_names_without_numbers_are_steps(tmp_path):
    for name, sd in zip(("epoch_first", "middle", "last"), _weights_per_epoch()):
        torch.save(sd, tmp_path / f"{name}.pt")
    assert open_run(tmp_path).step_unit == "step"


def test_real_framework_output(data_dir):
    assert open_run(data_dir / "torch_general").step_unit == "epoch"  # the tutorial's epoch_N.tar
    assert open_run(data_dir / "lightning").step_unit == "step"        # global_step
    assert open_run(data_dir / "hf_trainer").step_unit == "step"       # global_step
    assert open_run(data_dir / "torch_bare").step_unit == "step"       # model_N.pt


def test_native_runs_count_steps_unless_run_json_says(tmp_path):
    model = nn.Linear(2, 1)
    with lossview.Recorder(tmp_path / "a", model, every=1) as rec:
        for step in range(3):
            rec.log(step, loss=1.0)
    assert open_run(tmp_path / "a").step_unit == "step"
    with lossview.Recorder(tmp_path / "b", model, every=1, spec={"step_unit": "epoch"}) as rec:
        for epoch in range(3):
            rec.log(epoch, loss=1.0)
    assert open_run(tmp_path / "b").step_unit == "epoch"

"""The writer process copies a snapshot's tensors into one buffer through views it keeps
between snapshots: every snapshot still holds the weights of its step when parameters
are swapped (``p.data = ...``), change dtype (``model.double()``), are bfloat16 (widened
to float32, as the threaded writer stores them) or are views numpy cannot take."""

from __future__ import annotations

import torch
from safetensors import safe_open
from torch import nn

import lossview


def _stored(path, step):
    with safe_open(str(path / "checkpoints" / f"step_{step:09d}.safetensors"), framework="pt") as st:
        return {k: st.get_tensor(k) for k in st.keys()}  # noqa: SIM118 (safe_open)


def test_each_snapshot_holds_its_steps_weights_when_tensors_are_swapped(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 6))
    expected = {}
    with lossview.Recorder(tmp_path / "r", model, every=1) as rec:
        for step in range(8):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.25 * (step + 1))  # in place: the same memory
            if step == 2:  # a new tensor of the same shape (new memory)
                model[0].weight.data = torch.full((6, 4), -3.5)
            if step == 4:  # the same memory and shape, read transposed
                model[2].weight.data = model[2].weight.data.t()
            if step == 5:  # every parameter and buffer becomes float64
                model.double()
            model(torch.randn(5, 4, dtype=next(model.parameters()).dtype))  # BatchNorm stats
            rec.log(step, loss=float(step))
            expected[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for step, state in expected.items():
        got = _stored(tmp_path / "r", step)
        assert set(got) == set(state)
        for k, v in state.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, (step, k)
            assert torch.equal(got[k], v), (step, k)


def test_bfloat16_and_non_contiguous_weights_are_stored_exactly(tmp_path):
    torch.manual_seed(1)
    model = nn.Linear(3, 5).to(torch.bfloat16)
    model.register_parameter("strided", nn.Parameter(torch.randn(4, 6)[:, ::2]))  # not contiguous
    expected = {}
    with lossview.Recorder(tmp_path / "r", model, every=2) as rec:
        for step in range(5):
            with torch.no_grad():
                model.weight.mul_(1.5)
                model.strided.add_(1.0)
            rec.log(step, loss=1.0)
            expected[step] = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    for step in (0, 2, 4):
        got = _stored(tmp_path / "r", step)
        assert {k: v.dtype for k, v in got.items()} == dict.fromkeys(expected[step], torch.float32)
        for k, v in expected[step].items():
            assert torch.equal(got[k], v), (step, k)

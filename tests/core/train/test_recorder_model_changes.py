"""The Recorder reads the model's tensors once and re-checks them cheaply at each
snapshot (``ModelTensors``): every snapshot still holds exactly the trainable parameters
and buffers the model has at its step when modules are replaced, parameters frozen or
unfrozen, and buffers or parameters added or removed."""

from __future__ import annotations

import torch
from safetensors import safe_open
from torch import nn

import lossview
from lossview.core.train.model_tensors import ModelTensors


def _stored(path, step):
    with safe_open(str(path / "checkpoints" / f"step_{step:09d}.safetensors"), framework="pt") as st:
        return {k: st.get_tensor(k) for k in st.keys()}  # noqa: SIM118 (safe_open)


def _expected(model):
    out = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    out.update((n, b.detach().clone()) for n, b in model.named_buffers())
    return out


def _change(model, step):
    if step == 2:
        model[2] = nn.Linear(6, 3)  # a submodule replaced
    elif step == 3:
        model[0].weight.requires_grad_(False)  # frozen: no longer in the snapshot
    elif step == 4:
        model.register_buffer("extra", torch.arange(3.0))
    elif step == 5:
        del model.extra
    elif step == 6:
        model[1].register_parameter("scale", nn.Parameter(torch.full((2,), 7.0)))
    elif step == 7:
        model[0].weight.requires_grad_(True)
    elif step == 8:
        model[0].bias = nn.Parameter(torch.zeros(6))  # a parameter replaced in place


def test_each_snapshot_holds_the_models_tensors_of_its_step_as_it_changes(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 6))
    expected = {}
    with lossview.Recorder(tmp_path / "r", model, every=1) as rec:
        for step in range(10):
            _change(model, step)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.5)
            model(torch.randn(5, 4))  # BatchNorm statistics change
            rec.log(step, loss=float(step))
            expected[step] = _expected(model)
    for step, want in expected.items():
        got = _stored(tmp_path / "r", step)
        assert set(got) == set(want), step
        for k, v in want.items():
            assert torch.equal(got[k], v), (step, k)


def test_the_same_dicts_come_back_while_the_model_is_unchanged():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    tensors = ModelTensors(model)
    params, buffers = tensors.get()
    assert list(params) == ["0.weight", "0.bias", "2.weight", "2.bias"] and buffers == {}
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # values change, not the structure
    assert tensors.get()[0] is params
    model[2].bias.requires_grad_(False)
    again, _ = tensors.get()
    assert again is not params and list(again) == ["0.weight", "0.bias", "2.weight"]
    model[1] = nn.Identity()  # a module without tensors replaced: read again too
    assert tensors.get()[0] is not again


class _Chosen(nn.Module):
    """A model that lists only the parameters it chooses (its own named_parameters)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 2)
        self.b = nn.Linear(2, 2)
        self.only_a = False

    def named_parameters(self, *args, **kwargs):
        for name, p in super().named_parameters(*args, **kwargs):
            if not (self.only_a and name.startswith("b.")):
                yield name, p


def test_a_model_that_lists_its_own_tensors_is_asked_every_time(tmp_path):
    model = _Chosen()
    with lossview.Recorder(tmp_path / "r", model, every=1) as rec:
        rec.log(0, loss=1.0)
        model.only_a = True  # nothing in the module tree changes
        rec.log(1, loss=1.0)
    assert set(_stored(tmp_path / "r", 0)) == {"a.weight", "a.bias", "b.weight", "b.bias"}
    assert set(_stored(tmp_path / "r", 1)) == {"a.weight", "a.bias"}

"""Wrapper prefixes (torch.compile's ``_orig_mod.``, DDP/DataParallel's ``module.``) are
removed so snapshots saved before and after wrapping line up, and bfloat16/float16 tensors
are read exactly. Every folder is written by a real PyTorch loop in the test."""

import numpy as np
import torch
from safetensors.torch import save_file

from lossview.core.io import open_run
from lossview.core.io.normalise import normalised_names


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))


def _train(model, opt, steps):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(16, 3, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _plain(sd):
    return {k: v.detach().clone().numpy() for k, v in sd.items()}


def test_snapshots_saved_before_and_after_torch_compile_line_up(tmp_path):
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    truth = {}
    for step in (2, 4):
        _train(net, opt, 2)
        torch.save(net.state_dict(), tmp_path / f"step_{step}.pt")
        truth[step] = _plain(net.state_dict())
    compiled = torch.compile(net, backend="eager")  # the real OptimizedModule, no C++ build
    for step in (6, 8):
        _train(compiled, opt, 2)
        sd = compiled.state_dict()
        assert all(k.startswith("_orig_mod.") for k in sd)
        torch.save(sd, tmp_path / f"step_{step}.pt")
        truth[step] = _plain(net.state_dict())

    run = open_run(tmp_path)
    assert run.steps.tolist() == [2, 4, 6, 8]
    assert run.param_names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert run.n_params == 3 * 5 + 5 + 5 + 1
    assert run.spec["normalised"] == [
        "removed '_orig_mod.' (torch.compile) from the tensor names of 2 of 4 snapshots "
        "(steps 6, 8)"]
    assert not any("skipped" in w for w in run.warnings)
    for i, step in enumerate(run.steps):
        for k, v in run.params(i).items():
            np.testing.assert_array_equal(v, truth[int(step)][k])
    # the user's plain (uncompiled) model loads the compiled run's snapshot as it is
    fresh = _net()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in run.params(3).items()})
    np.testing.assert_array_equal(run.vector(3), np.concatenate(
        [p.detach().numpy().ravel() for p in fresh.parameters()]))


def test_data_parallel_and_compiled_data_parallel_names_line_up_in_safetensors(tmp_path):
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    wrappers = {1: net, 2: torch.nn.DataParallel(net),
                3: torch.nn.DataParallel(torch.compile(net, backend="eager"))}
    truth = {}
    for step, model in wrappers.items():
        _train(model, opt, 1)
        sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, str(tmp_path / f"model_step{step}.safetensors"))
        truth[step] = (sorted(sd), _plain(net.state_dict()))
    assert truth[2][0][0].startswith("module.") and truth[3][0][0].startswith("module._orig_mod.")

    run = open_run(tmp_path)
    assert run.format == "safetensors" and run.steps.tolist() == [1, 2, 3]
    assert set(run.param_names) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert run.spec["normalised"] == [
        "removed '_orig_mod.' (torch.compile) from the tensor names of 1 of 3 snapshots (steps 3)",
        "removed 'module.' (DDP/DataParallel) from the tensor names of 2 of 3 snapshots "
        "(steps 2, 3)"]
    for i, step in enumerate(run.steps):
        for k, v in run.params(i).items():
            np.testing.assert_array_equal(v, truth[int(step)][1][k])


def test_a_submodule_called_module_among_others_is_kept():
    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Linear(2, 2)
            self.head = torch.nn.Linear(2, 1)

    names = list(Holder().state_dict())
    assert normalised_names(names) == ({}, set())
    only = list(torch.nn.DataParallel(torch.nn.Linear(2, 2)).state_dict())
    assert normalised_names(only)[0] == {"module.weight": "weight", "module.bias": "bias"}
    # names that would collide once unwrapped are left alone
    assert normalised_names(["_orig_mod.a", "a"]) == ({}, set())


def test_a_folder_without_wrappers_gets_no_note(tmp_path):
    net = _net()
    torch.save(net.state_dict(), tmp_path / "step_1.pt")
    torch.save(net.state_dict(), tmp_path / "step_2.pt")
    run = open_run(tmp_path)
    assert "normalised" not in run.spec
    assert type(run.reader).__name__ == "TorchReader"


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_bfloat16_and_float16_safetensors_are_read_bit_exactly(tmp_path):
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    truth = {}
    for step, dtype in ((10, torch.bfloat16), (20, torch.bfloat16), (30, torch.float16)):
        _train(net, opt, 3)
        sd = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}
        sd["counter"] = torch.tensor([step], dtype=torch.int64)
        save_file(sd, str(tmp_path / f"step_{step}.safetensors"))
        truth[step] = {k: v.float().numpy() for k, v in sd.items() if k != "counter"}

    run = open_run(tmp_path)
    assert run.steps.tolist() == [10, 20, 30]
    assert run.buffer_names == ["counter"]
    assert run.spec["normalised"] == [
        "bfloat16 tensors in 2 of 3 snapshots read as float32 (exactly)",
        "float16 tensors in 1 of 3 snapshots read as float32 (exactly)"]
    assert run.float_dtype == np.float32
    for i, step in enumerate(run.steps):
        got = run.params(i)
        for k, want in truth[int(step)].items():
            assert got[k].dtype == np.float32
            np.testing.assert_array_equal(_bits(got[k]), _bits(want))
        v = run.vector(i, dtype=np.float32)
        np.testing.assert_array_equal(
            _bits(v), _bits(np.concatenate([truth[int(step)][k].ravel() for k in run.param_names])))
    assert run.buffers(0)["counter"].tolist() == [10]
    # bfloat16 keeps float32's exponent and the top 7 mantissa bits: the low 16 bits are 0
    assert not np.any(_bits(run.vector(0, dtype=np.float32)) & 0xFFFF)


def test_bfloat16_is_read_as_float32_also_once_ml_dtypes_gives_numpy_a_bfloat16(tmp_path):
    """keras and jax import ml_dtypes, after which numpy (and safetensors' numpy API) hand
    out bfloat16 arrays: lossview still gives float32, bit-exact."""
    ml_dtypes = __import__("pytest").importorskip("ml_dtypes")
    from lossview.core.io.arrays import read_safetensors_file

    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    save_file({"w": w, "h": w.to(torch.float16), "i": torch.arange(3)},
              str(tmp_path / "a.safetensors"))
    assert np.dtype(ml_dtypes.bfloat16).itemsize == 2
    got = read_safetensors_file(tmp_path / "a.safetensors")
    assert list(got) == ["h", "i", "w"]
    assert got["w"].dtype == got["h"].dtype == np.float32 and got["i"].dtype == np.int64
    np.testing.assert_array_equal(_bits(got["w"]), _bits(w.float().numpy()))
    np.testing.assert_array_equal(_bits(got["h"]), _bits(w.to(torch.float16).float().numpy()))


def test_tied_weights_in_a_torch_save_state_dict_count_once(tmp_path):
    """nanoGPT ties ``lm_head.weight`` to ``transformer.wte.weight``: ``state_dict()`` lists
    both names, ``torch.save`` stores one storage; the model has one parameter."""

    class TinyLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = torch.nn.Embedding(11, 4)
            self.ln = torch.nn.LayerNorm(4)
            self.lm_head = torch.nn.Linear(4, 11, bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx):
            return self.lm_head(self.ln(self.wte(idx)))

    torch.manual_seed(0)
    model = TinyLM()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    truth = {}
    for it in (1, 2, 3):
        idx = torch.randint(0, 11, (8,))
        loss = torch.nn.functional.cross_entropy(model(idx), idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.save({"model": model.state_dict(), "iter_num": it}, tmp_path / f"ckpt_{it}.pt")
        truth[it] = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}

    run = open_run(tmp_path)
    assert run.n_params == sum(p.numel() for p in model.parameters()) == 11 * 4 + 4 + 4
    assert run.param_names == ["wte.weight", "ln.weight", "ln.bias"]
    for i, it in enumerate((1, 2, 3)):
        for k, v in run.params(i).items():
            np.testing.assert_array_equal(v, truth[it][k])
    np.testing.assert_array_equal(truth[3]["lm_head.weight"], run.params(2)["wte.weight"])

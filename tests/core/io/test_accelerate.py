"""accelerate's ``save_state`` folders written by a real ``Accelerator`` loop on the CPU:
automatic naming (``checkpoints/checkpoint_<i>``), folders named by the step, pickled
weights with tied tensors, two prepared models. Only the weight files are ever opened."""

import sys

import numpy as np
import pytest
import torch

accelerate = pytest.importorskip("accelerate")
from accelerate.utils import ProjectConfiguration  # noqa: E402

from lossview.core.io import detect_format, open_run  # noqa: E402

_OPENED: list[str] | None = None


def _audit(event, args):
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)


def _opened_during(fn):
    """Every file Python opens while ``fn`` runs (the ``open`` audit event), and its result."""
    global _OPENED
    _OPENED = []
    try:
        result = fn()
        return result, list(_OPENED)
    finally:
        _OPENED = None


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def _loop(acc, model, saves=3, every=5, save=lambda acc, step: acc.save_state()):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    model, opt, sched = acc.prepare(model, opt, sched)
    g = torch.Generator().manual_seed(2)
    truth = []
    for step in range(1, saves * every + 1):
        x = torch.randn(16, 4, generator=g)
        loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
        acc.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % every == 0:
            save(acc, step)
            truth.append({k: v.detach().clone().numpy()
                          for k, v in acc.unwrap_model(model).state_dict().items()})
    return truth


def test_automatic_checkpoint_naming_opens_as_one_run_from_project_or_checkpoints(tmp_path):
    project = tmp_path / "project"
    acc = accelerate.Accelerator(cpu=True, project_config=ProjectConfiguration(
        project_dir=str(project), automatic_checkpoint_naming=True))
    truth = _loop(acc, _net())
    ck = project / "checkpoints"
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_0", "checkpoint_1", "checkpoint_2"]
    assert {p.name for p in (ck / "checkpoint_0").iterdir()} == {
        "model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"}

    for where in (project, ck):
        assert detect_format(where) == "accelerate"
        run, opened = _opened_during(lambda where=where: open_run(where))
        run.vector(2)
        assert run.format == "accelerate"
        assert run.steps.tolist() == [0, 1, 2]  # save indices: no step is recorded
        assert run.spec["steps_from"].startswith("accelerate's save index")
        assert run.warnings == [
            "steps are accelerate's checkpoint numbers (checkpoint_0, _1, ...), not optimizer "
            "steps: save_state keeps the step in random_states_*.pkl, a pickle lossview never "
            "opens (save_state(f'ckpt/step_{step}') names it)"]
        assert run.spec["not_opened"] == ["optimizer.bin", "random_states_0.pkl", "scheduler.bin"]
        assert run.n_params == 4 * 8 + 8 + 8 + 1
        assert not [f for f in opened if f.endswith((".bin", ".pkl"))]
        for i in range(3):
            for k, v in run.params(i).items():
                np.testing.assert_array_equal(v, truth[i][k])


def test_one_save_state_folder_opened_by_itself(tmp_path):
    acc = accelerate.Accelerator(cpu=True, project_config=ProjectConfiguration(
        project_dir=str(tmp_path), automatic_checkpoint_naming=True))
    truth = _loop(acc, _net(), saves=2)
    run = open_run(tmp_path / "checkpoints" / "checkpoint_1")
    assert run.format == "accelerate" and run.steps.tolist() == [1]
    for k, v in run.params(0).items():
        np.testing.assert_array_equal(v, truth[1][k])


def test_save_state_into_folders_named_by_step_takes_the_steps_from_the_names(tmp_path):
    acc = accelerate.Accelerator(cpu=True)
    truth = _loop(acc, _net(),
                  save=lambda acc, step: acc.save_state(str(tmp_path / f"step_{step}")))
    run = open_run(tmp_path)
    assert run.format == "accelerate"
    assert run.steps.tolist() == [5, 10, 15]
    assert run.spec["steps_from"] == "the numbers in the folder names"
    assert run.warnings == []
    np.testing.assert_array_equal(run.vector(2), np.concatenate(
        [truth[2][k].ravel() for k in run.param_names]))


def test_pickled_weights_with_tied_tensors_count_once(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg)
    sd = model.state_dict()
    assert sd["lm_head.weight"].data_ptr() == sd["transformer.wte.weight"].data_ptr()
    acc = accelerate.Accelerator(cpu=True)
    model = acc.prepare(model)
    for name, safe in (("bin", False), ("st", True)):
        acc.save_state(str(tmp_path / name / "step_1"), safe_serialization=safe)
        acc.save_state(str(tmp_path / name / "step_2"), safe_serialization=safe)
    assert (tmp_path / "bin" / "step_1" / "pytorch_model.bin").is_file()

    n_trainable = sum(p.numel() for p in model.parameters())
    pickled, safe = open_run(tmp_path / "bin"), open_run(tmp_path / "st")
    assert pickled.n_params == safe.n_params == n_trainable == 29696
    assert pickled.spec["tied"] == ["lm_head.weight = transformer.wte.weight"]
    assert "tied" not in safe.spec  # accelerate dropped the alias while saving
    assert sorted(pickled.param_names) == sorted(safe.param_names)  # safetensors sorts names
    want = {k: v.detach().numpy() for k, v in acc.unwrap_model(model).state_dict().items()}
    for run in (pickled, safe):
        for k, v in run.params(1).items():
            np.testing.assert_array_equal(v, want[k])


def test_a_second_prepared_model_is_left_out_with_a_warning(tmp_path):
    acc = accelerate.Accelerator(cpu=True)
    a = acc.prepare(_net())
    b = acc.prepare(torch.nn.Linear(3, 2))
    for step in (1, 2):
        with torch.no_grad():
            a[0].weight.add_(0.1)
            b.weight.add_(0.1)
        acc.save_state(str(tmp_path / f"step_{step}"))
    assert (tmp_path / "step_1" / "model_1.safetensors").is_file()
    run = open_run(tmp_path)
    assert run.n_params == 4 * 8 + 8 + 8 + 1
    assert run.warnings == [
        f"step_{s}: opened the first model (model.safetensors); left out model_1.safetensors "
        f"(another model given to accelerator.prepare)" for s in (1, 2)]


def test_lossview_analyze_json_on_a_save_state_project(tmp_path, capsys):
    import json

    from lossview.cli import main

    acc = accelerate.Accelerator(cpu=True, project_config=ProjectConfiguration(
        project_dir=str(tmp_path), automatic_checkpoint_naming=True))
    _loop(acc, _net())
    assert main(["analyze", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert rep["format"] == "accelerate" and rep["steps"] == [0, 1, 2] and rep["n_params"] == 49
    # the warning is said, once, in the opened-as line (not on stderr)
    assert rep["opened_as"].count("accelerate's checkpoint numbers") == 1 and err == ""

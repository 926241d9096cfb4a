"""Folders of ``save_pretrained`` folders, one per step, written by a user's loop with the
real transformers (sharded with a small ``max_shard_size``), tied weights and bfloat16."""

import csv
import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from lossview.core.io import detect_format, open_run  # noqa: E402

SHARD = "20KB"  # GPT-2 below is 119 kB in float32: seven shards


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32)
    return transformers.GPT2LMHeadModel(cfg)


def _loop(out, steps=(2, 4, 6), name="step_{}", dtype=None, log=False):
    """A plain training loop that calls ``save_pretrained`` every few steps; returns the
    weights at each save (tied ``lm_head.weight`` left out: it is ``transformer.wte.weight``)."""
    model = _gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    truth, rows = {}, []
    for step in range(1, max(steps) + 1):
        x = torch.randint(0, 100, (4, 16), generator=g)
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        rows.append((step, loss.item()))
        if step in steps:
            saved = model if dtype is None else _gpt2().to(dtype)
            if dtype is not None:
                saved.load_state_dict(model.state_dict())
            saved.save_pretrained(out / name.format(step), max_shard_size=SHARD)
            truth[step] = {k: v.detach().float().numpy().copy()
                           for k, v in saved.state_dict().items() if k != "lm_head.weight"}
    if log:
        with open(out / "metrics.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["step", "loss"])
            w.writerows(rows)
    return model, truth, rows


def _n_trainable(model):
    return sum(p.numel() for p in model.parameters())  # tied parameters once


def test_per_step_sharded_save_pretrained_folders_open_as_one_run(tmp_path):
    out = tmp_path / "out"
    model, truth, rows = _loop(out, log=True)
    step2 = out / "step_2"
    shards = sorted(step2.glob("model-*-of-*.safetensors"))
    assert len(shards) > 2 and (step2 / "model.safetensors.index.json").is_file()
    assert "lm_head.weight" not in json.loads(
        (step2 / "model.safetensors.index.json").read_text())["weight_map"]

    assert detect_format(out) == "hf-pretrained"
    run = open_run(out)
    assert run.format == "hf-pretrained"
    assert run.steps.tolist() == [2, 4, 6]
    assert run.n_params == _n_trainable(model) == 29696  # lm_head = wte counts once
    assert "lm_head.weight" not in run.param_names
    assert run.spec["steps_from"] == "the numbers in the folder names"
    assert run.spec["model_folders"] == ["step_2", "step_4", "step_6"]
    assert run.warnings == []
    for i, step in enumerate(run.steps):
        snap = run.snapshots[i]
        assert len(snap.meta["files"]) == len(shards)
        assert (snap.source.parent / "config.json").is_file()
        got = run.params(i)
        for k in run.param_names:
            np.testing.assert_array_equal(got[k], truth[int(step)][k])
    loss = run.metric("loss")
    assert loss.steps.tolist() == [r[0] for r in rows]
    np.testing.assert_allclose(loss.values, [r[1] for r in rows])


def test_one_sharded_folder_opened_by_itself_is_one_snapshot(tmp_path):
    model, truth, _ = _loop(tmp_path, steps=(3,))
    run = open_run(tmp_path / "step_3")
    assert run.format == "hf-pretrained" and run.steps.tolist() == [3]
    assert run.n_params == _n_trainable(model)
    np.testing.assert_array_equal(
        run.vector(0), np.concatenate([truth[3][k].ravel() for k in run.param_names]))


def test_sharded_save_pretrained_in_trainer_named_folders_reads_the_index(tmp_path):
    model, truth, _ = _loop(tmp_path, steps=(5, 10), name="checkpoint-{}")
    run = open_run(tmp_path)
    assert run.format == "hf-trainer" and run.steps.tolist() == [5, 10]
    assert run.n_params == _n_trainable(model)
    for i, step in enumerate(run.steps):
        for k, v in run.params(i).items():
            np.testing.assert_array_equal(v, truth[int(step)][k])


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_bfloat16_save_pretrained_shards_are_read_bit_exactly(tmp_path):
    model, truth, _ = _loop(tmp_path, steps=(1, 2), dtype=torch.bfloat16)
    from safetensors import safe_open

    shard = next((tmp_path / "step_1").glob("model-*.safetensors"))
    with safe_open(str(shard), framework="pt") as f:
        assert {str(f.get_slice(k).get_dtype()) for k in f.keys()} == {"BF16"}  # noqa: SIM118
    run = open_run(tmp_path)
    assert run.n_params == _n_trainable(model)
    assert run.spec["normalised"] == [
        "bfloat16 tensors in every snapshot read as float32 (exactly)"]
    for i, step in enumerate(run.steps):
        got = run.params(i)
        for k in run.param_names:  # truth: torch's own bfloat16 -> float32 conversion
            assert got[k].dtype == np.float32
            np.testing.assert_array_equal(_bits(got[k]), _bits(truth[int(step)][k]))


def test_a_step_folder_with_a_missing_shard_is_named_and_skipped(tmp_path):
    _model, _truth, _ = _loop(tmp_path, steps=(1, 2, 3))
    victim = sorted((tmp_path / "step_2").glob("model-*.safetensors"))[1]
    victim.unlink()
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1, 3]
    assert len(run.warnings) == 1
    assert run.warnings[0].startswith("skipped step_2: ") and "not readable" in run.warnings[0]


def test_a_truncated_shard_is_named_when_its_snapshot_is_read(tmp_path):
    from lossview.core.errors import LossviewError

    _loop(tmp_path, steps=(1, 2))
    run = open_run(tmp_path)
    victim = sorted((tmp_path / "step_2").glob("model-*.safetensors"))[-1]
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(LossviewError, match=victim.name):
        run.params(1)


def test_folders_of_separate_models_are_not_taken_for_steps(tmp_path):
    """``seed1/``, ``seed2/``: two fine-tunes, not two steps of one run."""
    from lossview.core.errors import LossviewError

    for seed in (1, 2):
        torch.manual_seed(seed)
        _gpt2().save_pretrained(tmp_path / f"seed{seed}")
    with pytest.raises(LossviewError, match="open one of them"):
        open_run(tmp_path)
    assert open_run(tmp_path / "seed2").format == "hf-pretrained"


def test_a_final_folder_goes_last_and_other_models_are_named(tmp_path):
    model, _truth, _ = _loop(tmp_path, steps=(1, 2))
    model.save_pretrained(tmp_path / "final")
    _gpt2().save_pretrained(tmp_path / "base-model")
    run = open_run(tmp_path)
    assert run.format == "hf-pretrained"
    assert run.steps.tolist() == [1, 2, 3]
    assert run.snapshots[-1].meta["folder"] == "final"
    assert "ignored 1 sub-folder whose names hold no step (another run or model?): base-model" \
        in run.warnings
    final = model.state_dict()
    for k, v in run.params(2).items():
        np.testing.assert_array_equal(v, final[k].detach().numpy())


def test_lossview_analyze_json_on_per_step_shards(tmp_path, capsys):
    from lossview.cli import main

    model, _, rows = _loop(tmp_path, steps=(2, 4, 6), log=True)
    capsys.readouterr()
    assert main(["analyze", str(tmp_path), "--json"]) == 0
    out, err = capsys.readouterr()
    rep = json.loads(out)
    assert err == ""
    assert rep["format"] == "hf-pretrained" and rep["steps"] == [2, 4, 6]
    assert rep["n_params"] == _n_trainable(model)
    assert rep["metrics"]["loss"]["steps"] == [r[0] for r in rows]

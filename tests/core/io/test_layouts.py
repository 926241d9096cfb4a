"""Variants of the real layouts: Lightning's last.ckpt and versions, HF shards and final
model, other torch checkpoint dicts, names without numbers."""

import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from lossview.core.io import open_run


def _copy(data_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(data_dir / name, dst)
    return dst


def test_lightning_last_ckpt_repeating_the_newest_is_dropped_silently(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "lightning")
    ck = root / "lightning_logs" / "version_0" / "checkpoints"
    shutil.copy(ck / "epoch=2-step=6.ckpt", ck / "last.ckpt")
    run = open_run(root)
    assert run.steps.tolist() == [2, 4, 6]
    assert run.snapshots[-1].source.name == "epoch=2-step=6.ckpt"
    assert run.warnings == []


def test_lightning_several_versions_open_the_newest(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "lightning")
    v0 = root / "lightning_logs" / "version_0"
    v3 = root / "lightning_logs" / "version_3"
    shutil.copytree(v0, v3)
    for f in (v3 / "checkpoints").glob("epoch=[01]*"):
        f.unlink()
    lines = (v3 / "metrics.csv").read_text().splitlines()
    (v3 / "metrics.csv").write_text("\n".join(lines[:3]) + "\n")
    run = open_run(root)
    assert run.steps.tolist() == [6]
    assert [s.source.parent.parent.name for s in run.snapshots] == ["version_3"]
    assert run.metric("train_loss").steps.tolist() == [0, 1]  # version_3's own csv
    assert run.warnings == ["several Lightning runs here; opened version_3, ignored version_0"]


def _shard(src, dst_dir):
    """Split a model.safetensors into two shards with the index transformers writes."""
    t = load_file(str(src))
    names = sorted(t)
    half = len(names) // 2
    parts = {"model-00001-of-00002.safetensors": names[:half],
             "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for fname, keys in parts.items():
        save_file({k: t[k] for k in keys}, str(dst_dir / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(keys, fname))
    (dst_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    src.unlink()


def test_hf_sharded_checkpoints_are_one_snapshot_each(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "hf_trainer")
    ref = open_run(data_dir / "hf_trainer")
    for ck in root.glob("checkpoint-*"):
        _shard(ck / "model.safetensors", ck)
    run = open_run(root)
    assert run.steps.tolist() == [2, 4, 6]
    assert set(run.param_names) == set(ref.param_names)
    for i in range(3):
        a, b = run.params(i), ref.params(i)
        assert all(np.array_equal(a[n], b[n]) for n in b)


def test_hf_final_model_after_the_last_checkpoint(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "hf_trainer")
    # what trainer.save_model() + save_state() leave after training on to step 7
    shutil.copy(root / "checkpoint-6" / "model.safetensors", root / "model.safetensors")
    state = json.loads((root / "checkpoint-6" / "trainer_state.json").read_text())
    state["global_step"] = 7
    state["log_history"].append({"epoch": 2.3, "loss": 0.5, "step": 7})
    (root / "trainer_state.json").write_text(json.dumps(state))
    run = open_run(root)
    assert run.steps.tolist() == [2, 4, 6, 7]
    assert run.metric("loss").steps.tolist()[-1] == 7
    # the same file with the last checkpoint's step repeats it and is not added
    state["global_step"] = 6
    (root / "trainer_state.json").write_text(json.dumps(state))
    assert open_run(root).steps.tolist() == [2, 4, 6]


def test_hf_checkpoint_without_weights_is_named(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "hf_trainer")
    (root / "checkpoint-8").mkdir()
    (root / "checkpoint-8" / "trainer_state.json").write_text("{}")
    run = open_run(root)
    assert run.steps.tolist() == [2, 4, 6]
    assert run.warnings == ["skipped checkpoint-8: no model weights in it"]


@pytest.mark.parametrize("layout", ["model", "tensor loss", "net + iteration"])
def test_other_checkpoint_dicts(tmp_path, layout):
    for k in range(3):
        sd = {"fc.weight": torch.full((2, 3), float(k)), "fc.bias": torch.zeros(2)}
        if layout == "model":  # timm/DeiT style
            obj = {"model": sd, "optimizer": {"state": {}}, "epoch": k}
        elif layout == "tensor loss":
            obj = {"model_state_dict": sd, "epoch": k, "loss": torch.tensor(1.0 / (k + 1))}
        else:
            obj = {"net": sd, "iteration": 100 * k}
        torch.save(obj, tmp_path / f"c{k}.pth")
    run = open_run(tmp_path)
    assert run.steps.tolist() == ([0, 100, 200] if layout == "net + iteration" else [0, 1, 2])
    assert run.n_params == 8
    np.testing.assert_array_equal(run.params(2)["fc.weight"], np.full((2, 3), 2.0))
    if layout == "tensor loss":
        np.testing.assert_allclose(run.metric("loss").values, [1, 1 / 2, 1 / 3], rtol=1e-7)


def test_names_without_numbers_are_ordered_by_name_with_a_warning(tmp_path):
    for name, v in (("best", 2.0), ("alpha", 0.0), ("final", 3.0), ("beta", 1.0)):
        np.savez(tmp_path / f"{name}.npz", w=np.full(2, v, np.float32))
    run = open_run(tmp_path)
    assert [s.source.stem for s in run.snapshots] == ["alpha", "best", "beta", "final"]
    assert run.steps.tolist() == [0, 1, 2, 3]
    assert any("no step number" in w for w in run.warnings)


def test_safetensors_step_metadata_wins_over_the_name(tmp_path):
    for name, step in (("a_9", 300), ("a_10", 100), ("a_11", 200)):
        save_file({"w": np.full(2, step, np.float32)}, str(tmp_path / f"{name}.safetensors"),
                  metadata={"step": str(step), "epoch": "0.5"})
    run = open_run(tmp_path)
    assert run.steps.tolist() == [100, 200, 300]
    assert [float(run.vector(i)[0]) for i in range(3)] == [100.0, 200.0, 300.0]
    assert all(math.isclose(s.epoch, 0.5) for s in run.snapshots)


def test_legacy_torch_format_loads_without_mmap(tmp_path):
    for k in (1, 2):
        torch.save({"w": torch.full((3,), float(k))}, tmp_path / f"m{k}.pt",
                   _use_new_zipfile_serialization=False)
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1, 2] and run.warnings == []
    np.testing.assert_array_equal(run.vector(1), [2.0, 2.0, 2.0])


def test_files_in_the_folder_win_over_a_ckpt_deeper_down(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "torch_bare")
    (root / "old").mkdir()
    shutil.copy(data_dir / "lightning" / "lightning_logs" / "version_0" / "checkpoints" /
                "epoch=0-step=2.ckpt", root / "old" / "epoch=0-step=2.ckpt")
    run = open_run(root)
    assert run.format == "torch" and run.steps.tolist() == [1, 2, 10, 20]
    flat = tmp_path / "flat"
    shutil.copytree(data_dir / "lightning" / "lightning_logs" / "version_0" / "checkpoints", flat)
    run = open_run(flat)
    assert run.format == "lightning" and run.steps.tolist() == [2, 4, 6]

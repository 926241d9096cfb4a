"""Each reader against folders written by the real libraries (tests/data/make_fixtures.py).

Reference values come from the files themselves, read independently with torch,
safetensors, numpy, csv and json, so a reader that drops, reorders or mislabels tensors,
steps or metrics fails.
"""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from lossview.core.io import detect_format, open_run

# Exact: lossview copies the stored float32 values; float64 widening is exact.
EXACT = {"rtol": 0, "atol": 0}


def _flat(sd, names):
    return np.concatenate([np.asarray(sd[n], dtype=np.float64).ravel() for n in names])


def _torch_sd(path, key=None):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    sd = obj if key is None else obj[key]
    return {k: v.numpy() for k, v in sd.items()}


@pytest.mark.parametrize(("folder", "fmt", "steps"), [
    ("torch_bare", "torch", [1, 2, 10, 20]),
    ("torch_general", "torch", [1, 2, 3]),
    ("torch_wrapped", "torch", [100, 200, 300]),
    ("lightning", "lightning", [2, 4, 6]),
    ("hf_trainer", "hf-trainer", [2, 4, 6]),
    ("hf_trainer_bin", "hf-trainer", [2, 4, 6]),
    ("safetensors_dir", "safetensors", [10, 20, 30, 40]),
    ("npz_dir", "npz", [5, 10, 15, 100]),
])
def test_each_fixture_is_detected_and_ordered(data_dir, folder, fmt, steps):
    assert detect_format(data_dir / folder) == fmt
    run = open_run(data_dir / folder)
    assert run.format == fmt
    assert run.steps.tolist() == steps
    assert run.warnings == []


def test_bare_state_dicts_natural_order_and_buffers_apart(data_dir):
    run = open_run(data_dir / "torch_bare")
    # lexical order would put model_10 before model_2
    assert [s.source.name for s in run.snapshots] == ["model_1.pt", "model_2.pt", "model_10.pt",
                                                      "model_20.pt"]
    # Linear(4,8) + BatchNorm1d(8) affine + Linear(8,1): 40 + 16 + 9 trainable values
    assert run.n_params == 4 * 8 + 8 + 8 + 8 + 8 + 1
    assert run.buffer_names == ["1.num_batches_tracked", "1.running_mean", "1.running_var"]
    assert all(s.epoch is None for s in run.snapshots)
    for i, name in enumerate(["model_1.pt", "model_2.pt", "model_10.pt", "model_20.pt"]):
        ref = _torch_sd(data_dir / "torch_bare" / name)
        np.testing.assert_allclose(run.vector(i), _flat(ref, run.param_names), **EXACT)
        np.testing.assert_array_equal(run.buffers(i)["1.running_var"], ref["1.running_var"])
    assert run.buffers(0)["1.num_batches_tracked"].dtype == np.int64


def test_general_checkpoint_epoch_is_step_and_loss_is_a_series(data_dir):
    run = open_run(data_dir / "torch_general")
    assert [s.epoch for s in run.snapshots] == [1.0, 2.0, 3.0]
    files = [data_dir / "torch_general" / f"epoch_{e}.tar" for e in (1, 2, 3)]
    stored = [torch.load(f, weights_only=True)["loss"] for f in files]
    loss = run.metric("loss")
    assert loss.steps.tolist() == [1, 2, 3]
    np.testing.assert_allclose(loss.values, stored, **EXACT)
    assert "optimizer_state_dict" not in " ".join(run.param_names + run.buffer_names)
    ref = _torch_sd(files[2], "model_state_dict")
    np.testing.assert_allclose(run.vector(2), _flat(ref, run.param_names), **EXACT)


def test_wrapped_state_dict(data_dir):
    run = open_run(data_dir / "torch_wrapped")
    ref = _torch_sd(data_dir / "torch_wrapped" / "ckpt_200.pth", "state_dict")
    np.testing.assert_allclose(run.vector(1), _flat(ref, run.param_names), **EXACT)


def test_lightning_checkpoints_and_csv_metrics(data_dir):
    root = data_dir / "lightning"
    run = open_run(root)
    ckdir = root / "lightning_logs" / "version_0" / "checkpoints"
    assert [s.source.name for s in run.snapshots] == [
        "epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "epoch=2-step=6.ckpt"]
    assert [s.epoch for s in run.snapshots] == [0.0, 1.0, 2.0]
    assert run.param_names[0].startswith("net.")  # names kept as stored
    ref = _torch_sd(ckdir / "epoch=1-step=4.ckpt", "state_dict")
    np.testing.assert_allclose(run.vector(1), _flat(ref, run.param_names), **EXACT)
    with open(root / "lightning_logs" / "version_0" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for col in ("train_loss", "val_loss"):
        pts = [(int(r["step"]), float(r[col])) for r in rows if r[col]]
        s = run.metric(col)
        assert s.steps.tolist() == [p[0] for p in pts]
        np.testing.assert_allclose(s.values, [p[1] for p in pts], **EXACT)
    assert "epoch" not in run.metrics and "step" not in run.metrics
    # opening the version folder or one checkpoint gives the same snapshots and metrics
    sub = open_run(root / "lightning_logs" / "version_0")
    assert sub.steps.tolist() == [2, 4, 6] and "val_loss" in sub.metrics
    one = open_run(ckdir / "epoch=2-step=6.ckpt")
    assert one.steps.tolist() == [6] and "train_loss" in one.metrics


def test_hf_trainer_weights_steps_and_log_history(data_dir):
    run = open_run(data_dir / "hf_trainer")
    assert [s.meta["folder"] for s in run.snapshots] == ["checkpoint-2", "checkpoint-4",
                                                        "checkpoint-6"]
    state = json.loads((data_dir / "hf_trainer" / "checkpoint-6" / "trainer_state.json").read_text())
    assert run.snapshots[-1].epoch == pytest.approx(state["epoch"])
    hist = state["log_history"]
    for key in ("loss", "grad_norm", "learning_rate", "eval_loss"):
        pts = [(h["step"], h[key]) for h in hist if key in h]
        s = run.metric(key)
        assert s.steps.tolist() == [p[0] for p in pts], key
        np.testing.assert_allclose(s.values, [p[1] for p in pts], **EXACT)
    assert not any("runtime" in k or "per_second" in k for k in run.metrics)
    ref = load_file(str(data_dir / "hf_trainer" / "checkpoint-4" / "model.safetensors"))
    assert set(run.param_names) == {k for k, v in ref.items() if v.dtype.kind == "f"}
    np.testing.assert_allclose(run.vector(1), _flat(ref, run.param_names), **EXACT)


def test_hf_bin_and_safetensors_checkpoints_hold_the_same_weights(data_dir):
    a = open_run(data_dir / "hf_trainer")
    b = open_run(data_dir / "hf_trainer_bin")
    assert a.param_names == b.param_names or set(a.param_names) == set(b.param_names)
    for i in range(3):
        pa, pb = a.params(i), b.params(i)
        for n in pa:
            np.testing.assert_array_equal(pa[n], pb[n])
    assert b.metrics.keys() == a.metrics.keys()


def test_hf_single_checkpoint_folder(data_dir):
    run = open_run(data_dir / "hf_trainer" / "checkpoint-4")
    assert run.format == "hf-trainer"
    assert run.steps.tolist() == [4]
    # its own trainer_state.json logged steps 1..4 only
    assert run.metric("loss").steps.tolist() == [1, 2, 3, 4]


def test_plain_safetensors_and_npz_values(data_dir):
    st = open_run(data_dir / "safetensors_dir")
    assert all(s.epoch is None for s in st.snapshots)  # "step10" announces no epoch
    ref = load_file(str(data_dir / "safetensors_dir" / "weights_step30.safetensors"))
    np.testing.assert_allclose(st.vector(2), _flat(ref, st.param_names), **EXACT)
    nz = open_run(data_dir / "npz_dir")
    with np.load(data_dir / "npz_dir" / "snap_100.npz") as z:
        np.testing.assert_allclose(nz.vector(3), _flat(z, nz.param_names), **EXACT)
    assert nz.n_params == 6 * 3 + 6 + 6


@pytest.mark.parametrize(("rel", "fmt"), [("safetensors_dir/weights_step20.safetensors", "safetensors"),
                                     ("npz_dir/snap_15.npz", "npz"),
                                     ("torch_bare/model_10.pt", "torch")])
def test_single_file_is_a_one_snapshot_run(data_dir, rel, fmt):
    run = open_run(data_dir / rel)
    assert (run.format, len(run)) == (fmt, 1)
    assert run.steps.tolist() == [int("".join(c for c in rel.split("/")[1] if c.isdigit()))]


def test_tensors_are_read_on_demand_not_kept_from_opening(data_dir, tmp_path):
    """Overwrite a file's tensor bytes after opening: the run shows the new values."""
    folder = tmp_path / "st"
    shutil.copytree(data_dir / "safetensors_dir", folder)
    run = open_run(folder)
    f = folder / "weights_step40.safetensors"
    raw = bytearray(f.read_bytes())
    header = 8 + int.from_bytes(raw[:8], "little")
    ones = np.ones((len(raw) - header) // 4, np.float32).tobytes()
    raw[header:header + len(ones)] = ones
    f.write_bytes(bytes(raw))
    w = run.params(3)
    assert all(np.all(v == 1.0) for v in w.values())


def test_bfloat16_and_half_are_widened(tmp_path):
    from safetensors.torch import save_file

    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    save_file({"a": w.to(torch.bfloat16), "b": w.to(torch.float16)}, str(tmp_path / "s_1.safetensors"))
    torch.save({"a": w.to(torch.bfloat16)}, tmp_path / "t_1.pt")
    st = open_run(tmp_path / "s_1.safetensors")
    t = open_run(tmp_path / "t_1.pt")
    assert st.n_params == 24 and t.n_params == 12
    for run, name in ((st, "a"), (st, "b"), (t, "a")):
        arr = run.params(0)[name]
        assert arr.dtype == np.float32
        # bfloat16 keeps 8 significant bits: |x - bf16(x)| <= 2^-8 |x|
        np.testing.assert_allclose(arr, w.numpy(), rtol=2 ** -8, atol=0)


def test_opening_a_large_safetensors_file_reads_only_its_header(tmp_path):
    """A 256 MiB tensor (a sparse file): opening allocates kilobytes, reading allocates it."""
    import tracemalloc

    n = 64 * 2 ** 20
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    f = tmp_path / "big_1.safetensors"
    with open(f, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + 4 * n)
    tracemalloc.start()
    try:
        run = open_run(f)
        opened = tracemalloc.get_traced_memory()[1]
        assert run.n_params == n
        total = float(run.params(0)["w"].sum())
    finally:
        tracemalloc.stop()
    assert opened < 2 ** 20  # header only; the data is 256 MiB
    assert total == 0.0

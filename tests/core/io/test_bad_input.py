"""Bad input: one clear line (CLI exit 2), the good snapshots still load, bad files named."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from lossview.cli import main
from lossview.core.errors import InconsistentSnapshotsError, LossviewError, NoCheckpointsError
from lossview.core.io import open_run


def _cli(capsys, *argv):
    rc = main(["analyze", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("case", ["missing", "empty", "no checkpoints", "only a stray file"])
def test_unreadable_paths_give_one_line_and_exit_2(tmp_path, capsys, case):
    path = tmp_path / "run"
    if case != "missing":
        path.mkdir()
    if case == "no checkpoints":
        (path / "notes.txt").write_text("hello")
        (path / "sub").mkdir()
        (path / "sub" / "config.json").write_text("{}")
    if case == "only a stray file":
        (path / "model_1.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(LossviewError):
        open_run(path)
    rc, out, err = _cli(capsys, path, "--json")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("lossview analyze: error: ") and str(path) in err
    assert "Traceback" not in err


def test_cli_exit_status_through_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lossview", "analyze", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"lossview analyze: error: no such file or folder: {tmp_path / 'nope'}"]


def _copy(data_dir, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(data_dir / name, dst)
    return dst


def _truncate(f, keep=0.5):
    raw = f.read_bytes()
    f.write_bytes(raw[: int(len(raw) * keep)])


@pytest.mark.parametrize(("folder", "bad", "steps"), [
    ("torch_bare", "model_10.pt", [1, 2, 20]),
    ("torch_general", "epoch_2.tar", [1, 3]),
    ("safetensors_dir", "weights_step30.safetensors", [10, 20, 40]),
    ("npz_dir", "snap_15.npz", [5, 10, 100]),
    ("lightning", "lightning_logs/version_0/checkpoints/epoch=1-step=4.ckpt", [2, 6]),
    ("hf_trainer", "checkpoint-4/model.safetensors", [2, 6]),
    ("hf_trainer_bin", "checkpoint-4/pytorch_model.bin", [2, 6]),
])
@pytest.mark.parametrize("damage", ["truncated", "zeroed", "empty"])
def test_a_damaged_file_among_good_ones_is_named_and_skipped(data_dir, tmp_path, folder, bad,
                                                            steps, damage):
    root = _copy(data_dir, tmp_path, folder)
    f = root / bad
    if damage == "truncated":
        _truncate(f)
    elif damage == "zeroed":
        f.write_bytes(bytes(f.stat().st_size))
    else:
        f.write_bytes(b"")
    run = open_run(root)
    assert run.steps.tolist() == steps
    named = [w for w in run.warnings if f.name in w]
    assert len(named) == 1, run.warnings
    assert np.all(np.isfinite(run.vector(-1)))


def test_stray_files_are_named_and_ignored(data_dir, tmp_path):
    for name in ("torch_bare", "safetensors_dir", "npz_dir"):
        root = _copy(data_dir, tmp_path, name)
        (root / "README.txt").write_text("my run")
        (root / "notes.json").write_text("{}")
        (root / "loss_curve.png").write_bytes(b"\x89PNG....")
        run = open_run(root)
        assert len(run) >= 4
        (line,) = run.warnings
        assert all(n in line for n in ("README.txt", "notes.json", "loss_curve.png")), line


def test_checkpoints_in_a_sub_folder_are_found(data_dir, tmp_path):
    root = tmp_path / "myrun"
    shutil.copytree(data_dir / "npz_dir", root / "checkpoints")
    (root / "log.txt").write_text("x")
    run = open_run(root)
    assert run.format == "npz" and run.steps.tolist() == [5, 10, 15, 100]


def _st(folder, step, **shapes):
    save_file({k: np.full(s, float(step), np.float32) for k, s in shapes.items()},
              str(folder / f"w_{step}.safetensors"))


def test_a_minority_with_other_tensors_is_dropped_with_names(tmp_path):
    for step in (1, 2, 3):
        _st(tmp_path, step, a=(2, 3), b=(3,))
    _st(tmp_path, 4, a=(2, 4), b=(3,))  # reshaped
    _st(tmp_path, 5, a=(2, 3))  # missing b
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1, 2, 3]
    w4 = next(w for w in run.warnings if "w_4.safetensors" in w)
    w5 = next(w for w in run.warnings if "w_5.safetensors" in w)
    assert "a [2, 4] vs [2, 3]" in w4
    assert "missing b" in w5


def test_no_majority_is_refused_naming_files_and_tensors(tmp_path, capsys):
    _st(tmp_path, 1, a=(2, 3))
    _st(tmp_path, 2, a=(3, 3))
    with pytest.raises(InconsistentSnapshotsError) as e:
        open_run(tmp_path)
    msg = str(e.value)
    assert "w_1.safetensors" in msg and "w_2.safetensors" in msg and "a [3, 3] vs [2, 3]" in msg
    rc, _out, err = _cli(capsys, tmp_path)
    assert rc == 2 and len(err.strip().splitlines()) == 1


def test_files_without_float_weights_are_refused(tmp_path):
    torch.save({"ids": torch.arange(4)}, tmp_path / "m_1.pt")
    with pytest.raises(NoCheckpointsError, match="no floating-point weights"):
        open_run(tmp_path)


def test_a_dict_without_a_state_dict_is_named(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "m_1.pt")
    torch.save({"config": {"lr": 0.1}, "notes": "x"}, tmp_path / "m_2.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [1]
    assert any("m_2.pt" in w and "no state_dict" in w for w in run.warnings)


def test_nan_and_inf_weights_load_and_are_flagged(tmp_path, capsys):
    w = np.arange(6, dtype=np.float32)
    for step in range(4):
        v = w + step
        if step == 2:
            v = v.copy()
            v[1], v[4] = np.nan, np.inf
        torch.save({"model_state_dict": {"w": torch.from_numpy(v)}, "epoch": step,
                    "loss": math.nan if step == 3 else 1.0 / (step + 1)}, tmp_path / f"e{step}.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [0, 1, 2, 3]
    p = run.params(2)["w"]
    assert np.isnan(p[1]) and np.isposinf(p[4])
    assert math.isnan(run.metric("loss").values[3])
    rc, out, _ = _cli(capsys, tmp_path, "--json")
    rep = json.loads(out)
    assert rc == 0 and rep["distance"]["nonfinite_snapshots"] == [2]
    assert rep["metrics"]["loss"]["values"] == [1.0, 0.5, 1.0 / 3, None]


def test_a_file_damaged_after_opening_gives_a_lossview_error(data_dir, tmp_path):
    root = _copy(data_dir, tmp_path, "torch_bare")
    run = open_run(root)
    (root / "model_20.pt").write_bytes(b"gone")
    with pytest.raises(LossviewError, match=r"model_20\.pt"):
        run.vector(3)

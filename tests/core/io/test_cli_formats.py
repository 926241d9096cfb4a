"""``lossview analyze PATH --json`` on every committed fixture, without any flag."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from lossview.cli import main

CASES = {
    "torch_bare": ("torch", [1, 2, 10, 20], 65, []),
    "torch_general": ("torch", [1, 2, 3], 65, ["loss"]),
    "torch_wrapped": ("torch", [100, 200, 300], 65, []),
    "lightning": ("lightning", [2, 4, 6], 65, ["train_loss", "val_loss"]),
    "hf_trainer": ("hf-trainer", [2, 4, 6], 1098, ["eval_loss", "grad_norm", "learning_rate", "loss"]),
    "hf_trainer_bin": ("hf-trainer", [2, 4, 6], 1098,
                       ["eval_loss", "grad_norm", "learning_rate", "loss"]),
    "safetensors_dir": ("safetensors", [10, 20, 30, 40], 65, []),
    "npz_dir": ("npz", [5, 10, 15, 100], 30, []),
}


def _analyze(capsys, path):
    rc = main(["analyze", str(path), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert err == ""  # clean fixtures: no warnings
    return json.loads(out)


@pytest.mark.parametrize("folder", sorted(CASES))
def test_analyze_json_on_each_fixture(data_dir, capsys, folder):
    fmt, steps, n_params, metrics = CASES[folder]
    rep = _analyze(capsys, data_dir / folder)
    assert rep["format"] == fmt
    assert rep["n_checkpoints"] == len(steps)
    assert rep["steps"] == steps and steps == sorted(steps)
    assert rep["n_params"] == n_params
    assert sorted(rep["metrics"]) == metrics
    for m in rep["metrics"].values():
        assert m["steps"] == sorted(m["steps"]) and len(m["steps"]) == len(m["values"])
    d = rep["distance"]
    assert len(d["from_init"]) == len(steps) and d["from_init"][0] == 0.0
    assert d["path_length"] == pytest.approx(sum(d["step_length"]), rel=1e-12)
    assert d["net_displacement"] == pytest.approx(d["from_init"][-1], rel=1e-12)
    # triangle inequality: the straight line is never longer than the path
    assert d["net_displacement"] <= d["path_length"] * (1 + 1e-12)


def test_hf_distance_matches_the_safetensors_files(data_dir, capsys):
    """Distances from the JSON equal norms computed straight from the files."""
    rep = _analyze(capsys, data_dir / "hf_trainer")
    w = [load_file(str(data_dir / "hf_trainer" / f"checkpoint-{n}" / "model.safetensors"))
         for n in (2, 4, 6)]
    names = sorted(k for k, v in w[0].items() if v.dtype.kind == "f")
    vec = [np.concatenate([x[n].astype(np.float64).ravel() for n in names]) for x in w]
    np.testing.assert_allclose(rep["distance"]["from_init"],
                               [np.linalg.norm(v - vec[0]) for v in vec], rtol=1e-12)
    np.testing.assert_allclose(rep["distance"]["step_length"][1:],
                               [np.linalg.norm(vec[i] - vec[i - 1]) for i in (1, 2)], rtol=1e-12)


def test_text_summary_on_a_foreign_folder(data_dir, capsys):
    assert main(["analyze", str(data_dir / "lightning")]) == 0
    out = capsys.readouterr().out
    assert "lightning, 3 snapshots, steps 2..6, 65 parameters" in out
    assert "train_loss" in out

"""Loading never runs pickled code; optimizer, scheduler, RNG state and training
arguments are never opened."""

import pickle
import shutil

import numpy as np
import pytest
import torch

from lossview.core.errors import LossviewError
from lossview.core.io import open_run


class _Payload:
    """Unpickling this creates the file ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _good(folder, step):
    torch.save({"w": torch.full((3,), float(step))}, folder / f"model_{step}.pt")


@pytest.mark.parametrize("how", ["torch.save zip", "torch.save legacy", "plain pickle"])
def test_a_pickle_with_a_payload_is_skipped_and_never_run(tmp_path, how):
    folder = tmp_path / "run"
    folder.mkdir()
    marker = tmp_path / "pwned"
    evil = {"state_dict": {"w": torch.zeros(3)}, "hook": _Payload(marker)}
    if how == "torch.save zip":
        torch.save(evil, folder / "model_5.pt")
    elif how == "torch.save legacy":
        torch.save(evil, folder / "model_5.pt", _use_new_zipfile_serialization=False)
    else:
        with open(folder / "model_5.pt", "wb") as fh:
            pickle.dump(evil, fh)
    # the payload really works when unpickled unsafely (in a copy, to keep the check honest)
    probe = tmp_path / "probe.pt"
    shutil.copy(folder / "model_5.pt", probe)
    for step in (1, 2, 3):
        _good(folder, step)
    run = open_run(folder)
    assert not marker.exists()
    assert run.steps.tolist() == [1, 2, 3]
    assert any("model_5.pt" in w and "needs pickled code; skipped for safety" in w
               for w in run.warnings)
    with pytest.raises(LossviewError, match="needs pickled code"):
        open_run(folder / "model_5.pt")
    assert not marker.exists()
    if how == "plain pickle":
        with open(probe, "rb") as fh:
            loaded = pickle.load(fh)
    else:
        loaded = torch.load(probe, weights_only=False)
    loaded["hook"].close()
    assert marker.exists()


def test_a_pickled_module_is_refused(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "whole_model.pt")
    with pytest.raises(LossviewError, match=r"whole_model\.pt: needs pickled code"):
        open_run(tmp_path / "whole_model.pt")


def test_non_weight_files_are_never_opened(tmp_path, data_dir):
    """Evil pickles under the names of optimizer/scheduler/RNG/training-argument files: they
    are never loaded (not even with weights_only), so no 'needs pickled code' warning."""
    marker = tmp_path / "pwned"
    folder = tmp_path / "out"
    shutil.copytree(data_dir / "hf_trainer", folder)
    torch_folder = tmp_path / "plain"
    torch_folder.mkdir()
    _good(torch_folder, 1)
    _good(torch_folder, 2)
    names = ("optimizer.pt", "scheduler.pt", "rng_state.pth", "rng_state_3.pth", "training_args.bin")
    for name in names:
        for d in (folder / "checkpoint-4", torch_folder):
            with open(d / name, "wb") as fh:
                pickle.dump(_Payload(marker), fh)
    hf = open_run(folder)
    plain = open_run(torch_folder)
    assert not marker.exists()
    assert hf.warnings == []
    assert plain.steps.tolist() == [1, 2]
    (line,) = plain.warnings
    assert "never opened" in line and all(n in line for n in names)
    with pytest.raises(LossviewError, match="not weights"):
        open_run(torch_folder / "optimizer.pt")


def test_npz_object_arrays_are_not_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    np.savez(tmp_path / "snap_1.npz", w=np.ones(3))
    np.savez(tmp_path / "snap_2.npz", w=np.array([_Payload(marker)], dtype=object))
    run = open_run(tmp_path)
    assert not marker.exists()
    assert run.steps.tolist() == [1]
    assert any("snap_2.npz" in w and "Python objects" in w for w in run.warnings)


def test_argparse_namespace_hyperparameters_are_allowed(tmp_path):
    """Lightning stores ``save_hyperparameters(args)`` as an argparse.Namespace: an inert
    standard class, allowed; the checkpoint loads with its global_step."""
    import argparse

    torch.save({"state_dict": {"w": torch.ones(2)}, "global_step": 7, "epoch": 0,
                "hyper_parameters": argparse.Namespace(lr=0.1, name="x")},
               tmp_path / "epoch=0-step=7.ckpt")
    run = open_run(tmp_path)
    assert run.format == "lightning" and run.steps.tolist() == [7] and run.warnings == []

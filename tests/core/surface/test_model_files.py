"""Model files without ``loss_fn``: cross-entropy only for integer class targets, said out
loud; a constant surface and an all-zero sharpness are flagged as suspicious.

Runs are plain PyTorch loops saved with ``torch.save(model.state_dict(), ...)``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lossview.cli import main
from lossview.core.io import open_run
from lossview.core.surface.finite import model_loss_series
from lossview.core.surface.runsurface import constant_surface, run_to_end, surface_for_run
from lossview.core.surface.stability import sharpness_report
from lossview.core.surface.usermodel import CROSS_ENTROPY_NOTE, load_model_file

DATA = '''
from pathlib import Path
import torch
from torch import nn
D = torch.load(Path(__file__).with_name("data.pt"))
def batches():
    return [(D["x"][:50], D["y"][:50]), (D["x"][50:], D["y"][50:])]
'''


def make_run(root, outputs: int, loss):
    """Train ``Linear(3, 8) - Tanh - Linear(8, outputs)`` with ``loss``; integer targets."""
    (root / "ckpt").mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(90, 3, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long() if outputs > 1 else (x[:, 0] > 0).long()
    torch.save({"x": x, "y": y}, root / "data.pt")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, outputs))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(31):
        if step % 5 == 0:
            torch.save(model.state_dict(), root / "ckpt" / f"model_{step}.pt")
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
    (root / "model.py").write_text(
        DATA + f"def build_model():\n    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), "
               f"nn.Linear(8, {outputs}))\n")
    return x, y


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("clf")
    x, y = make_run(root, 3, nn.functional.cross_entropy)
    return root, x, y


@pytest.fixture(scope="module")
def single_logit(tmp_path_factory):
    """A binary classifier with one logit, trained with BCE; its model file's loss_fn is
    cross-entropy with the labels as probabilities of that one class: identically 0 (the
    mistake that once came silently with the default loss)."""
    root = tmp_path_factory.mktemp("bce")
    make_run(root, 1, lambda out, y: nn.functional.binary_cross_entropy_with_logits(
        out[:, 0], y.float()))
    text = (root / "model.py").read_text()
    (root / "noloss.py").write_text(text)
    (root / "model.py").write_text(
        text + "def loss_fn(outputs, targets):\n"
               "    return nn.functional.cross_entropy(outputs, targets.float()[:, None])\n")
    return root


def test_integer_targets_without_loss_fn_use_cross_entropy_and_say_so(classifier, capsys):
    root, x, y = classifier
    src = load_model_file(root / "model.py")
    assert src.loss_fn is nn.functional.cross_entropy and src.loss_note == CROSS_ENTROPY_NOTE
    assert CROSS_ENTROPY_NOTE == ("loss_fn not given: cross-entropy, since targets are integer "
                                  "class indices")
    run = open_run(root / "ckpt")
    series = model_loss_series(run, source=src)
    want = []
    for i in range(len(run)):
        m = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
        m.load_state_dict(torch.load(root / "ckpt" / f"model_{5 * i}.pt"))
        with torch.no_grad():
            want.append(float(nn.functional.cross_entropy(m(x), y)))
    np.testing.assert_allclose(series.values, want, rtol=1e-5)  # two batches, weighted mean
    assert want[-1] < 0.7 * want[0]  # the run did learn
    table = sharpness_report(run, model_file=str(root / "model.py"))
    assert table["loss_note"] == CROSS_ENTROPY_NOTE and table["suspicious"] is None
    assert len(table["steps"]) == len(run) and min(table["sharpness"]) > 0
    capsys.readouterr()
    assert main(["surface", str(root / "ckpt"), "--model", str(root / "model.py"),
                 "--steps", "5", "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert CROSS_ENTROPY_NOTE in out and "suspicious" not in out


def test_constant_surface_and_zero_sharpness_are_suspicious(single_logit, tmp_path, capsys):
    root = single_logit
    run = open_run(root / "ckpt")
    s = run_to_end(surface_for_run(run, model_file=str(root / "model.py"), steps=5, cache=False))
    # log_softmax of a single logit is exactly 0: the loss is 0 at every point
    assert np.all(s.loss == 0.0) and s.suspicious.startswith("the surface is constant")
    table = sharpness_report(run, model_file=str(root / "model.py"))
    assert table["sharpness"] == [0.0] * len(run)
    assert table["suspicious"].startswith("sharpness is exactly 0 at every snapshot")
    out = tmp_path / "s.npz"
    capsys.readouterr()
    assert main(["surface", str(root / "ckpt"), "--model", str(root / "model.py"), "--steps",
                 "5", "--no-cache", "--out", str(out)]) == 0
    assert "suspicious: the surface is constant" in capsys.readouterr().out
    with np.load(out) as f:
        assert json.loads(str(f["meta"]))["suspicious"] == s.suspicious
    # without loss_fn, cross-entropy on labels 0/1 against one logit: a one-line error
    assert main(["surface", str(root / "ckpt"), "--model", str(root / "noloss.py"),
                 "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "Target 1 is out of bounds" in err and "Traceback" not in err


def test_constant_surface_threshold_is_relative():
    assert constant_surface(np.full((3, 3), 2.5)) is not None
    assert constant_surface(np.array([[1.0, 1.0 + 1e-13]])) is not None
    assert constant_surface(np.array([[1.0, 1.0 + 1e-9]])) is None
    assert constant_surface(np.array([[1e30, 1e30 * (1 + 1e-14)], [np.inf, np.nan]])) is not None
    assert constant_surface(np.array([[np.nan, 0.0]])) is None  # one finite point says nothing

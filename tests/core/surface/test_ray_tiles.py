"""``lossview surface RUN --ray``: the tiles as tasks of a local Ray instance (2 CPUs,
started and shut down by this module) give the one-process surface bit for bit, land in
the run's cache, and stop when cancelled. Skipped where ray is not installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface.runsurface import run_to_end, surface_for_run
from lossview.core.train.config import TrainConfig
from lossview.core.train.trainer import run_to_end as train_to_end
from lossview.core.train.trainer import train

ray = pytest.importorskip("ray")

from lossview.core.surface.ray_tiles import _reachable, ray_surface  # noqa: E402

MODEL = '''
from pathlib import Path
import torch
from torch import nn
D = torch.load(Path(__file__).with_name("data.pt"))
def build_model():
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
def batches():
    return [(D["x"][:50], D["y"][:50]), (D["x"][50:], D["y"][50:])]
'''


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    cfg = TrainConfig(problem="mlp", problem_options={"hidden": 16}, steps=40, every=8, seed=0)
    train_to_end(train(cfg, out=out))
    return out


@pytest.fixture
def plain(tmp_path):
    """A plain PyTorch loop saved with ``torch.save``, and its model file."""
    (tmp_path / "ckpt").mkdir()
    x = torch.randn(90, 3, generator=torch.Generator().manual_seed(1))
    torch.save({"x": x, "y": (x[:, 0] > 0).long() + (x[:, 1] > 0).long()}, tmp_path / "data.pt")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        for step in range(4):
            torch.save(model.state_dict(), tmp_path / "ckpt" / f"model_{step}.pt")
            for p in model.parameters():
                p.mul_(0.9).add_(0.05)
    (tmp_path / "model.py").write_text(MODEL)
    return tmp_path


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def test_ray_tiles_equal_one_process_and_land_in_the_run_cache(native):
    one = run_to_end(surface_for_run(open_run(native), steps=9, cache=False))
    got = run_to_end(ray_surface(open_run(native), "local", 3, steps=9))
    assert same(got.to_arrays(), one.to_arrays())
    assert ray.is_initialized()  # a running instance is used, not shut down
    hit = run_to_end(surface_for_run(open_run(native), steps=9))  # what the app opens
    assert hit.cached and same(hit.to_arrays(), one.to_arrays())


def test_cli_ray_on_a_plain_torch_folder_with_a_model_file(plain, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.setenv("LOSSVIEW_CACHE_DIR", str(tmp_path / "usercache"))
    one = run_to_end(surface_for_run(open_run(plain / "ckpt"), steps=7, cache=False,
                                     model_file=str(plain / "model.py")))
    out = tmp_path / "s.npz"
    assert main(["surface", str(plain / "ckpt"), "--model", str(plain / "model.py"),
                 "--steps", "7", "--ray", "local", "--tiles", "2", "--no-cache",
                 "--out", str(out)]) == 0
    with np.load(out) as f:
        assert same({k: f[k] for k in f.files}, one.to_arrays())
    assert "grid 7 x 7" in capsys.readouterr().out


def test_closing_the_generator_cancels_the_tasks(native):
    gen = ray_surface(open_run(native), "local", 4, steps=9, cache=False)
    assert 0 < next(gen) < 1
    gen.close()  # the pending tasks are cancelled; nothing is raised
    assert ray.is_initialized()


def test_an_address_nobody_listens_on_is_said_at_once():
    with pytest.raises(LossviewError, match=r"cannot reach Ray at '127\.0\.0\.1:1'"):
        _reachable("127.0.0.1:1")
    _reachable("auto")  # left to Ray


def test_a_worker_that_sees_other_data_is_refused_in_one_line(plain, tmp_path, monkeypatch,
                                                             capsys):
    """The workers were started before this variable was set: their data differ."""
    monkeypatch.setenv("LOSSVIEW_CACHE_DIR", str(tmp_path / "usercache"))
    (plain / "model.py").write_text(MODEL.replace(
        'D["x"][:50]', 'D["x"][:50] + float(__import__("os").environ.get("LOSSVIEW_TEST_SHIFT", 0))'))
    monkeypatch.setenv("LOSSVIEW_TEST_SHIFT", "1")
    assert main(["surface", str(plain / "ckpt"), "--model", str(plain / "model.py"),
                 "--steps", "5", "--ray", "local", "--tiles", "2", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip().splitlines()  # the model-file notice, the error
    assert len(err) == 2 and "sees a different data" in err[1], err

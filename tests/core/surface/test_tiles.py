"""Tiles of a surface (``--tiles N --tile I``) merged (``--merge``) equal the one-process
surface bit for bit; merge refuses tiles of another job, incomplete or repeated sets, and
files that are not tiles; the merged surface lands in the run's cache.

Runs: a built-in problem trained here, and a plain PyTorch loop saved with ``torch.save``
opened with a model file.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface.runsurface import run_to_end, surface_for_run
from lossview.core.surface.tiles import iter_tile, load_tile, merge_tiles, surface_job, tile_units
from lossview.core.train.config import TrainConfig
from lossview.core.train.trainer import run_to_end as train_to_end
from lossview.core.train.trainer import train

MODEL = '''
from pathlib import Path
import torch
from torch import nn
D = torch.load(Path(__file__).with_name("data.pt"))
def build_model():
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
def batches():
    return [(D["x"][:50], D["y"][:50]), (D["x"][50:], D["y"][50:])]
def loss_fn(outputs, targets):
    return nn.functional.cross_entropy(outputs, targets)
'''


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    cfg = TrainConfig(problem="mlp", problem_options={"hidden": 16}, steps=40, every=8, seed=0)
    train_to_end(train(cfg, out=out))
    return out


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A plain PyTorch loop, ``torch.save(model.state_dict())`` every 5 steps, a model file."""
    root = tmp_path_factory.mktemp("plain")
    (root / "ckpt").mkdir()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(90, 3, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    torch.save({"x": x, "y": y}, root / "data.pt")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for step in range(26):
        if step % 5 == 0:
            torch.save(model.state_dict(), root / "ckpt" / f"model_{step}.pt")
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    (root / "model.py").write_text(MODEL)
    return root


@pytest.fixture(autouse=True)
def _user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSVIEW_CACHE_DIR", str(tmp_path / "usercache"))


def same(a: dict, b: dict) -> bool:
    """Bit-identical arrays (NaN where NaN) and the same metadata."""
    return a.keys() == b.keys() and all(
        np.array_equal(a[k], b[k], equal_nan=a[k].dtype.kind == "f") for k in a)


def tiles_by_cli(run, n, folder, *extra):
    folder.mkdir(exist_ok=True)
    for i in range(n):
        assert main(["surface", str(run), *extra, "--tiles", str(n), "--tile", str(i),
                     "--out", str(folder / f"{i}.npz")]) == 0
    return [str(folder / f"{i}.npz") for i in range(n)]


@pytest.mark.parametrize("plane", [["pca"], ["line", "0", "-1"]])
def test_cli_tiles_merged_equal_one_process_bit_for_bit(native, tmp_path, plane, capsys):
    one = surface_for_run(open_run(native), plane=plane[0], steps=9, cache=False,
                          snapshots=[int(v) for v in plane[1:]] or None)
    files = tiles_by_cli(native, 3, tmp_path / "tiles", "--steps", "9", "--plane", *plane)
    out = tmp_path / "surface.npz"
    assert main(["surface", "--merge", *files, "--out", str(out), "--no-cache"]) == 0
    with np.load(out) as f:
        merged = {k: f[k] for k in f.files}
    assert same(merged, run_to_end(one).to_arrays())
    text = capsys.readouterr().out
    assert "opened as lossview" in text and "grid 9 x" in text


def test_plain_torch_folder_with_model_file(plain, tmp_path):
    run = open_run(plain / "ckpt")
    one = run_to_end(surface_for_run(run, steps=7, model_file=str(plain / "model.py"),
                                     cache=False)).to_arrays()
    for n in (1, 4, 60):  # more tiles than work units: some are empty
        job = surface_job(run, steps=7, model_file=str(plain / "model.py"))
        merged = merge_tiles({i: run_to_end(iter_tile(job, n, i)) for i in range(n)})
        assert same(merged.to_arrays(), one), n


def test_tiles_cover_the_work_once(native):
    job = surface_job(open_run(native), steps=11)
    for n in (1, 2, 5, 13):
        units = sorted(u for i in range(n) for u in tile_units(job, n, i))
        assert units == list(range(len(job.units)))
    with pytest.raises(LossviewError, match="between 0 and 2"):
        tile_units(job, 3, 3)


def test_merge_lands_in_the_run_cache_for_the_app(native, tmp_path, capsys):
    shutil.rmtree(native / "cache", ignore_errors=True)
    files = tiles_by_cli(native, 2, tmp_path / "tiles", "--steps", "7")
    assert main(["surface", "--merge", *files]) == 0
    assert "saved in the run's cache" in capsys.readouterr().out
    hit = run_to_end(surface_for_run(open_run(native), steps=7))
    assert hit.cached
    fresh = run_to_end(surface_for_run(open_run(native), steps=7, cache=False))
    assert same(hit.to_arrays(), fresh.to_arrays())


def test_merge_refuses_other_jobs_and_incomplete_sets(native, tmp_path, capsys):
    a = tiles_by_cli(native, 3, tmp_path / "a", "--steps", "7")
    b = tiles_by_cli(native, 3, tmp_path / "b", "--steps", "9")
    c = tiles_by_cli(native, 3, tmp_path / "c", "--steps", "7", "--plane", "random")
    capsys.readouterr()

    def refused(*args):
        assert main(["surface", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    assert "different grid" in refused("--merge", a[0], a[1], b[2])
    assert "different plane" in refused("--merge", a[0], a[1], c[2])
    assert "1 of 3 tiles missing: 2" in refused("--merge", a[0], a[1])
    shutil.copy(a[1], tmp_path / "again.npz")
    assert "given twice" in refused("--merge", *a, str(tmp_path / "again.npz"))
    d = tiles_by_cli(native, 2, tmp_path / "d", "--steps", "7")
    capsys.readouterr()
    assert "one of 2 tiles" in refused("--merge", a[0], a[1], d[1])
    (tmp_path / "junk.npz").write_bytes(b"not a tile")
    assert "not a lossview tile" in refused("--merge", *a[:2], str(tmp_path / "junk.npz"))
    with pytest.raises(LossviewError, match="not found"):
        load_tile(tmp_path / "missing.npz")


def test_tile_arguments_are_checked_in_one_line(native, capsys):
    for args, words in [([str(native), "--tiles", "3"], "needs --tile I"),
                        ([str(native), "--tiles", "3", "--tile", "3", "--out", "x.npz"],
                         "between 0 and 2"),
                        ([str(native), "--tiles", "3", "--tile", "0"], "--out TILE.npz"),
                        ([str(native), "--merge", "x.npz"], "tile files only"),
                        ([], "name a RUN")]:
        assert main(["surface", *args]) == 2
        assert words in capsys.readouterr().err


def test_ray_without_ray_installed_says_so_in_one_line(native, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert main(["surface", str(native), "--ray", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("needs ray: pip install 'lossview[ray]'") and len(err.splitlines()) == 1


def test_merge_refuses_tiles_computed_with_other_thread_counts(native):
    """The thread count sets the chunks (and so the rounding): tiles must agree on it."""
    saved, tiles = torch.get_num_threads(), {}
    try:
        for i, threads in enumerate((1, 2)):
            torch.set_num_threads(threads)
            job = surface_job(open_run(native), steps=7)
            tiles[f"t{i}.npz"] = run_to_end(iter_tile(job, 2, i))
    finally:
        torch.set_num_threads(saved)
    with pytest.raises(LossviewError, match="same thread count"):
        merge_tiles(tiles)

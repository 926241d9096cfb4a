"""surface_for_run on real trained runs: planes, honesty check, progress, cache, model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from generators import finish

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface.runsurface import RunSurface, SurfaceProgress, surface_for_run
from lossview.core.train.config import TrainConfig
from lossview.core.train.problems import problem_from_spec
from lossview.core.train.trainer import run_to_end as train_to_end
from lossview.core.train.trainer import train

MODEL_FILE = '''
import torch
from torch import nn
from lossview.core.train.problems import problem_from_spec
P = problem_from_spec({SPEC!r})
def build_model():
    return P.make_model()
def batches():
    x, y = P.train_data
    return [(x[:900], y[:900]), (x[900:], y[900:])]
def loss_fn(outputs, targets):
    return P.loss_fn(outputs, targets)
'''


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mlp"
    cfg = TrainConfig(problem="mlp", problem_options={"hidden": 16}, steps=60, every=6, seed=0)
    train_to_end(train(cfg, out=out))
    return out


def independent_loss(run, i, problem):
    m = problem.make_model()
    m.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in run.tensors(i).items()})
    return problem.full_loss(m, problem.train_data)


def test_snapshots_plane_is_honest_at_its_three_snapshots(native):
    run = open_run(native)
    p = problem_from_spec(run.spec["problem"])
    parts, s = finish(surface_for_run(run, plane="snapshots", snapshots=(0, 5, -1), steps=9,
                                      cache=False))
    assert isinstance(s, RunSurface) and all(isinstance(q, SurfaceProgress) for q in parts)
    np.testing.assert_allclose(s.coords[[0, 5, -1]], [[0, 0], [1, 0], [0, 1]], atol=1e-9)
    # float64 projection of float32 weights: the residual is float32 rounding of |w| ~ 10
    assert np.all(s.off_plane[[0, 5, -1]] < 1e-5 * np.linalg.norm(run.vector(0)))
    assert np.all(s.off_plane[[2, 7]] > 1e-3)
    np.testing.assert_allclose(s.surface_loss[[0, 5, -1]], s.true_loss[[0, 5, -1]], rtol=1e-5)
    for i in (0, 3, len(run) - 1):
        assert s.true_loss[i] == pytest.approx(independent_loss(run, i, p), rel=1e-5)
    assert s.loss.shape == (9, 9) and np.isfinite(s.loss).all()
    assert s.basin_mask.shape == (9, 9) and s.basin_mask.any()
    assert len(s.basin["inside"]) == len(run)


def test_pca_plane_through_the_final_snapshot_and_explained_variance(native):
    from lossview.core.analysis.pca import pca

    run = open_run(native)
    _, s = finish(surface_for_run(run, plane="pca", steps=5, cache=False))
    np.testing.assert_allclose(s.coords[-1], [0, 0], atol=1e-12)
    ref = pca(run, k=2)
    np.testing.assert_allclose(s.explained, ref.explained_variance_ratio[:2], rtol=1e-6)
    # same coordinates as the analysis PCA up to a shift (other origin) and sign
    for k in range(2):
        a = s.coords[:, k] - s.coords[:, k].mean()
        b = ref.coords[:, k] - ref.coords[:, k].mean()
        assert np.allclose(np.abs(a), np.abs(b), atol=1e-6 * np.abs(b).max())
    # default span contains the whole projected trajectory and the origin
    assert s.alphas[0] < s.coords[:, 0].min() and s.alphas[-1] > s.coords[:, 0].max()
    assert s.betas[0] < s.coords[:, 1].min() and s.betas[-1] > s.coords[:, 1].max()
    assert "PCA" in s.plane


def test_line_and_post_plateau_planes(native):
    run = open_run(native)
    _, line = finish(surface_for_run(run, plane="line", snapshots=(0, -1), steps=7, cache=False))
    assert line.loss.shape == (7, 1) and line.betas.tolist() == [0.0]
    np.testing.assert_allclose(line.coords[[0, -1], 0], [0, 1], atol=1e-9)
    np.testing.assert_allclose(line.surface_loss[[0, -1]], line.true_loss[[0, -1]], rtol=1e-5)
    _, post = finish(surface_for_run(run, plane="post-plateau", start_index=5, steps=5, cache=False))
    # centred on the segment's mean: its snapshots' coordinates average to zero
    np.testing.assert_allclose(post.coords[5:].mean(axis=0), [0, 0], atol=1e-6)
    assert sum(post.explained) <= 1 + 1e-9


def test_progressive_coarse_first_then_complete_and_cancel(native):
    run = open_run(native)
    gen = surface_for_run(run, plane="random", steps=21, cache=False)
    first = next(gen)
    assert 0 < first.fraction < 1
    assert np.isnan(first.partial.loss).any() and np.isfinite(first.partial.loss).any()
    assert np.isnan(first.partial.true_loss).all()
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    parts, s = finish(surface_for_run(run, plane="random", steps=21, cache=False))
    fr = [p.fraction for p in parts]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    assert np.isfinite(s.loss).all() and s.alphas[0] == -1.0  # random plane: Li's [-1, 1]


def test_cache_in_the_run_folder_is_reused_and_safe_to_delete(native):
    import shutil

    run = open_run(native)
    shutil.rmtree(native / "cache", ignore_errors=True)
    _, a = finish(surface_for_run(run, plane="pca", steps=7))
    files = list((native / "cache").glob("surface-*.npz"))
    assert len(files) == 1 and not a.cached
    parts, b = finish(surface_for_run(run, plane="pca", steps=7))
    assert b.cached and len(parts) == 1
    for f in ("loss", "coords", "true_loss", "surface_loss", "basin_mask"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert b.basin == a.basin and b.plane == a.plane
    _, c = finish(surface_for_run(run, plane="pca", steps=9))  # another grid: another key
    assert not c.cached and len(list((native / "cache").glob("*.npz"))) == 2
    shutil.rmtree(native / "cache")
    _, d = finish(surface_for_run(run, plane="pca", steps=7))
    assert not d.cached
    np.testing.assert_array_equal(d.loss, a.loss)


def test_foreign_folder_needs_a_model_file_and_then_runs_it(native, tmp_path, monkeypatch):
    from safetensors.numpy import save_file

    monkeypatch.setenv("LOSSVIEW_CACHE_DIR", str(tmp_path / "usercache"))
    run = open_run(native)
    folder = tmp_path / "foreign"
    folder.mkdir()
    for i in range(len(run)):
        save_file({k: np.ascontiguousarray(v) for k, v in run.tensors(i).items()},
                  str(folder / f"model_{int(run.steps[i])}.safetensors"))
    foreign = open_run(folder)
    assert foreign.format != "lossview"
    with pytest.raises(LossviewError, match="--model"):
        surface_for_run(foreign, steps=5).send(None)
    mf = tmp_path / "mymodel.py"
    mf.write_text(MODEL_FILE.replace("{SPEC!r}", repr(run.spec["problem"])))
    before = sorted(p.name for p in folder.iterdir())
    _, s = finish(surface_for_run(foreign, plane="line", snapshots=(0, -1), steps=5,
                                  model_file=str(mf)))
    # the cache of a foreign folder goes to the user cache dir, never into their folder
    assert sorted(p.name for p in folder.iterdir()) == before
    assert len(list((tmp_path / "usercache" / "surfaces").glob("surface-*.npz"))) == 1
    _, ref = finish(surface_for_run(run, plane="line", snapshots=(0, -1), steps=5, cache=False))
    np.testing.assert_allclose(s.loss, ref.loss, rtol=1e-5)  # two batches = the same mean
    bad = tmp_path / "bad.py"
    bad.write_text("def build_model():\n    raise RuntimeError('boom')\ndef batches():\n    return []\n")
    with pytest.raises(LossviewError, match="RuntimeError: boom"):
        surface_for_run(foreign, model_file=str(bad)).send(None)
    nobatch = tmp_path / "nobatch.py"
    nobatch.write_text("import torch\ndef build_model():\n    return torch.nn.Linear(2, 2)\n")
    with pytest.raises(LossviewError, match="batches"):
        surface_for_run(foreign, model_file=str(nobatch)).send(None)
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import torch\ndef build_model():\n    return torch.nn.Linear(2, 2)\n"
                     "def batches():\n    return [(torch.zeros(1, 2), torch.zeros(1).long())]\n")
    with pytest.raises(LossviewError, match="do not match"):
        surface_for_run(foreign, model_file=str(wrong)).send(None)
    assert main(["surface", str(folder), "--steps", "3"]) == 2


def test_cli_writes_npz_and_rejects_bad_planes(native, tmp_path, capsys):
    out = tmp_path / "s.npz"
    assert main(["surface", str(native), "--steps", "5", "--no-cache", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "honesty" in text and "flat basin" in text
    with np.load(out) as f:
        assert f["loss"].shape == (5, 5) and f["true_loss"].shape == (len(open_run(native)),)
    assert main(["surface", str(native), "--plane", "snapshots", "0", "1"]) == 2
    assert main(["surface", str(native), "--plane", "cube"]) == 2
    assert main(["surface", str(native), "--plane", "line", "0", "99"]) == 2
    err = capsys.readouterr().err
    assert "out of range" in err and "Traceback" not in err


def test_the_shipped_demo_run_is_never_written_to(monkeypatch, tmp_path):
    from pathlib import Path

    import lossview
    from lossview.core.surface.cache import cache_dir

    demo = Path(lossview.__file__).parent / "resources" / "demo"
    if not (demo / "run.json").is_file():
        pytest.skip("no demo run in this checkout")
    monkeypatch.setenv("LOSSVIEW_CACHE_DIR", str(tmp_path))
    assert cache_dir(open_run(demo)) == tmp_path / "surfaces"


def test_run_basin_tolerance_is_twice_the_post_plateau_loss_spread(native):
    run = open_run(native)
    _, s = finish(surface_for_run(run, plane="post-plateau", start_index=4, steps=5, cache=False))
    assert s.basin["tolerance"] == pytest.approx(2 * np.std(s.true_loss[4:], ddof=1), rel=1e-12)
    _, g = finish(surface_for_run(run, plane="pca", steps=5, cache=False, tolerance=0.123))
    assert g.basin["tolerance"] == 0.123


def test_progress_never_goes_back_when_chunks_finish_out_of_order(native, monkeypatch):
    # several pipelines finish chunks in any order; force the worst order, last chunk first
    from lossview.core.surface.evaluate import PlaneEvaluator

    plain = PlaneEvaluator.iter_losses

    def reversed_chunks(self, points):
        return reversed(list(plain(self, points)))

    monkeypatch.setattr(PlaneEvaluator, "chunk_size", lambda self: 3)
    monkeypatch.setattr(PlaneEvaluator, "iter_losses", reversed_chunks)
    run = open_run(native)
    parts, s = finish(surface_for_run(run, plane="random", steps=7, cache=False))
    fr = [p.fraction for p in parts]
    assert fr == sorted(fr) and fr[-1] == pytest.approx(1.0)
    assert np.isfinite(s.loss).all() and np.isfinite(s.surface_loss).all()

"""--precision for surfaces: bf16 on a real MLP and a real CNN reports the error a test
measures itself against a float32 surface; float32 is what it was; the cache keeps the
precisions apart; tf32 on a CPU is float32 with a note; TF32 flags set and restored."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface import cache as _cache
from lossview.core.surface.grid import iter_grid
from lossview.core.surface.precision import full_float32, stepwise, tf32_matmuls
from lossview.core.surface.precision_surface import PrecisionSurface
from lossview.core.surface.results import RunSurface
from lossview.core.surface.runsurface import (
    cache_parts,
    plan_geometry,
    plane_evaluator,
    run_to_end,
    surface_for_run,
)

BF16_EPS = 2.0 ** -8  # bfloat16's 8-bit significand (7 stored bits): spacing at 1.0
SUB9 = [0, 2, 4, 6, 8]  # 5 evenly spread indices of a 9-point axis, ends included


def _train(tmp_path_factory, problem, opt):
    d = tmp_path_factory.mktemp("prec") / problem
    assert main(["train", problem, "--steps", "60", "--every", "10", "--out", str(d), "--quiet",
                 "--set", opt]) == 0
    return d


@pytest.fixture(scope="module")
def mlp_dir(tmp_path_factory):
    return _train(tmp_path_factory, "mlp", "hidden=8")


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory):
    return _train(tmp_path_factory, "cnn", "channels=2")


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_bf16_reports_the_error_measured_against_a_float32_surface(which, mlp_dir, cnn_dir):
    run = open_run(mlp_dir if which == "mlp" else cnn_dir)
    f32 = run_to_end(surface_for_run(run, steps=9, cache=False))
    bf = run_to_end(surface_for_run(run, steps=9, cache=False, precision="bf16"))
    assert isinstance(bf, PrecisionSurface) and bf.evaluation.endswith(", bf16")
    diff = np.abs(bf.loss - f32.loss)
    sub = np.ix_(SUB9, SUB9)
    p = bf.precision
    assert p["precision"] == "bf16" and p["reference"] == "float32"
    assert p["subgrid"] == [5, 5] and p["points"] == 25 and p["finite_mismatch"] == 0
    # the float32 sub-grid may take another evaluation path than the float32 surface:
    # equal to float32 rounding (1e-6 of the loss), far below the bf16 error itself
    assert p["max_abs_error"] == pytest.approx(diff[sub].max(), abs=1e-5 * np.abs(f32.loss).max())
    assert p["max_rel_error"] == pytest.approx((diff[sub] / np.abs(f32.loss[sub])).max(),
                                               abs=1e-5)
    # bf16 really ran (float32 paths agree to ~1e-7) and stayed within bf16 rounding: the
    # loss itself is rounded to 8 bits (up to eps/2), inputs and weights too, and the
    # forward pass adds up such errors (measured: 1.9 eps on the MLP, 4.2 on the CNN)
    assert diff.max() > 1e-2 * BF16_EPS * np.abs(f32.loss).max()
    assert np.all(diff <= 16 * BF16_EPS * np.abs(f32.loss))
    # the projected snapshots are on the bf16 plane too; their own loss is float32
    assert np.abs(bf.surface_loss - f32.surface_loss).max() > 0
    np.testing.assert_array_equal(bf.true_loss, f32.true_loss)
    # the record travels in the .npz
    back = PrecisionSurface.from_arrays(bf.to_arrays())
    assert isinstance(back, PrecisionSurface) and back.precision == p


def test_float32_is_the_surface_of_before(mlp_dir):
    run = open_run(mlp_dir)
    s = run_to_end(surface_for_run(run, steps=7, cache=False, precision="float32"))
    assert type(s) is RunSurface and "precision" not in str(s.to_arrays()["meta"])
    # the grid as it was computed before precision existed: the evaluator on its own
    g = plan_geometry(run, "pca", 7, None, None, None, None, None, "eval", 0, None)
    np.testing.assert_array_equal(s.loss, run_to_end(iter_grid(plane_evaluator(run, g, "eval"),
                                                               g.alphas, g.betas)))
    # cache keys of float32 surfaces are unchanged (caches written before stay valid)
    key = {"plane": "pca", "plane_key": g.plane.key, "alphas": g.alphas.tolist(),
               "betas": g.betas.tolist(), "bn_mode": "eval", "source": g.src.origin,
               "data": _cache.data_digest(g.src.data), "tolerance": None, "last": g.last}
    assert cache_parts(g, "eval", None) == key == cache_parts(g, "eval", None, "float32")
    assert cache_parts(g, "eval", None, "bf16") == {**key, "precision": "bf16"}


def test_the_cache_never_hands_a_bf16_surface_for_a_float32_one(mlp_dir, tmp_path):
    d = tmp_path / "run"
    shutil.copytree(mlp_dir, d)
    run = open_run(d)
    f32 = run_to_end(surface_for_run(run, steps=5))
    bf = run_to_end(surface_for_run(run, steps=5, precision="bf16"))
    assert not f32.cached and not bf.cached  # bf16 did not take the float32 entry
    again32 = run_to_end(surface_for_run(run, steps=5))
    again16 = run_to_end(surface_for_run(run, steps=5, precision="bf16"))
    assert again32.cached and type(again32) is RunSurface
    np.testing.assert_array_equal(again32.loss, f32.loss)
    assert again16.cached and again16.precision == bf.precision
    np.testing.assert_array_equal(again16.loss, bf.loss)
    assert len(list((d / "cache").glob("surface-*.npz"))) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="tf32 on a CPU: needs a machine without CUDA")
def test_tf32_on_a_cpu_is_float32_with_a_note(mlp_dir, tmp_path, capsys):
    run = open_run(mlp_dir)
    f32 = run_to_end(surface_for_run(run, steps=5, cache=False))
    t = run_to_end(surface_for_run(run, steps=5, cache=False, precision="tf32", device="cpu"))
    assert type(t) is RunSurface
    np.testing.assert_array_equal(t.loss, f32.loss)
    out = tmp_path / "t.npz"
    assert main(["surface", str(mlp_dir), "--steps", "3", "--no-cache", "--precision", "tf32",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "tf32 applies to CUDA matmuls only" in err and "float32" in err
    assert "precision" not in str(_cache.load(out)["meta"])


def test_cli_bf16_prints_and_saves_the_measured_error(mlp_dir, tmp_path, capsys):
    out = tmp_path / "b.npz"
    assert main(["surface", str(mlp_dir), "--steps", "5", "--no-cache", "--precision", "bf16",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    s = PrecisionSurface.from_arrays(_cache.load(out))
    line = next(x for x in text.splitlines() if x.startswith("precision bf16"))
    assert f"{s.precision['max_abs_error']:.3g} absolute" in line and "5x5 sub-grid" in line


@pytest.mark.parametrize(("args", "words"), [
    (["--precision", "fp8"], "unknown precision 'fp8'"),
    (["--precision", "bf16", "--tiles", "2", "--tile", "0", "--out", "x.npz"], "tiles and Ray"),
])
def test_bad_precision_is_one_line_exit_2(mlp_dir, capsys, args, words):
    assert main(["surface", str(mlp_dir), "--steps", "3", "--no-cache", *args]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_library_rejects_an_unknown_precision(mlp_dir):
    with pytest.raises(LossviewError, match="unknown precision"):
        run_to_end(surface_for_run(open_run(mlp_dir), steps=3, cache=False, precision="half"))


@pytest.fixture
def flags():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_float32_matmul_precision(saved[2])


def _tf32() -> tuple:
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)


def test_tf32_flags_are_on_only_inside_and_float32_does_not_undo_them(flags):
    # the flags are process-global settings: set and read back without a GPU
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    torch.set_float32_matmul_precision("highest")
    with full_float32(torch.device("cuda")):
        assert _tf32() == (False, False)
    assert _tf32() == (False, True)
    with tf32_matmuls():
        assert _tf32() == (True, True) and torch.get_float32_matmul_precision() == "high"
        with full_float32(torch.device("cuda")):  # the evaluators' own guard
            assert _tf32() == (True, True)
    assert _tf32() == (False, True) and torch.get_float32_matmul_precision() == "highest"
    seen = []

    def gen():
        for i in range(2):
            seen.append(_tf32())
            yield i
        return "done"

    g = stepwise(gen(), tf32_matmuls)
    assert next(g) == 0 and _tf32() == (False, True)  # off while the caller holds a step
    assert next(g) == 1
    with pytest.raises(StopIteration) as stop:
        next(g)
    assert stop.value.value == "done" and seen == [(True, True)] * 2


def _digits_cnn():
    torch.manual_seed(3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(96, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (96,), generator=g)
    m = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(48, 4))
    return m, torch.nn.functional.cross_entropy, x, y


def _mse_mlp():
    torch.manual_seed(4)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(128, 6, generator=g)
    y = torch.sin(x[:, :2])
    m = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    return m, torch.nn.MSELoss(), x, y


@pytest.mark.parametrize("case", [_mse_mlp, _digits_cnn])
def test_loss_surface_bf16_reports_its_error_and_leaves_the_model_float32(case):
    from lossview.core.surface.grid import loss_surface

    model, loss_fn, x, y = case()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    f32 = loss_surface(model, loss_fn, (x, y), steps=9, span=0.5)
    # an iterator of batches: read once, used by the bf16 grid and the float32 check
    bf = loss_surface(model, loss_fn, iter([(x[:50], y[:50]), (x[50:], y[50:])]), steps=9,
                      span=0.5, precision="bf16")
    assert f32.precision is None and bf.path.endswith(", bf16")
    diff = np.abs(bf.loss - f32.loss)
    sub = np.ix_(SUB9, SUB9)
    # batches of 50 and the rest against one batch: float32 rounding, far below bf16's
    assert bf.precision["max_abs_error"] == pytest.approx(diff[sub].max(),
                                                          abs=1e-5 * np.abs(f32.loss).max())
    assert diff.max() > 1e-2 * BF16_EPS * np.abs(f32.loss).max()
    assert np.all(diff <= 16 * BF16_EPS * np.abs(f32.loss))
    assert all(v.dtype == torch.float32 for v in bf.d1.values())  # the directions used
    for n in f32.d1:
        torch.testing.assert_close(bf.d1[n], f32.d1[n], rtol=0, atol=0)
    assert all(torch.equal(v, before[k]) and v.dtype == before[k].dtype
               for k, v in model.state_dict().items())
    with pytest.raises(LossviewError, match="recompute"):
        loss_surface(model, loss_fn, (x, y), steps=3, bn_mode="recompute", precision="bf16")

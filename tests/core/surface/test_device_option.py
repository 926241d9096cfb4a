"""--device for surfaces and sharpness: cpu and auto equal the default to the bit on a machine
without CUDA; a CUDA device that is not there, or a device kind these evaluations do not run
on (meta), is one line, exit 2; sharpness places its data once. The CUDA checks (float32
equal to the CPU's to rounding, tf32/bf16 errors measured, TF32 flags restored) run where a
GPU is present and are skipped, with that reason, elsewhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface.cache import load
from lossview.core.surface.curvature import HessianOperator, hessian_trace
from lossview.core.surface.loop import resolve_device
from lossview.core.surface.runsurface import run_to_end, surface_for_run
from lossview.core.surface.stability import gd_step_check, iter_sharpness, placed_data, step_check
from lossview.core.surface.usermodel import model_source, snapshot_tensors

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (none on this machine)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("dev") / "mlp"
    assert main(["train", "mlp", "--steps", "60", "--every", "10", "--out", str(d), "--quiet",
                 "--set", "hidden=8"]) == 0
    return d


def test_cpu_and_auto_equal_the_default_bit_for_bit(run_dir, tmp_path, capsys):
    arrays = {}
    for dev in (None, "cpu", "auto"):
        out = tmp_path / f"s_{dev}.npz"
        args = ["surface", str(run_dir), "--steps", "5", "--no-cache", "--out", str(out)]
        assert main(args + (["--device", dev] if dev else [])) == 0
        arrays[dev] = load(out)
    if not torch.cuda.is_available():  # auto is the CPU here
        for dev in ("cpu", "auto"):
            np.testing.assert_array_equal(arrays[dev]["loss"], arrays[None]["loss"])
    capsys.readouterr()
    assert main(["analyze", str(run_dir), "--json", "--device", "cpu"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["sharpness"]["sharpness"] and all(np.isfinite(rep["sharpness"]["sharpness"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
@pytest.mark.parametrize(("dev", "words"), [("cuda", "no CUDA device"), ("gpu7", "unknown device")])
def test_a_device_that_is_not_there_is_one_line(run_dir, tmp_path, capsys, dev, words):
    rc = main(["surface", str(run_dir), "--steps", "3", "--no-cache", "--device", dev,
               "--out", str(tmp_path / "s.npz")])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1


# -- the library: device resolution, sharpness's data placed once -------------------------

def test_resolve_device_cpu_auto_and_the_model_s_default():
    assert resolve_device(None, torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("cpu", torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto", torch.device("cpu")).type == ("cuda" if HAS_CUDA else "cpu")


@pytest.mark.parametrize(("dev", "words"), [("meta", "unsupported device 'meta'"),
                                       ("mps", "unsupported device 'mps'"),
                                       ("gpu7", "unknown device 'gpu7'"),
                                       ("cuda:99", "CUDA device")])
def test_resolve_device_rejects_what_these_evaluations_cannot_run_on(dev, words):
    if dev == "cuda:99" and HAS_CUDA and torch.cuda.device_count() > 99:
        pytest.skip("a machine with 100 GPUs")
    with pytest.raises(LossviewError, match=words):
        resolve_device(dev, torch.device("cpu"))


@pytest.mark.parametrize("cmd", ["surface", "analyze"])
@pytest.mark.parametrize(("dev", "words"), [("meta", "unsupported device 'meta'"),
                                       ("cuda", "no CUDA device")])
def test_a_bad_device_is_one_line_exit_2_for_surface_and_analyze(run_dir, capsys, cmd, dev,
                                                                  words):
    if dev == "cuda" and HAS_CUDA:
        pytest.skip("checks the message on a machine without CUDA")
    extra = ["--steps", "3", "--no-cache"] if cmd == "surface" else ["--json"]
    assert main([cmd, str(run_dir), "--device", dev, *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_sharpness_data_are_placed_once_and_cpu_equals_the_default(run_dir):
    run = open_run(run_dir)
    src = model_source(run)
    dev, data = placed_data(src, "cpu")
    assert dev == torch.device("cpu")
    # already there: no copy, and an operator on them keeps the very same tensors
    assert all(x is x0 and y is y0 for (x, y), (x0, y0) in zip(data, src.data))
    p, b = snapshot_tensors(run, len(run) - 1, src.model)
    op = HessianOperator(src.model, src.loss_fn, data, p, b, device=dev)
    assert all(x is x0 for (x, _), (x0, _) in zip(op.batches, data))
    assert op.loss() == pytest.approx(op.loss_and_grad()[0], rel=1e-6)
    default = run_to_end(iter_sharpness(run, source=src, indices=[0, -1]))
    on_cpu = run_to_end(iter_sharpness(run, source=src, indices=[0, -1], device="cpu"))
    assert on_cpu["sharpness"] == default["sharpness"] and all(np.isfinite(default["sharpness"]))
    assert step_check(run, 1, source=src, device="cpu") == step_check(run, 1, source=src)
    assert (hessian_trace(src.model, src.loss_fn, src.data, n_probes=3, device="cpu")
            == hessian_trace(src.model, src.loss_fn, src.data, n_probes=3))


# -- on a CUDA device (run where one is present) -------------------------------------------

@needs_cuda
def test_cuda_float32_surface_and_sharpness_equal_the_cpu_s_to_rounding(run_dir):
    run = open_run(run_dir)
    cpu = run_to_end(surface_for_run(run, steps=7, cache=False, device="cpu"))
    gpu = run_to_end(surface_for_run(run, steps=7, cache=False, device="cuda"))
    np.testing.assert_allclose(gpu.loss, cpu.loss, rtol=1e-5)
    np.testing.assert_allclose(gpu.true_loss, cpu.true_loss, rtol=1e-5)
    np.testing.assert_allclose(gpu.surface_loss, cpu.surface_loss, rtol=1e-5)
    src = model_source(run)
    a = run_to_end(iter_sharpness(run, source=src, indices=[0, -1], device="cpu"))
    g = run_to_end(iter_sharpness(run, source=src, indices=[0, -1], device="cuda"))
    # Lanczos stops at a 1e-3 residual: the eigenvalue is exact to second order, and the
    # GPU's rounding may stop it a step earlier or later than the CPU's
    np.testing.assert_allclose(g["sharpness"], a["sharpness"], rtol=1e-3)
    # the model stays where it was; the data went to the GPU once, for both snapshots
    assert next(src.model.parameters()).device.type == "cpu"
    dev, data = placed_data(src, "cuda")
    p, b = snapshot_tensors(run, 0, src.model)
    op = HessianOperator(src.model, src.loss_fn, data, p, b, device=dev)
    assert all(x is x0 and x.device.type == "cuda" for (x, _), (x0, _) in zip(op.batches, data))
    row = gd_step_check(op, 0.01)  # the step's operator stays on the GPU with op's batches
    ref = gd_step_check(HessianOperator(src.model, src.loss_fn, src.data, p, b), 0.01)
    for k in ("loss", "predicted", "actual"):
        assert row[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-5)
    ca = hessian_trace(src.model, src.loss_fn, src.data, n_probes=3, device="cpu")
    cg = hessian_trace(src.model, src.loss_fn, src.data, n_probes=3, device="cuda")
    assert cg[0] == pytest.approx(ca[0], rel=1e-3)  # the same probes: drawn on the CPU


@needs_cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_cuda_reduced_precision_reports_its_error_and_restores_tf32(run_dir, precision):
    run = open_run(run_dir)
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    f32 = run_to_end(surface_for_run(run, steps=9, cache=False, device="cuda"))
    s = run_to_end(surface_for_run(run, steps=9, cache=False, device="cuda", precision=precision))
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision()) == flags
    assert s.precision["precision"] == precision and s.precision["subgrid"] == [5, 5]
    sub = np.ix_([0, 2, 4, 6, 8], [0, 2, 4, 6, 8])
    diff = np.abs(s.loss - f32.loss)[sub]
    assert s.precision["max_abs_error"] == pytest.approx(diff.max(), abs=1e-5 * np.abs(f32.loss).max())
    # tf32: 10-bit significand inputs (2^-11 rounding); bf16: 8-bit
    bound = (2.0 ** -11 if precision == "tf32" else 2.0 ** -8) * 16
    assert s.precision["max_rel_error"] <= bound
    np.testing.assert_allclose(s.true_loss, f32.true_loss, rtol=1e-6)


def _loss_by_hand(run, i):
    """The full-data loss at snapshot ``i`` computed independently: the weights loaded
    into a fresh copy of the problem's model with load_state_dict, eval mode, batches
    weighted by their size."""
    src = model_source(run)
    model = src.model
    state = {k: torch.as_tensor(v) for k, v in {**run.params(i), **run.buffers(i)}.items()}
    model.load_state_dict(state, strict=False)
    model.eval()
    total = count = 0
    with torch.no_grad():
        for x, y in src.data:
            total += float(src.loss_fn(model(x), y)) * len(x)
            count += len(x)
    return total / count


def test_the_loss_of_each_snapshot_honours_device_and_equals_a_plain_forward(run_dir):
    """analyze's loss_full (a model file's loss at each snapshot) runs on ``device``: on a
    CPU it equals the default to the bit and a plain load_state_dict forward to rounding."""
    from lossview.core.surface.finite import model_loss_series

    run = open_run(run_dir)
    default = model_loss_series(run, source=model_source(run))
    cpu = model_loss_series(run, source=model_source(run), device="cpu")
    np.testing.assert_array_equal(cpu.values, default.values)
    np.testing.assert_array_equal(cpu.steps, run.steps)
    for i in (0, len(run) // 2, len(run) - 1):
        assert cpu.values[i] == pytest.approx(_loss_by_hand(run, i), rel=1e-6)
    with pytest.raises(LossviewError, match="unsupported device 'meta'"):
        model_loss_series(run, source=model_source(run), device="meta")


@needs_cuda
def test_cuda_loss_of_each_snapshot_equals_the_cpu_s_to_rounding(run_dir):
    from lossview.core.surface.finite import model_loss_series

    run = open_run(run_dir)
    src = model_source(run)
    cuda = model_loss_series(run, source=src, device="cuda")
    assert next(src.model.parameters()).device.type == "cuda"  # the model went there
    cpu = model_loss_series(run, source=model_source(run), device="cpu")
    np.testing.assert_allclose(cuda.values, cpu.values, rtol=1e-5)

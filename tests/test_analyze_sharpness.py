"""`lossview analyze --json` reports sharpness when the run names its model (built-in problem)."""

import json

import numpy as np
import pytest

from lossview.cli import main


@pytest.fixture(scope="module")
def quadratic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "run"
    assert main(["train", "quadratic", "--steps", "60", "--lr", "0.5", "--every", "4",
                 "--out", str(out)]) == 0
    return out


def test_sharpness_of_the_quadratic_is_its_top_eigenvalue(quadratic_run, capsys):
    capsys.readouterr()
    assert main(["analyze", str(quadratic_run), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["sharpness"]
    # the quadratic problem's Hessian has largest eigenvalue exactly 1 everywhere
    assert rep["sharpness"] == pytest.approx([1.0] * len(rep["steps"]), rel=1e-3)
    assert rep["threshold"] == pytest.approx([2 / 0.5] * len(rep["steps"]))
    assert rep["first_unstable_step"] is None
    assert rep["verdict"].lower().startswith("stable")
    assert rep["skipped"] == [] and rep["reason"] is None and rep["suspicious"] is None


def test_the_app_and_analyze_measure_at_the_same_snapshots(quadratic_run, capsys):
    from lossview.core.io import open_run
    from lossview.core.surface import SHARPNESS_POINTS
    from lossview.core.tasks.loader import SHARPNESS_POINTS as GUI_POINTS

    assert GUI_POINTS == SHARPNESS_POINTS == 12
    run = open_run(quadratic_run)
    assert len(run) == 16 > SHARPNESS_POINTS
    capsys.readouterr()
    assert main(["analyze", str(quadratic_run), "--json"]) == 0
    steps = json.loads(capsys.readouterr().out)["sharpness"]["steps"]
    # evenly spaced over the run, first and last included
    idx = np.unique(np.linspace(0, len(run) - 1, SHARPNESS_POINTS).round().astype(int))
    assert steps == run.steps[idx].tolist() and len(steps) == SHARPNESS_POINTS


def test_no_sharpness_flag_and_foreign_folder_without_model(quadratic_run, data_dir, capsys):
    capsys.readouterr()
    assert main(["analyze", str(quadratic_run), "--json", "--no-sharpness"]) == 0
    assert json.loads(capsys.readouterr().out)["sharpness"] is None
    assert main(["analyze", str(data_dir / "torch_general"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sharpness"] is None

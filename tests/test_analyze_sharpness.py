"""`lossview analyze --json` reports sharpness when the run names its model (built-in problem)."""

import json

import pytest

from lossview.cli import main


@pytest.fixture(scope="module")
def quadratic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "run"
    assert main(["train", "quadratic", "--steps", "60", "--lr", "0.5", "--every", "20",
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
    assert rep["verdict"].startswith("stable")


def test_no_sharpness_flag_and_foreign_folder_without_model(quadratic_run, data_dir, capsys):
    capsys.readouterr()
    assert main(["analyze", str(quadratic_run), "--json", "--no-sharpness"]) == 0
    assert json.loads(capsys.readouterr().out)["sharpness"] is None
    assert main(["analyze", str(data_dir / "torch_general"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sharpness"] is None

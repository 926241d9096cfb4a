"""The typed report (RunReport): the dict `analyze` returns, typed, immutable, and given
back equal; a new value when the sharpness arrives, the old one unchanged."""

import dataclasses
import json

import numpy as np
import pytest

from lossview.cli import main
from lossview.core.analysis.report import analyze, jsonable, refresh_answers
from lossview.core.analysis.report_model import RunReport
from lossview.core.io import open_run


def _round_trip(report: dict) -> None:
    typed = RunReport.from_json(report)
    assert typed.to_json() == report
    # the same JSON text: ints stay ints, nulls stay nulls, keys keep their order
    assert json.dumps(typed.to_json(), allow_nan=False) == json.dumps(report, allow_nan=False)


@pytest.fixture(scope="module")
def demo_report():
    from lossview.resources import path

    return jsonable(analyze(open_run(path("demo"))))


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """A plain PyTorch loop that saves its state_dict every 5 steps (a user's folder)."""
    torch = pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("torch_run")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(61):
        if step % 5 == 0:
            torch.save(model.state_dict(), out / f"checkpoint_{step}.pt")
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return out


def test_the_demo_report_round_trips(demo_report):
    _round_trip(demo_report)
    typed = RunReport.from_json(demo_report)
    assert typed.name == demo_report["name"]
    np.testing.assert_array_equal(typed.steps, demo_report["steps"])
    assert typed.steps.dtype == np.int64
    coords = np.array(demo_report["pca"]["coords"], dtype=float)
    np.testing.assert_array_equal(typed.pca.coords, coords)
    assert typed.plateau.step == demo_report["plateau"]["step"]
    assert typed.answers.weights.verdict == demo_report["answers"]["weights"]["verdict"]
    assert typed.diagnosis == tuple(demo_report["diagnosis"])
    # the keys a part does not type are there by key, as the JSON has them
    assert typed.answers.weights["step_length_trend"] == demo_report["answers"]["weights"][
        "step_length_trend"]
    assert typed.stationarity["verdict"] == demo_report["stationarity"]["verdict"]


def test_a_plain_torch_run_round_trips(torch_run):
    report = jsonable(analyze(open_run(torch_run)))
    assert report["format"] == "torch" and report["n_checkpoints"] == 13
    _round_trip(report)
    typed = RunReport.from_json(report)
    np.testing.assert_array_equal(typed.steps, np.arange(0, 61, 5))
    # no loss was logged: its answer says so, and reads as the JSON has it
    assert typed.answers.loss.sentence == report["answers"]["loss"]["sentence"]
    assert typed.loss_from_model is None and "loss_from_model" not in typed.to_json()


def test_nulls_absent_parts_and_unknown_keys_round_trip():
    d = {"name": "x", "pca": None, "sharpness": None, "steps": [0, 10, 20],
         "distance": {"from_init": [0.0, None, 2.5], "something_new": {"a": [1, 2]}},
         "a_later_key": ["text", 3]}
    typed = RunReport.from_json(d)
    assert typed.to_json() == d
    assert typed.pca.coords is None and not typed.pca  # a null part reads as an empty one
    assert typed.plateau.step is None  # so does a part the report lacks
    fi = typed.distance.from_init
    assert fi.dtype == np.float64 and np.isnan(fi[1]) and fi[2] == 2.5
    assert typed["a_later_key"] == ("text", 3)


def test_a_report_cannot_be_changed(demo_report):
    typed = RunReport.from_json(demo_report)
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        typed.answers.stability.verdict = "stable"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        typed.steps[0] = 5
    with pytest.raises(ValueError, match="read-only"):
        typed.pca.coords[0, 0] = 1.0
    with pytest.raises(TypeError):
        typed.metrics["loss"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        typed.answers["loss"] = {}  # type: ignore[index]
    # nothing written back into the dict it came from either
    assert typed.to_json() == demo_report


@pytest.fixture(scope="module")
def quadratic_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "run"
    assert main(["train", "quadratic", "--steps", "40", "--lr", "0.5", "--every", "4",
                 "--out", str(out)]) == 0
    return out


def test_with_sharpness_is_a_new_report_with_core_answers(quadratic_run, capsys):
    from lossview.commands.analyze import _sharpness

    run = open_run(quadratic_run)
    before = RunReport.from_json(analyze(run))
    assert before.answers.stability.verdict == "unknown"  # no curvature yet
    first = before.to_json()
    table = _sharpness(run)
    # the quadratic's Hessian has top eigenvalue 1 everywhere: lr 0.5 < 2/1 is stable
    np.testing.assert_allclose(table["sharpness"], 1.0, rtol=1e-3)

    after = before.with_sharpness(table)
    assert after is not before
    assert before.to_json() == first and before.sharpness.eigenvalues is None
    np.testing.assert_allclose(after.sharpness.eigenvalues, 1.0, rtol=1e-3)
    assert after.answers.stability.verdict == "stable"
    # what the command line reports for the same run: core's refresh on a plain dict
    expected = refresh_answers(dict(first, sharpness=jsonable(table)))
    assert after.to_json() == expected
    assert after.sharpness.verdict == expected["answers"]["stability"]["sentence"]
    assert tuple(expected["diagnosis"]) == after.diagnosis != before.diagnosis
    capsys.readouterr()
    assert main(["analyze", str(quadratic_run), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    _round_trip(cli)
    assert cli["answers"]["stability"]["verdict"] == after.answers.stability.verdict

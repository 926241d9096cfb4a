"""Detection picks the checkpoints of a project folder: not its dataset, not a lone final
file; number-less files go after the numbered ones; several runs are listed; a folder of
whole pickled models is refused saying what to do."""

import json
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))


def _loop(folder, steps, name="model_{}.pt", dataset=None):
    """A plain regression loop saving ``model.state_dict()`` at ``steps``; returns the
    weights saved, by step."""
    folder.mkdir(parents=True, exist_ok=True)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = dataset if dataset is not None else (torch.randn(256, 1), torch.randn(256, 1))
    saved = {}
    for step in range(max(steps) + 1):
        if step in steps:
            torch.save(model.state_dict(), folder / name.format(step))
            saved[step] = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
        i = torch.randint(0, len(x), (32,))
        loss = nn.functional.mse_loss(model(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, saved


def _cli(capsys, *argv):
    rc = main(["analyze", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _project(tmp_path, data="dict"):
    """project/ data.pt + train.py + checkpoints/model_<step>.pt, as a tutorial leaves it."""
    project = tmp_path / "project"
    project.mkdir()
    x = torch.randn(60000, 1)
    y = torch.sin(3 * x) + 0.1 * torch.randn(60000, 1)
    if data == "dict":
        torch.save({"x": x, "y": y}, project / "data.pt")
    else:  # a TensorDataset's tensors
        torch.save(torch.utils.data.TensorDataset(x, y).tensors, project / "data.pt")
    (project / "train.py").write_text("# the user's training script\n")
    _, saved = _loop(project / "checkpoints", [0, 100, 200, 300], dataset=(x, y))
    return project, saved


@pytest.mark.parametrize("data", ["dict", "TensorDataset tensors"])
def test_a_project_folder_opens_its_checkpoints_not_its_dataset(tmp_path, data):
    project, saved = _project(tmp_path, data)
    run = open_run(project)
    assert run.format == "torch" and run.steps.tolist() == [0, 100, 200, 300]
    assert run.n_params == 16 + 16 + 16 + 1  # the model's, not the dataset's 60,000 rows
    for i, step in enumerate((0, 100, 200, 300)):
        for k, v in saved[step].items():
            np.testing.assert_array_equal(run.params(i)[k], v)
    assert run.warnings == [
        "ignored 1 file (beside checkpoints/, whose files are the checkpoints): data.pt"]


def test_a_dataset_beside_one_model_file_is_skipped_as_data(tmp_path):
    torch.save({"x": torch.randn(60000, 1), "y": torch.randn(60000)}, tmp_path / "data.pt")
    model, _ = _loop(tmp_path / "tmp", [5])
    torch.save(model.state_dict(), tmp_path / "model.pt")
    shutil.rmtree(tmp_path / "tmp")
    run = open_run(tmp_path)
    assert run.n_params == 49 and len(run) == 1
    assert run.warnings == ["skipped data.pt: holds data, not weights (x [60000, 1], y [60000])"]
    with pytest.raises(LossviewError, match=r"data.pt: holds data, not weights"):
        open_run(tmp_path / "data.pt")


def test_a_toy_point_named_x_is_still_weights(tmp_path):
    """A 2-D point optimised on a test function is the 'model': not data."""
    for step in (0, 10, 20):
        torch.save({"x": torch.tensor([1.0 - step / 20, 2.0])}, tmp_path / f"x_{step}.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [0, 10, 20] and run.n_params == 2


def test_a_final_file_goes_after_the_numbered_ones(tmp_path):
    model, saved = _loop(tmp_path, [100, 200, 300, 400])
    final = {k: v.detach().clone().numpy() for k, v in model.state_dict().items()}
    torch.save(model.state_dict(), tmp_path / "model_final.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [100, 200, 300, 400, 401]  # not renumbered 0..4
    assert run.snapshots[-1].source.name == "model_final.pt"
    np.testing.assert_array_equal(run.params(4)["0.weight"], final["0.weight"])
    np.testing.assert_array_equal(run.params(1)["0.weight"], saved[200]["0.weight"])
    assert run.warnings == ["model_final.pt has no step number in its name: placed at step 401, "
                            "after the last numbered one (400)"]


def test_a_final_file_that_stores_its_step_goes_there(tmp_path):
    model, _ = _loop(tmp_path, [100, 200])
    torch.save({"model_state_dict": model.state_dict(), "step": 250}, tmp_path / "final.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [100, 200, 250] and run.warnings == []


def test_an_init_file_goes_first(tmp_path):
    _loop(tmp_path, [1, 50, 100], name="model_{}.pt")
    torch.save(_net().state_dict(), tmp_path / "model_init.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [0, 1, 50, 100]
    assert run.snapshots[0].source.name == "model_init.pt"
    assert run.warnings == ["model_init.pt has no step number in its name: placed at step 0, "
                            "before the first numbered one (1)"]


def test_several_runs_are_listed_in_one_line(tmp_path, capsys):
    root = tmp_path / "experiments"
    _loop(root / "lr_0.1" / "checkpoints", [0, 10, 20])
    _loop(root / "lr_0.01" / "checkpoints", [0, 10])
    _loop(root / "baseline", [0, 5, 10, 15], name="step_{}.pt")
    (root / "notes.md").write_text("three runs\n")
    with pytest.raises(LossviewError) as e:
        open_run(root)
    assert str(e.value) == (
        f"{root} holds 3 runs: baseline (4 checkpoints), lr_0.01 (2 checkpoints), "
        f"lr_0.1 (3 checkpoints); open one of them (e.g. {root / 'baseline'})")
    assert e.value.runs == [(root / "baseline", 4), (root / "lr_0.01", 2), (root / "lr_0.1", 3)]
    rc, out, err = _cli(capsys, root, "--json")
    assert rc == 2 and out == "" and err.count("\n") == 1
    assert err == f"lossview analyze: error: {e.value}\n"
    # one of them opens, its checkpoints/ one level down
    run = open_run(root / "lr_0.1")
    assert run.steps.tolist() == [0, 10, 20]


def test_the_checkpoints_folder_wins_over_another_series(tmp_path):
    _loop(tmp_path / "checkpoints", [0, 10, 20])
    _loop(tmp_path / "pretrained", [1, 2], name="backbone_v{}.pt")
    assert open_run(tmp_path).steps.tolist() == [0, 10, 20]


def test_lightning_checkpoints_beside_a_dataset(data_dir, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(data_dir / "lightning", root)
    torch.save({"x": torch.randn(5000, 2), "y": torch.randint(0, 2, (5000,))}, root / "data.pt")
    run = open_run(root)
    assert run.format == "lightning" and run.steps.tolist() == [2, 4, 6]
    assert run.metric("train_loss") is not None


def test_a_folder_of_whole_pickled_models_is_refused_saying_what_to_do(tmp_path, capsys):
    for step in (1, 2, 3, 4):
        torch.save(_net(), tmp_path / f"model_{step}.pt")  # torch.save(model)
    rc, out, err = _cli(capsys, tmp_path, "--json")
    assert rc == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert "all 4 torch files (model_1.pt, model_2.pt, model_3.pt ...) need pickled code" in err
    assert "save model.state_dict() instead" in err
    # one good file among them: it opens, the others are named
    torch.save(_net().state_dict(), tmp_path / "model_5.pt")
    run = open_run(tmp_path)
    assert run.steps.tolist() == [5]
    assert sum("needs pickled code; skipped for safety" in w for w in run.warnings) == 4


def test_analyze_says_what_it_opened_in_one_line(tmp_path, capsys):
    project, _ = _project(tmp_path)
    with open(project / "checkpoints" / "metrics.csv", "w") as fh:
        fh.write("step,loss\n" + "".join(f"{s},{1 / (s + 1)}\n" for s in range(0, 301, 50)))
    torch.save({"state": {}, "param_groups": [{"lr": 0.05}]},
               project / "checkpoints" / "optimizer.pt")
    rc, out, err = _cli(capsys, project)
    assert rc == 0 and err == ""  # no wall of warning lines
    expected = ("opened as torch: 4 checkpoints in checkpoints/ (model_0.pt … model_300.pt), "
                "steps 0–300; metrics: loss (metrics.csv); ignored 1 file (beside checkpoints/, "
                "whose files are the checkpoints): data.pt; ignored 1 file (optimizer/scheduler/"
                "RNG state or training arguments, not weights; never opened): optimizer.pt")
    assert out.splitlines()[0] == expected
    rc, out, err = _cli(capsys, project, "--json")
    assert rc == 0 and err == ""
    rep = json.loads(out)
    assert rep["opened_as"] == expected and rep["steps"] == [0, 100, 200, 300]


def test_the_opened_as_line_of_a_run_without_snapshots_yet(tmp_path):
    """A live run before its first snapshot (the GUI asks): no error, says so."""
    from lossview.core.io.summary import opened_as
    from lossview.core.run import Run

    assert opened_as(Run(tmp_path, "lossview", [], None, {})) == \
        "opened as lossview: no checkpoints yet; no metrics"

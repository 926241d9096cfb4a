"""The shipped demo run: readable, small, and rebuildable from its run.json."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from lossview.core.io import open_run
from lossview.core.train.config import TrainConfig
from lossview.core.train.problems import problem_from_spec

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "resources" / "demo"


def _script():
    spec = importlib.util.spec_from_file_location("make_demo_run", ROOT / "packaging" / "make_demo_run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demo_run_is_shipped_small_and_finished():
    run = open_run(DEMO)
    assert run.spec["status"] == "finished" and not run.warnings
    assert 100 <= len(run) <= 200
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    assert size < 2_000_000
    # what the script asks for is what was recorded
    cfg, _ = _script().demo_config().resolve()
    assert TrainConfig.from_dict(run.spec["config"]) == cfg
    # a plateau then wandering: the late loss is flat while the weights keep moving away
    tl = run.metric("train_loss")
    late = tl.steps >= 1000
    assert tl.values[late].max() < 0.25 * tl.values[0]
    d = np.array([np.linalg.norm(run.vector(i) - run.vector(0)) for i in range(len(run))])
    assert d[-1] > 1.1 * d[len(d) // 2]


def test_demo_problem_rebuilds_its_initial_weights():
    run = open_run(DEMO)
    p = problem_from_spec(run.spec["problem"])
    for k, v in p.make_model().named_parameters():
        np.testing.assert_array_equal(run.params(0)[k], v.detach().numpy())

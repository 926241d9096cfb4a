"""The whole report: the documented keys (docs/analysis.md), strict JSON, numbers on a run
with a known story, and graceful nulls for runs too short to analyse."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lossview.cli import main
from lossview.core.analysis.report import analyze, analyze_iter, analyze_steps, format_text
from lossview.core.io import RunWriter, open_run
from lossview.core.io.memory import run_from_arrays

SHAPES = {"fc1.weight": (32, 10), "fc1.bias": (32,), "fc2.weight": (4, 32), "fc2.bias": (4,)}
DESIGN_KEYS = {"format", "n_checkpoints", "steps", "n_params", "metrics", "distance", "pca",
               "plateau", "diffusion", "divergence", "diagnosis"}


def _split(v):
    out, a = {}, 0
    for k, s in SHAPES.items():
        n = int(np.prod(s))
        out[k] = v[a:a + n].reshape(s).astype(np.float32)
        a += n
    return out


@pytest.fixture(scope="module")
def story_run(tmp_path_factory):
    """Drift for 50 snapshots (loss falls until step 500), then a pure random walk while the
    loss stays flat at 1 with noise, and the gradient norm levels off."""
    rng = np.random.default_rng(0)
    d = sum(int(np.prod(s)) for s in SHAPES.values())
    w = rng.normal(size=d)
    target = w + rng.normal(size=d)
    path = tmp_path_factory.mktemp("runs") / "story"
    with RunWriter(path, spec={"optimizer": {"name": "sgd", "lr": 0.1}}) as wr:
        for step in range(2000):
            loss = 1 + 2 * max(0.0, 1 - step / 500) + 0.02 * rng.normal()
            wr.log(step, loss=loss, grad_norm=0.3 + np.exp(-step / 100) + 0.02 * rng.normal())
            if step % 10 == 0:
                wr.snapshot(step, _split(w))
                w = w + (target - w) / 50 if step < 500 else w + 0.01 * rng.normal(size=d)
    return open_run(path)


def test_story_run_report(story_run):
    steps_seen = []
    gen = analyze_steps(story_run)
    while True:
        try:
            steps_seen.append(next(gen)[0])
        except StopIteration as e:
            rep = e.value
            break
    assert steps_seen[0] == 0.0 and steps_seen[-1] == 1.0 and steps_seen == sorted(steps_seen)
    json.dumps(rep, allow_nan=False)
    assert set(rep) >= DESIGN_KEYS
    assert rep["n_checkpoints"] == 200 and rep["n_params"] == 484
    assert rep["plateau"]["step"] == pytest.approx(500, abs=40)
    wm = rep["plateau"]["weights"]
    assert 0 < wm["after_over_total_displacement"] < 1
    assert rep["diffusion"]["segment"] == "after plateau"
    assert rep["diffusion"]["exponent"] == pytest.approx(1.0, abs=0.15)  # random walk after
    assert rep["stationarity"]["verdict"] == "not stationary"
    assert rep["gradient"]["verdict"] == "levels off"
    assert len(rep["pca"]["coords"]) == 200 and len(rep["pca"]["coords"][0]) == 2
    assert len(rep["pca"]["coords_k"][0]) == 5
    assert rep["pca"]["coords_k"][7][:2] == rep["pca"]["coords"][7]
    assert 0 <= rep["pca"]["random_walk_similarity"] <= 1
    perm = rep["permutation"]
    assert perm["hidden_sizes"] == [32]
    assert all(a <= r + 1e-6 for a, r in zip(perm["aligned_to_final"], perm["raw_to_final"]))
    assert perm["raw_to_final"][-1] == 0.0
    assert rep["divergence"]["step"] is None
    pw = rep["pairwise"]
    assert len(pw["matrix"]) == 200 and pw["steps"][:2] == [0, 10]
    fi = rep["distance"]["from_init"]
    np.testing.assert_allclose(pw["matrix"][0], fi, rtol=1e-6)  # from the Gram matrix
    np.testing.assert_allclose(np.array(pw["matrix"])[:, -1], rep["distance"]["to_final"], rtol=1e-6)
    text = " ".join(rep["diagnosis"])
    a = rep["answers"]
    assert a["loss"]["verdict"] == "converged" and a["loss"]["plateau_step"] == rep["plateau"]["step"]
    assert f"flat since step {rep['plateau']['step']:,} within" in text
    # after the plateau: a random walk (slope 1, steady step, uncorrelated updates)
    w = a["weights"]
    assert w["verdict"] == "diffusing" and w["segment"][0] >= rep["plateau"]["step"]
    assert w["msd_long_lag_slope"] == pytest.approx(1.0, abs=0.15)
    assert w["step_length_trend"] == pytest.approx(1.0, abs=0.2)
    assert abs(w["update_correlation"]) < 0.1
    assert f"long-lag MSD slope {w['msd_long_lag_slope']:.2f}" in w["sentence"]
    assert a["stability"]["verdict"] == "unknown" and "--model" in a["stability"]["sentence"]
    assert a["exploration"]["aligned"] <= a["exploration"]["raw"] + 1e-6
    assert "keeps exploring" in a["exploration"]["sentence"]
    assert "levels off" in text
    assert "plateau:" in format_text(rep)


def test_cli_json_is_strict_and_matches_analyze(story_run, capsys):
    assert main(["analyze", str(story_run.path), "--json"]) == 0
    out = capsys.readouterr().out
    rep = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
    assert rep["plateau"]["step"] == analyze(story_run)["plateau"]["step"]
    assert main(["analyze", str(story_run.path)]) == 0
    assert "diagnosis:" in capsys.readouterr().out


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_snapshots_degrade_to_null_with_reasons(n):
    x = np.random.default_rng(0).normal(size=(n, 6))
    rep = analyze(run_from_arrays(x, metrics={"loss": ([0, 1], [1.0, float("nan")])}))
    json.dumps(rep, allow_nan=False)
    assert rep["pca"]["explained_variance_ratio"] is None and rep["pca"]["reason"]
    assert rep["diffusion"]["exponent"] is None and rep["diffusion"]["reason"]
    assert rep["plateau"]["step"] is None and rep["plateau"]["reason"]
    assert rep["permutation"]["aligned_to_final"] is None
    assert rep["divergence"]["step"] == 1
    assert any("snapshot" in s for s in rep["diagnosis"])
    format_text(rep)


def rng0_w():
    return np.random.default_rng(1).normal(size=484)


def test_diverged_run_is_reported_and_still_strict_json(tmp_path):
    rng = np.random.default_rng(1)
    d = 484
    w = rng.normal(size=d)
    with RunWriter(tmp_path / "r", spec={"optimizer": {"lr": 2.5}}) as wr:
        for step in range(0, 300, 10):
            wr.log(step, loss=float(np.sum(w**2)) if step < 200 else float("inf"),
                   update_norm=0.5, param_norm=float(np.linalg.norm(w)))
            wr.snapshot(step, _split(w if step <= 200 else w * np.nan))
            w = w * (1.5 if step >= 100 else 1.0) + 0.01 * rng.normal(size=d)
        wr.update_spec(status="diverged", divergence_step=200)
    gen = analyze_iter(open_run(tmp_path / "r"))
    lines = []
    while True:
        try:
            lines.append(next(gen))
        except StopIteration as e:
            rep = e.value
            break
    assert all(isinstance(x, str) for x in lines) and lines[-1].endswith("(100%)")
    json.dumps(rep, allow_nan=False)
    ur = rep["distance"]["logged_update_ratio"]
    assert ur["steps"][0] == 0 and ur["values"][0] == pytest.approx(0.5 / np.linalg.norm(rng0_w()))
    assert rep["divergence"]["step"] == 200
    assert rep["divergence"]["last_finite_snapshot"]["step"] == 200
    assert rep["pca"]["explained_variance_ratio"] is not None  # on the finite snapshots
    assert len(rep["pca"]["steps"]) == 21
    assert rep["diagnosis"][0].startswith("Diverged at step 200")
    assert "lr = 2.5" in rep["diagnosis"][0]
    a = rep["answers"]
    assert a["weights"]["verdict"] == a["loss"]["verdict"] == a["stability"]["verdict"] == "diverged"
    # nothing after the blow-up is described as settling or improving
    assert not re.search(r"converg|improv|confin|settl", " ".join(rep["diagnosis"]), re.I)

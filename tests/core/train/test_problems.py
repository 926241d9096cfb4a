"""Built-in problems: specs rebuild identical data and models; bad names/options; data paths."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from lossview.core.errors import LossviewError
from lossview.core.train import data as data_mod
from lossview.core.train.problems import PROBLEMS, build_problem, problem_from_spec

SMALL = {"mlp": {}, "bn-mlp": {}, "cnn": {}, "quadratic": {"dim": 8, "n": 64}, "linreg": {},
         "eos": {}}


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_spec_rebuilds_identical_problem(name):
    p = build_problem(name, seed=3, **SMALL[name])
    spec = json.loads(json.dumps(p.spec))  # what run.json stores
    q = problem_from_spec(spec)
    assert q.spec == p.spec
    for a, b in zip(p.train_data, q.train_data):
        assert torch.equal(a, b)
    m1, m2 = p.make_model(), q.make_model()
    n1 = dict(m1.named_parameters())
    n2 = dict(m2.named_parameters())
    assert list(n1) == list(n2) and n1
    for k in n1:
        assert torch.equal(n1[k], n2[k])
    # the loss is loss_fn(model(inputs), targets), a finite scalar
    x, y = p.train_data
    loss = p.loss_fn(m1(x[:16]), y[:16])
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert p.description and p.default_steps >= 100


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_loss_works_under_vmap_functional_call(name):
    p = build_problem(name, seed=0, **SMALL[name])
    model = p.make_model().eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = dict(model.named_buffers())
    stacked = {k: torch.stack([v, v * 1.5]) for k, v in params.items()}
    x, y = p.train_data

    def f(ps):
        return p.loss_fn(torch.func.functional_call(model, (ps, buffers), (x[:32],)), y[:32])

    batched = torch.vmap(f)(stacked)
    one = f({k: v[1] for k, v in stacked.items()})
    assert torch.allclose(batched[1], one, rtol=1e-5, atol=1e-6)


def test_different_seeds_give_different_init_and_split():
    a, b = build_problem("mlp", seed=0), build_problem("mlp", seed=1)
    assert not torch.equal(a.train_data[1], b.train_data[1])
    assert not torch.equal(a.make_model().fc1.weight, b.make_model().fc1.weight)


def test_quadratic_spectrum_and_noise_are_as_documented():
    p = build_problem("quadratic", seed=5)
    h = np.linalg.eigvalsh(p.hessian.double().numpy())
    assert h.max() == pytest.approx(1.0, abs=1e-6)  # largest eigenvalue exactly 1 (float32)
    assert h.min() == pytest.approx(0.01, rel=1e-4)
    c = p.train_data[1].double().numpy()
    np.testing.assert_allclose(c.mean(0), 0.0, atol=1e-5)  # the minimum is exactly 0
    np.testing.assert_allclose(np.cov(c.T, bias=True), np.eye(30), atol=1e-5)  # whitened


def test_unknown_problem_and_bad_options_are_one_line_errors():
    with pytest.raises(LossviewError, match="unknown problem 'nope'"):
        build_problem("nope")
    with pytest.raises(LossviewError, match="no option 'width'"):
        build_problem("mlp", width=3)
    with pytest.raises(LossviewError, match="must be a int"):
        build_problem("quadratic", dim=2.5)
    with pytest.raises(LossviewError, match="must not be negative"):
        build_problem("linreg", noise=-1.0)
    with pytest.raises(LossviewError, match="unknown data source"):
        build_problem("mlp", data="mnist")
    with pytest.raises(LossviewError, match="no 'name'"):
        problem_from_spec({"seed": 0})


def test_digits_path_uses_sklearn_digits():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    p = build_problem("mlp")
    assert p.spec["data"] == "digits"
    x, y = p.train_data
    assert x.shape == (1438, 64) and p.val_data[0].shape == (359, 64)
    assert sorted(np.unique(y.numpy())) == list(range(10))
    d = load_digits()
    # every training image is one of the scikit-learn digits, scaled to [0, 1]
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    assert np.isin(np.round(x[0].numpy() * 16), np.arange(17)).all()
    assert any(np.array_equal(x[0].numpy() * 16, im) for im in d.data.astype(np.float32))


def test_digits_need_no_scikit_learn(monkeypatch):
    # the shipped arrays are scikit-learn's digits, exactly
    from sklearn.datasets import load_digits

    d = load_digits()
    images, labels = data_mod.load_images("digits")
    np.testing.assert_array_equal(images * 16, d.images)
    np.testing.assert_array_equal(labels, d.target)
    # and a plain install (no scikit-learn) trains and rebuilds digit runs all the same
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    p = build_problem("cnn")
    assert p.spec["data"] == "digits"  # the spec names the data actually used
    assert p.train_data[0].shape == (1438, 1, 8, 8)
    assert build_problem("mlp", data="digits").spec["data"] == "digits"
    assert build_problem("mlp", data="synthetic").spec["data"] == "synthetic"


def test_synthetic_data_is_fixed_balanced_and_learnable():
    x1, y1 = data_mod.synthetic_images()
    x2, y2 = data_mod.synthetic_images()
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert np.bincount(y1).min() >= 179
    assert x1.min() >= 0 and x1.max() <= 1
    # nearest-prototype classifier (class means of one half) on the other half: learnable,
    # but not trivially so
    xf = x1.reshape(len(x1), -1)
    means = np.stack([xf[:900][y1[:900] == c].mean(0) for c in range(10)])
    pred = np.argmin(((xf[900:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    acc = (pred == y1[900:]).mean()
    assert 0.5 < acc < 1.0


def test_the_torch_free_names_match_the_implementations():
    from lossview.core.train import names, optim
    from lossview.core.train.problems import PROBLEMS

    assert tuple(PROBLEMS) == names.PROBLEM_NAMES
    assert optim.OPTIMIZERS == names.OPTIMIZERS and optim.SCHEDULES == names.SCHEDULES


def test_the_dialogs_catalogue_carries_each_problems_defaults():
    from lossview.core.tasks.jobs import CATALOG_KEYS, problem_catalog
    from lossview.core.train.problems import PROBLEMS

    gen = problem_catalog()
    assert next(gen) == "problems"
    try:
        next(gen)
    except StopIteration as stop:
        catalog = stop.value
    assert list(catalog) == list(PROBLEMS)
    assert catalog["mlp"]["default_lr"] == PROBLEMS["mlp"].default_lr == 0.3
    assert all(set(v) == set(CATALOG_KEYS) for v in catalog.values())

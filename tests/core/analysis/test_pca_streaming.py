"""Streaming Gram-matrix PCA against numpy's SVD, and the random-walk baseline against theory
(Antognini & Sohl-Dickstein 2018; exact finite-T formula in docs/science.md section 2)."""

from __future__ import annotations

import numpy as np
import pytest
from synth_trajectories import ballistic, ou, random_walk

from lossview.core.analysis.gram import centred_gram
from lossview.core.analysis.pca import (
    compare_with_random_walk,
    pca,
    pca_directions,
    pca_from_gram,
    random_walk_baseline,
    random_walk_ratios_even,
)
from lossview.core.io import RunWriter, open_run
from lossview.core.io.memory import run_from_arrays


def _svd(x):
    y = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(y, full_matrices=False)
    return s, u, vt


def _layered(x):
    """Split flat rows into three tensors (2-D, 1-D, 3-D) so blocks cut across them."""
    return [{"a.weight": r[:60].reshape(6, 10), "a.bias": r[60:66], "c.weight": r[66:].reshape(2, 3, -1)}
            for r in x]


def test_matches_numpy_svd_to_1e6_with_many_small_blocks():
    rng = np.random.default_rng(3)
    # large offset and small motion: the case where an uncentred Gram matrix loses digits
    x = 50.0 + np.cumsum(rng.normal(scale=1e-3, size=(40, 66 + 6 * 30)), axis=0)
    run = run_from_arrays(_layered(x))
    s, u, vt = _svd(x)
    for max_bytes in (10**9, 40 * 8 * 7):  # one block; blocks of 7 columns, splitting tensors
        res = pca_from_gram(centred_gram(run, max_bytes=max_bytes), k=10)
        ev = s**2 / np.sum(s**2)
        np.testing.assert_allclose(res.explained_variance_ratio, ev[:10], rtol=1e-6)
        np.testing.assert_allclose(res.singular_values, s[:10], rtol=1e-6)
        np.testing.assert_allclose(np.abs(res.coords), np.abs(u[:, :10] * s[:10]), rtol=1e-6,
                                   atol=1e-6 * s[0])
    v = pca_directions(run, k=3)
    for j in range(3):
        assert abs(v[j] @ vt[j]) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(np.abs(v[j]), np.abs(vt[j]), atol=1e-6 * np.abs(vt[j]).max())


def test_native_run_on_disk_gives_the_same_pca_as_memory(tmp_path):
    x = random_walk(12, 66 + 6 * 30, seed=5).astype(np.float32)
    with RunWriter(tmp_path / "r") as w:
        for i, t in enumerate(_layered(x)):
            w.snapshot(10 * i, t)
    disk = open_run(tmp_path / "r")
    a = pca_from_gram(centred_gram(disk, max_bytes=12 * 8 * 16), k=5)  # sliced reads, many blocks
    b = pca_from_gram(centred_gram(run_from_arrays(_layered(x.astype(np.float64)))), k=5)
    np.testing.assert_allclose(a.explained_variance_ratio, b.explained_variance_ratio, rtol=1e-9)
    np.testing.assert_allclose(a.coords, b.coords, rtol=1e-9, atol=1e-9 * np.abs(b.coords).max())
    assert a.steps.tolist() == list(range(0, 120, 10))


def test_signs_put_the_last_snapshot_on_the_positive_side_and_directions_reproduce_coords():
    x = random_walk(30, 200, seed=1)
    run = run_from_arrays(x)
    res = pca(run, k=2)
    assert (res.coords[-1] >= 0).all()
    v, origin = pca_directions(run, k=2, return_origin=True)
    np.testing.assert_allclose(origin, x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose((x - origin) @ v.T, res.coords, atol=1e-9)


def test_directions_about_the_last_snapshot_fit_the_uncentred_differences():
    x = ballistic(20, 50, seed=2) + random_walk(20, 50, seed=3)
    v, origin = pca_directions(run_from_arrays(x), k=2, center="last", return_origin=True)
    np.testing.assert_array_equal(origin, x[-1])
    _, _, vt = np.linalg.svd(x - x[-1], full_matrices=False)
    for j in range(2):
        assert abs(v[j] @ vt[j]) == pytest.approx(1.0, abs=1e-9)


def test_random_walk_baseline_equals_the_closed_form_for_even_steps():
    for t in (5, 100, 400):
        r0, prof = random_walk_baseline(np.arange(t) * 7)
        np.testing.assert_allclose(r0[: t - 1], random_walk_ratios_even(t), rtol=1e-9, atol=1e-15)
        tt = np.arange(1, t + 1)
        for k in (1, 2, 3):
            c = np.cos(np.pi * k * (tt - 0.5) / t)
            assert abs(np.corrcoef(prof[:, k - 1], c)[0, 1]) == pytest.approx(1.0, abs=1e-9)
    # docs/science.md table, T = 1000: 0.60793, 0.15198, 0.06755
    np.testing.assert_allclose(random_walk_ratios_even(1000)[:3], [0.60793, 0.15198, 0.06755], atol=1e-5)


def test_gaussian_random_walk_spectrum_profiles_and_parabola():
    t, d = 200, 5000
    res = pca(run_from_arrays(random_walk(t, d, seed=0)), k=5)
    # finite d: PC1 sd is about 0.005-0.008 at d = 5000-10000 (docs/science.md table); 0.03 is > 4 sd
    np.testing.assert_allclose(res.explained_variance_ratio[:3], random_walk_ratios_even(t)[:3], atol=0.03)
    tt = np.arange(1, t + 1)
    for k in (1, 2, 3):
        c = np.cos(np.pi * k * (tt - 0.5) / t)
        assert abs(np.corrcoef(res.coords[:, k - 1], c)[0, 1]) > 0.99  # 0.9997+ at d = 10000
    # Lissajous: with unit amplitudes, PC2 = 2 PC1^2 - 1 (up to sign)
    x = res.coords[:, 0] / np.abs(res.coords[:, 0]).max()
    y = res.coords[:, 1] / np.abs(res.coords[:, 1]).max()
    resid = min(np.abs(y - (2 * x**2 - 1)).mean(), np.abs(y + (2 * x**2 - 1)).mean())
    assert resid < 0.05
    assert res.random_walk_similarity > 0.9


def test_similarity_is_low_for_drift_and_for_confinement():
    t, d = 200, 2000
    drift = ballistic(t, d, seed=1) + 0.3 * random_walk(t, d, seed=2)  # |T mu|^2 >> diffusion
    assert pca(run_from_arrays(drift), k=5).random_walk_similarity < 0.3
    conf = pca(run_from_arrays(ou(t, d, gamma=0.5, seed=3)), k=5)
    # gamma T = 100: flat spectrum, PC1 about 0.02 (docs/science.md) against 0.61
    assert conf.explained_variance_ratio[0] < 0.05
    assert conf.random_walk_similarity < 0.2
    pure = pca(run_from_arrays(ballistic(t, d, seed=4)), k=5)
    assert pure.explained_variance_ratio[0] == pytest.approx(1.0, abs=1e-9)
    assert pure.random_walk_similarity < 0.01


def test_log_spaced_snapshots_of_a_walk_match_their_own_baseline():
    full = random_walk(2000, 3000, seed=7)
    idx = np.unique(np.geomspace(1, 1999, 40).astype(int))
    res = pca(run_from_arrays(full[idx], steps=idx), k=5)
    assert res.random_walk_similarity > 0.85
    r0, _ = random_walk_baseline(idx)
    assert abs(r0[0] - 6 / np.pi**2) > 0.02  # log spacing changes the expected spectrum...
    naive = compare_with_random_walk(res.explained_variance_ratio, res.coords, np.arange(len(idx)))
    assert naive["similarity"] < res.random_walk_similarity - 0.1  # ...and ignoring it misleads


def test_non_finite_snapshots_are_dropped_not_propagated():
    x = random_walk(10, 30, seed=0)
    x[7, 3] = np.nan
    g = centred_gram(run_from_arrays(x), max_bytes=10 * 8 * 4)
    assert g.dropped == [7] and g.indices.tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    keep = np.delete(x, 7, axis=0)
    y = keep - keep.mean(axis=0)
    np.testing.assert_allclose(g.gram, y @ y.T, rtol=1e-10, atol=1e-10)


def test_gram_generator_reports_progress_and_stops_when_asked():
    from lossview.core.analysis.gram import gram_steps

    run = run_from_arrays(_layered(random_walk(10, 66 + 6 * 30, seed=9)))
    fractions = []
    gen = gram_steps(run, max_bytes=10 * 8 * 50)

    def drain():
        while True:
            fractions.append(next(gen))

    with pytest.raises(StopIteration) as end:
        drain()
    assert end.value.value is not None
    assert len(fractions) > 3 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    calls = []
    stopped = gram_steps(run, max_bytes=10 * 8 * 50, should_stop=lambda: calls.append(1) or len(calls) > 3)
    with pytest.raises(StopIteration) as e:
        next(stopped)
    assert e.value.value is None and len(calls) == 4

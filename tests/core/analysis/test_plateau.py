"""Plateau detection on loss curves with a known plateau and mini-batch noise."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.core.analysis.plateau import find_plateau, weight_motion
from lossview.core.run import MetricSeries


def _ramp(seed, n=3000, end=1000, noise=0.05):
    rng = np.random.default_rng(seed)
    s = np.arange(n) * 2
    loss = 1 + 2 * np.maximum(0, 1 - s / (2 * end)) + rng.normal(scale=noise, size=n)
    return MetricSeries(s, loss)


@pytest.mark.parametrize("seed", range(6))
def test_known_plateau_found_within_the_noise_band(seed):
    # linear fall 3 -> 1 until step 2000, then flat at 1 with noise sd 0.05. The band is
    # ~0.027 (documented rule), the slope 0.001/step: detection lies ~27 steps early,
    # plus the running median's scatter; 40 logged points (80 steps) is a 3x margin.
    p = find_plateau(_ramp(seed))
    assert p["step"] == pytest.approx(2000, abs=80)
    assert p["level"] == pytest.approx(1.0, abs=0.01)
    assert p["noise"] == pytest.approx(0.05, rel=0.1)  # MAD estimate of the noise sd
    assert 0 < p["relative_band"] < 0.05


def test_still_improving_loss_has_no_plateau():
    s = np.arange(2000)
    p = find_plateau(MetricSeries(s, 5 - s / 1000 + np.random.default_rng(0).normal(scale=0.01, size=2000)))
    assert p["step"] is None and "still improving" in p["reason"]


def test_noisy_flat_loss_is_flat_from_the_start():
    s = np.arange(500)
    p = find_plateau(MetricSeries(s, 2 + np.random.default_rng(1).normal(scale=0.3, size=500)))
    assert p["step"] == 0 and p["flat_from_start"]


def test_divergent_tail_is_ignored_and_short_series_refused():
    m = _ramp(0)
    m.values[2500:] = np.nan
    assert find_plateau(m)["step"] == pytest.approx(2000, abs=80)
    assert find_plateau(MetricSeries([0, 1, 2], [3, 2, 1]))["step"] is None
    assert "no loss" in find_plateau(None)["reason"]


def test_weight_motion_before_and_after():
    steps = np.array([0, 10, 20, 30, 40])
    w = np.array([[0, 0], [3, 0], [3, 4], [3, 5], [3, 7]], dtype=float)
    from_init = np.linalg.norm(w - w[0], axis=1)
    to_final = np.linalg.norm(w[-1] - w, axis=1)
    step_len = np.r_[0, np.linalg.norm(np.diff(w, axis=0), axis=1)]
    m = weight_motion(steps, from_init, to_final, step_len, plateau_step=15)
    assert m["snapshot_step"] == 20
    assert m["net_before"] == pytest.approx(5.0)
    assert m["net_after"] == pytest.approx(3.0)
    assert m["path_before"] == pytest.approx(7.0)
    assert m["path_after"] == pytest.approx(3.0)
    assert m["after_over_total_displacement"] == pytest.approx(3.0 / np.hypot(3, 7))

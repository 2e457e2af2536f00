from __future__ import annotations

import numpy as np

from msma.smoothing import OneEuroFilter, OneEuroSettings, smooth_series


def test_still_signal_jitter_drops_and_mean_is_kept():
    rng = np.random.default_rng(0)
    times = np.arange(300) / 30.0
    noisy = 0.4 + rng.normal(0, 0.02, (300, 3))
    smoothed = smooth_series(noisy, times, OneEuroSettings(min_cutoff=1.0, beta=3.0))
    jitter = lambda x: np.abs(np.diff(x[30:], 2, axis=0)).mean()  # noqa: E731
    assert jitter(smoothed) < jitter(noisy) / 5
    assert abs(smoothed[30:].mean() - 0.4) < 0.005


def test_step_is_followed_quickly_and_rest_lag_matches_time_constant():
    settings = OneEuroSettings(min_cutoff=1.0, beta=3.0)
    times = np.arange(120) / 30.0
    step = np.where(times >= 1.0, 1.0, 0.0)[:, None]
    out = smooth_series(step, times, settings)[:, 0]
    after = out[times >= 1.0]
    # a fast change raises the cutoff: 90 % of the step within 0.2 s
    assert after[int(0.2 * 30)] > 0.9
    # without the speed term the filter is the plain EMA with tau = 1 / (2 pi fc)
    slow = smooth_series(step, times, OneEuroSettings(min_cutoff=1.0, beta=0.0))[:, 0]
    reached = times[np.argmax(slow >= 1 - np.exp(-1))] - 1.0
    assert abs(reached - settings.rest_lag_s) < 2.5 / 30


def test_reset_on_new_segment():
    times = np.arange(10) / 30.0
    values = np.concatenate([np.zeros(5), np.ones(5)])[:, None]
    segments = np.array([0] * 5 + [1] * 5)
    out = smooth_series(values, times, OneEuroSettings(min_cutoff=0.1, beta=0.0), segments)
    assert out[5, 0] == 1.0  # restarted, not dragged from the previous segment
    flt = OneEuroFilter()
    assert flt(np.array([2.0]), 0.0)[0] == 2.0  # first sample passes through

"""msma.identity_calibration: a same/different verdict only from a current, out-of-sample calibrated threshold."""

from __future__ import annotations

import numpy as np
import pytest

from msma.identity_calibration import (
    calibrate,
    fingerprint,
    identity_verdict,
    load_calibration,
    youden_threshold,
)


def _pairs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = np.r_[np.ones(12, bool), np.zeros(40, bool)]
    dist = np.where(same, rng.normal(1.5, 0.3, same.size), rng.normal(2.6, 0.4, same.size))
    return dist, same


def test_threshold_and_leave_one_out_error_rates() -> None:
    dist, same = _pairs()
    cal = calibrate(dist, same, method="fitting", fingerprint="f", source="synthetic")
    assert dist[same].min() < cal.threshold_mm < dist[~same].max()
    assert cal.threshold_mm == youden_threshold(dist, same)
    # leave-one-out is never better than the in-sample error of the same rule
    in_fnm = (dist[same] > cal.threshold_mm).mean()
    in_fm = (dist[~same] <= cal.threshold_mm).mean()
    assert cal.false_non_match_rate >= in_fnm and cal.false_match_rate >= in_fm
    lo, hi = cal.false_match_ci95
    assert lo <= cal.false_match_rate <= hi and (cal.n_same, cal.n_different) == (12, 40)
    perfect = calibrate(np.r_[np.full(6, 1.0), np.full(6, 3.0)], np.r_[np.ones(6, bool), np.zeros(6, bool)],
                        method="fitting", fingerprint="f", source="s")
    assert perfect.false_match_rate == perfect.false_non_match_rate == 0 and perfect.false_match_ci95[1] > 0.3
    with pytest.raises(ValueError, match="at least"):
        calibrate(dist[:14], same[:14], method="fitting", fingerprint="f", source="s")  # 12 same, 2 different


def test_verdict_only_for_a_current_calibration_of_this_method(tmp_path) -> None:
    dist, same = _pairs()
    cal = calibrate(dist, same, method="fitting", fingerprint="abc", source="synthetic pairs", photo_sha256=["h1"])
    path = cal.save(tmp_path / "cal.json")
    assert load_calibration(path) == cal
    assert load_calibration(tmp_path / "missing.json") is None
    far = cal.threshold_mm + 1
    assert "likely different people" in identity_verdict(far, "fitting", "abc", calibration=cal)
    text = identity_verdict(cal.threshold_mm - 0.1, "fitting", "abc", ("h1", "other"), calibration=cal)
    assert "likely the same person" in text and "12 pairs" in text and "40 pairs" in text and "CI" in text
    assert "No same / different verdict" in identity_verdict(far, "network", "abc", calibration=cal)
    assert "another version" in identity_verdict(far, "fitting", "changed", calibration=cal)
    assert "in-sample" in identity_verdict(far, "fitting", "abc", ("h1", "h1"), calibration=cal)


def test_fingerprint_follows_the_code_and_weights(tmp_path) -> None:
    assert fingerprint("fitting") == fingerprint("fitting") != fingerprint("network+refine")
    w1, w2 = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    w1.write_bytes(b"one")
    w2.write_bytes(b"two")
    assert fingerprint("network", w1) != fingerprint("network", w2)
    assert fingerprint("fitting", w1) == fingerprint("fitting")  # fitting does not use the weights

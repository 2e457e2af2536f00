"""msma.landmarks.metrics.nme: the one landmark error of the evaluation, the pre-labellers and the quality report."""

from __future__ import annotations

import numpy as np

from msma.landmarks.metrics import IBUG68_REGIONS, nme, region_nme


def _face() -> np.ndarray:
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    pts[36], pts[45] = [20.0, 40.0], [80.0, 40.0]  # outer eye corners 60 px apart
    return pts


def test_normalised_by_the_reference_eye_corners() -> None:
    ref = _face()
    assert nme(ref + [3.0, 4.0], ref) == 5.0 / 60.0
    other = ref * 2.0  # its eye corners are 120 px apart: the second argument is the one that counts
    assert np.isclose(nme(other, ref), np.linalg.norm(other - ref, axis=1).mean() / 60.0)
    assert np.isclose(nme(ref, other), np.linalg.norm(other - ref, axis=1).mean() / 120.0)


def test_mask_and_missing_points_are_left_out() -> None:
    ref = _face()
    pts = ref + [3.0, 4.0]
    pts[:10] += 50.0  # far off, but masked out
    mask = np.ones(68, bool)
    mask[:10] = False
    assert np.isclose(nme(pts, ref, mask), 5.0 / 60.0)
    pts[:10] = np.nan
    assert np.isclose(nme(pts, ref), 5.0 / 60.0)
    assert np.isnan(nme(pts, ref, np.zeros(68, bool)))


def test_box_diagonal_when_the_eye_corners_are_missing() -> None:
    ref = _face()
    ref[36] = np.nan
    finite = ref[np.isfinite(ref).all(1)]
    diagonal = np.linalg.norm(finite.max(0) - finite.min(0))
    assert np.isclose(nme(ref + [3.0, 4.0], ref), 5.0 / diagonal)


def test_region_nme_splits_the_face_with_one_normaliser() -> None:
    """Each iBUG region gets the error of its own points over the whole face's eye-corner distance; the regions
    cover the 68 points once, so their point-weighted mean is the whole-face NME."""
    ref = _face()
    pts = ref + [3.0, 4.0]
    pts[48:68] += [6.0, 8.0]  # only the mouth is further off: 15 px
    regions = region_nme(pts, ref)
    assert set(regions) == {"jaw", "brows", "nose", "eyes", "mouth"}
    assert np.isclose(regions["mouth"], 15.0 / 60.0) and np.isclose(regions["jaw"], 5.0 / 60.0)
    assert sorted(i for r in IBUG68_REGIONS.values() for i in r) == list(range(68))
    weighted = sum(regions[k] * len(r) for k, r in IBUG68_REGIONS.items()) / 68
    assert np.isclose(weighted, nme(pts, ref))

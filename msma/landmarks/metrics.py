"""The one landmark error measure: 68-point NME (normalised mean error)."""

from __future__ import annotations

import numpy as np

OUTER_EYE_CORNERS = (36, 45)  # iBUG indices: the normaliser is their distance in the reference
# the iBUG 68-point regions, for per-region NME (same normaliser as the whole face)
IBUG68_REGIONS: dict[str, range] = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36),
                                    "eyes": range(36, 48), "mouth": range(48, 68)}


def nme(points: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean point distance between ``points`` and ``reference`` (68, 2), divided by the reference's outer-eye-corner
    distance (36-45; the reference's bounding-box diagonal when those are missing or coincide).

    Points that are not finite in either set, or False in ``mask`` (68,), are left out; NaN when none is left."""
    a, b = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    if mask is not None:
        ok &= np.asarray(mask, bool)
    if not ok.any():
        return float("nan")
    corners = b[list(OUTER_EYE_CORNERS)]
    norm = float(np.linalg.norm(corners[1] - corners[0])) if np.isfinite(corners).all() else 0.0
    if norm < 1e-6:
        p = b[np.isfinite(b).all(1)]
        norm = float(np.linalg.norm(p.max(0) - p.min(0)))
    return float(np.linalg.norm(a[ok] - b[ok], axis=1).mean() / max(norm, 1e-6))


def region_nme(points: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """`nme` of each iBUG region (`IBUG68_REGIONS`) with the whole face's normaliser."""
    out = {}
    for name, index in IBUG68_REGIONS.items():
        mask = np.zeros(68, bool)
        mask[list(index)] = True
        out[name] = nme(points, reference, mask)
    return out

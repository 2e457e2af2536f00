"""Grid rows for the identity prior, the depth prior and the data weights, shared by the dev benchmarks
benchmarks/expression_settings.py, benchmarks/fit_settings.py and benchmarks/nme_settings_dev.py (a row name means
the same `LandmarkFitSettings` change in each of their result files)."""

from __future__ import annotations

PRIOR_GRID: dict[str, dict] = {
    **{f"identity prior {w:g}": {"identity_prior": float(w)} for w in (3, 10, 20, 100)},
    **{f"depth {d:g}": {"depth_prior": float(d)} for d in (100, 300)},
    **{f"identity prior 10, depth {d:g}": {"identity_prior": 10.0, "depth_prior": float(d)} for d in (100, 300)},
}

# weight of mediapipe's mesh points (their measured noise scaled) and of the 68 points beside them
DATA_WEIGHT_GRID: dict[str, dict] = {
    "dense sigma x0.5": {"dense_sigma_scale": 0.5},
    "dense sigma x0.75": {"dense_sigma_scale": 0.75},
    "68 rows at weight 1": {"dense_landmark68_weight": 1.0},
    "no 68 rows with dense": {"dense_landmark68_weight": 1e-3},
}

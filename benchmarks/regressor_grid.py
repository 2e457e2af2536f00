"""Grid rows for the learnt expression regressor (`msma.expression_regressor`), shared by the three dev benchmarks
benchmarks/expression_settings.py, benchmarks/fit_settings.py and benchmarks/nme_settings_dev.py, so that a row
name means the same `LandmarkFitSettings` change in each of their result files."""

from __future__ import annotations

from msma.expression_regressor import clearest_blendshapes

# jawOpen, mouthSmile_L / _R, eyeBlink_L / _R with the shipped regressor (held-out correlation >= 0.5)
_CLEAREST = clearest_blendshapes(0.5)

REGRESSOR_GRID: dict[str, dict] = {
    "expression regressor, L2 64": {"expression_regressor_prior": 64.0},
    "expression regressor, L2 16": {"expression_regressor_prior": 16.0},
    "expression regressor, L2 256": {"expression_regressor_prior": 256.0},
    "expression regressor, L2 64, L1 32": {"expression_regressor_prior": 64.0, "expression_regressor_l1": 32.0},
    "expression regressor, L2 64, dead zone 0.2": {"expression_regressor_prior": 64.0,
                                                   "expression_regressor_dead_zone": 0.2},
    "expression regressor, both stages, L2 64": {"expression_regressor_prior": 64.0,
                                                 "expression_regressor_identity_stage": True},
    "expression regressor alone (L2 1e6)": {"expression_regressor_prior": 1e6},
    "expression regressor alone (L2 1e6), dead zone 0.2": {"expression_regressor_prior": 1e6,
                                                           "expression_regressor_dead_zone": 0.2},
    "adaptive L1 from the expression regressor (release 0.3)": {"expression_regressor_l1_release": 0.3},
    "adaptive L1 from the expression regressor (release 0.5)": {"expression_regressor_l1_release": 0.5},
    "adaptive L1 from the expression regressor (release 1)": {"expression_regressor_l1_release": 1.0},
    "adaptive L1 (release 0.5), L1 256": {"expression_regressor_l1_release": 0.5, "expression_l1": 256.0},
    "expression regressor, L2 64, L1 128, dead zone 0.2": {"expression_regressor_prior": 64.0,
                                                           "expression_regressor_l1": 128.0,
                                                           "expression_regressor_dead_zone": 0.2},
    "expression regressor, L2 256, L1 128, dead zone 0.3": {"expression_regressor_prior": 256.0,
                                                            "expression_regressor_l1": 128.0,
                                                            "expression_regressor_dead_zone": 0.3},
    "expression regressor, L2 256, dead zone 0.3": {"expression_regressor_prior": 256.0,
                                                    "expression_regressor_dead_zone": 0.3},
}

# Four of those rows again with another regressor file: trained on procedural skin with eyebrows and lip colour
# (msma.synth facial_features; scripts/derive_expression_regressor.py --kinds procedural_features,wild
# --out runs/exp/expression_regressor_features.npz) and also on shapes outside ICT's span (--kinds
# procedural_features_shapes,wild --out runs/exp/expression_regressor_shapes.npz).
_VARIANT_ROWS = ("expression regressor alone (L2 1e6), dead zone 0.2",
                 "expression regressor, L2 64, L1 128, dead zone 0.2",
                 "expression regressor, L2 256, dead zone 0.3",
                 "adaptive L1 from the expression regressor (release 0.3)")
REGRESSOR_GRID.update({
    f"{name} [{tag}]": {**REGRESSOR_GRID[name],
                        "expression_regressor_path": f"runs/exp/expression_regressor_{stem}.npz"}
    for tag, stem in (("brows and lips", "features"), ("brows, lips and out-of-model shapes", "shapes"))
    for name in _VARIANT_ROWS
})

# The regressor on the blendshapes it reads best only, and only where it is sure (dead zone): their prior centre is
# its weight and their L1 is released there (adaptive lasso, release = dead zone); every other blendshape keeps the
# default priors (centre 0, L2 64, L1 128)
REGRESSOR_GRID.update({
    f"expression regressor on its clearest blendshapes, dead zone {dz:g}": {
        "expression_regressor_prior": 64.0, "expression_regressor_l1": 128.0, "expression_regressor_dead_zone": dz,
        "expression_regressor_l1_release": dz, "expression_regressor_blendshapes": _CLEAREST}
    for dz in (0.3, 0.4, 0.5)
})

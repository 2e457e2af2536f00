"""Grid rows for the relaxed lasso with a support threshold, shared by the three dev benchmarks
benchmarks/expression_settings.py, benchmarks/fit_settings.py and benchmarks/nme_settings_dev.py (a row name means
the same `LandmarkFitSettings` change in each of their result files).

The default L1 both selects the blendshapes a face moves and shrinks their weights. The relaxed lasso re-solves the
chosen blendshapes with a weaker L2; with the support threshold at 0.02 it also inflated the small weights that
detector noise leaves on neutral faces. A higher threshold zeroes those (weights at most the threshold are held at
0) and debiases only what is clearly there."""

from __future__ import annotations

SUPPORT_GRID: dict[str, dict] = {
    f"relaxed lasso: L1 128, then L2 {l2:g} on the weights above {threshold:g}": {
        "expression_debias_prior": float(l2), "expression_support_threshold": threshold}
    for l2, threshold in ((16, 0.05), (16, 0.1), (16, 0.15), (32, 0.1))
}

# a weaker L1 (which lets real expressions through, and noise with them) whose small weights the threshold removes
SUPPORT_GRID.update({
    f"relaxed lasso: L1 {l1:g}, then L2 16 on the weights above {threshold:g}": {
        "expression_l1": float(l1), "expression_debias_prior": 16.0, "expression_support_threshold": threshold}
    for l1, threshold in ((32, 0.15), (64, 0.15), (32, 0.25))
})

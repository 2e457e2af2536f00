"""The fitter's expression priors against 68-point NME on DEV photos (faces_in_the_wild, old_photos).

    .venv/bin/python benchmarks/nme_settings_dev.py   # -> benchmarks/results/nme_settings_dev.json/.md

A stronger expression prior keeps neutral faces neutral (benchmarks/expression_settings.py) but may pull the fitted
68 points off a smile the detector saw. This measures that on photos that are not the NME evaluation set: the labels
are dlib's 68-point predictor on dlib's HOG boxes (as `scripts/derive_mediapipe_ibug68.py` derives its table on the
same folders), the detector is mediapipe (independent of those labels), and every row is `LandmarkFitSettings` with
one change, method "fitting" without the photometric step (the 68 points do not depend on it). The held-out
../shared/data/dlib_faces stays for `python -m msma evaluate --dlib-dir`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

from derive_mediapipe_ibug68 import dev_faces  # noqa: E402
from prior_grid import DATA_WEIGHT_GRID, PRIOR_GRID  # noqa: E402
from regressor_grid import REGRESSOR_GRID  # noqa: E402
from support_grid import SUPPORT_GRID  # noqa: E402

from msma.evaluate import fitting_settings_methods, labelled_nme  # noqa: E402
from msma.face_model import FaceModel  # noqa: E402

GRID: dict[str, dict] = {
    "defaults": {},
    **PRIOR_GRID,
    "L1 expression 32": {"expression_l1": 32.0},
    "L1 expression 64": {"expression_l1": 64.0},
    "L1 expression 128": {"expression_l1": 128.0},
    "L1 expression 192": {"expression_l1": 192.0},
    "L1 expression 256": {"expression_l1": 256.0},
    "L1 expression 384": {"expression_l1": 384.0},
    "L1 expression 32, per-expression table": {"expression_l1": 32.0, "expression_l1_scale": "table"},
    "L1 expression 64, per-expression table": {"expression_l1": 64.0, "expression_l1_scale": "table"},
    "L1 expression 128, per-expression table": {"expression_l1": 128.0, "expression_l1_scale": "table"},
    "L2 expression 16, L1 64": {"expression_prior": 16.0, "expression_l1": 64.0},
    "L2 expression 16, L1 32": {"expression_prior": 16.0, "expression_l1": 32.0},
    "relaxed lasso: L1 128, then L2 16 on the support": {"expression_debias_prior": 16.0},
    "relaxed lasso: L1 256, then L2 16 on the support": {"expression_l1": 256.0, "expression_debias_prior": 16.0},
    "relaxed lasso: L1 256, then L2 32 on the support": {"expression_l1": 256.0, "expression_debias_prior": 32.0},
    "relaxed lasso: L1 384, then L2 16 on the support": {"expression_l1": 384.0, "expression_debias_prior": 16.0},
    "relaxed lasso: L1 256, then L2 16, L1 32 on the support": {"expression_l1": 256.0,
                                                               "expression_debias_prior": 16.0,
                                                               "expression_debias_l1": 32.0},
    **DATA_WEIGHT_GRID,
    "dense sigma x1.5": {"dense_sigma_scale": 1.5},
    "dense sigma x2": {"dense_sigma_scale": 2.0},
    "dense sigma x3": {"dense_sigma_scale": 3.0},
    "identity from low-motion points (4 mm)": {"identity_stage_motion_mm": 4.0},
    "identity from low-motion points (8 mm)": {"identity_stage_motion_mm": 8.0},
    "identity from low-motion points (16 mm)": {"identity_stage_motion_mm": 16.0},
    "identity from low-motion points (8 mm), L1 64": {"identity_stage_motion_mm": 8.0, "expression_l1": 64.0},
    "identity from low-motion points (4 mm), L1 64": {"identity_stage_motion_mm": 4.0, "expression_l1": 64.0},
    "identity from low-motion points (8 mm), L2 32, L1 64": {"identity_stage_motion_mm": 8.0,
                                                             "expression_prior": 32.0, "expression_l1": 64.0},
    "identity from low-motion mesh points (8 mm)": {"identity_stage_motion_mm": 8.0,
                                                    "identity_stage_motion_points": "mesh"},
    "identity from low-motion points (8 mm), identity stage L2 8, L1 16": {
        "identity_stage_motion_mm": 8.0, "identity_stage_expression_prior": 8.0, "identity_stage_expression_l1": 16.0},
    "identity from low-motion points (8 mm), identity stage L2 4, L1 8": {
        "identity_stage_motion_mm": 8.0, "identity_stage_expression_prior": 4.0, "identity_stage_expression_l1": 8.0},
    **REGRESSOR_GRID,
    **SUPPORT_GRID,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", type=Path,
                        default=[ROOT.parent / "shared" / "data" / "faces_in_the_wild",
                                 ROOT.parent / "shared" / "data" / "old_photos"])
    parser.add_argument("--detector", default="mediapipe")
    parser.add_argument("--only", default=None, help="grid names separated by ;")
    parser.add_argument("--name", default="nme_settings_dev")
    parser.add_argument("--flip-detector", action="store_true", help="the detector's flip test-time augmentation")
    args = parser.parse_args()
    model = FaceModel.ict()
    methods = fitting_settings_methods(GRID, args.only, model)
    labels = dev_faces(args.folders)
    result = labelled_nme(labels, methods, detector=args.detector, model=model,
                          flip_detector=args.flip_detector)
    result["folders"] = [str(f.name) for f in args.folders]
    result["flip_detector"] = args.flip_detector
    result["grid"] = {k: GRID[k] for k in methods}
    out = ROOT / "benchmarks" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    detector = result["nme"]["detector"]["mean"]
    lines = [f"# 68-point NME on dev photos ({', '.join(result['folders'])}; dlib predictor labels, "
             f"{args.detector} detector{', flip test-time augmentation' if args.flip_detector else ''}) — "
             "benchmarks/nme_settings_dev.py", "",
             f"{result['n_matched']} of {result['n_labelled']} labelled faces matched. Dev data only: the reported "
             "NME is on dlib_faces.", "",
             "| row | NME mean | NME median | vs the detector |", "|---|---|---|---|"]
    for name, r in result["nme"].items():
        lines.append(f"| {name} | {r['mean']:.4f} | {r['median']:.4f} | {r['mean'] / detector:.3f} |")
    regions = result["region_nme"]
    names = list(regions["detector"])
    lines += ["", "Per region (mean NME of the region's points, the whole face's normaliser; in brackets vs the "
              "detector's points of that region):", "",
              "| row | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, r in regions.items():
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.4f} ({r[k] / regions['detector'][k]:.2f})"
                                                   for k in names) + " |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

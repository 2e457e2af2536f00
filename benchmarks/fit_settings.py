"""Choose the landmark fitter's priors on DEV data only: the SFM dev split (seed 1) of benchmarks/sfm_3d.py.

    .venv/bin/python benchmarks/fit_settings.py --subjects 8     # -> benchmarks/results/fit_settings_dev.json/.md

Every candidate `LandmarkFitSettings` (the grid below, each a change from the defaults) fits the same dev renders
with the same detections (method "fitting", no photometric step); the NoW-style error of the neutral shape and the
mean expression weight (the dev faces are neutral, so any weight is an error) are reported. The defaults in
`msma.fit.LandmarkFitSettings` were set from this table; the test split (seed 2) is never used here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from prior_grid import DATA_WEIGHT_GRID, PRIOR_GRID  # noqa: E402
from regressor_grid import REGRESSOR_GRID  # noqa: E402
from sfm_3d import load_textures, score_ict, subject_views  # noqa: E402
from sfm_faces import SurreyModel  # noqa: E402
from support_grid import SUPPORT_GRID  # noqa: E402

from msma.face_model import MODEL_UNITS_TO_MM  # noqa: E402
from msma.fit import LandmarkFitSettings, PhotometricSettings  # noqa: E402

GRID: dict[str, dict] = {
    "defaults": {},
    "no detector bias correction": {"detector_bias": False},
    "detector bias: all pose terms (pitch too)": {"detector_bias_terms": "all"},
    "detector bias: constant only": {"detector_bias_terms": "constant"},
    "68 points only": {"use_dense": False},
    "identity prior 0.3": {"identity_prior": 0.3},
    **PRIOR_GRID,
    **DATA_WEIGHT_GRID,
    "identity prior 1 (previous default), L1 4": {"identity_prior": 1.0, "expression_l1": 4.0},
    # --method network+refine: the prior around the network's identity (identity_prior is a fit from the mean face)
    "identity prior around the estimate 10": {"identity_prior_around_estimate": 10.0},
    "identity prior around the estimate 100": {"identity_prior_around_estimate": 100.0},
    "dense sigma x2": {"dense_sigma_scale": 2.0},
    "identity modes 5": {"identity_modes": 5},
    "identity modes 10": {"identity_modes": 10},
    "identity modes 20": {"identity_modes": 20},
    "identity modes 10, prior 3": {"identity_modes": 10, "identity_prior": 3.0},
    "identity modes 5, dense only": {"identity_modes": 5, "dense_landmark68_weight": 1e-3},
    "L1 16": {"expression_l1": 16.0},
    "identity prior 100, L1 16": {"identity_prior": 100.0, "expression_l1": 16.0},
    "identity prior 1, depth 100": {"identity_prior": 1.0, "depth_prior": 100.0},
    "identity prior 3, depth 100": {"identity_prior": 3.0, "depth_prior": 100.0},
    "identity prior 3, depth 300": {"identity_prior": 3.0, "depth_prior": 300.0},
    "identity prior 3, depth 1000": {"identity_prior": 3.0, "depth_prior": 1000.0},
    "identity prior 30, depth 300": {"identity_prior": 30.0, "depth_prior": 300.0},
    # photometric refinement of shape after the landmark fit (msma.fit.PhotometricSettings), face + skin mask
    "photometric shape refinement": {"photometric": {"refine_shape": True}},
    "photometric shape refinement, whole head, no skin mask": {
        "photometric": {"refine_shape": True, "face_region_only": False, "skin_colour_tolerance": 10.0}},
    "identity prior 3, depth 300, jaw sigma x5": {"identity_prior": 3.0, "depth_prior": 300.0, "jaw_sigma_scale": 5.0},
    "68 rows at weight 2": {"dense_landmark68_weight": 2.0},
    "68 rows at weight 1, identity prior 10": {"dense_landmark68_weight": 1.0, "identity_prior": 10.0},
    "L1 expression 64": {"expression_l1": 64.0},
    "one stage": {"identity_stage_expression_prior": None},
    "L1 expression 128": {"expression_l1": 128.0},
    "L1 expression 128, L2 64": {"expression_l1": 128.0, "expression_prior": 64.0},
    "L1 expression 256, L2 64": {"expression_l1": 256.0, "expression_prior": 64.0},
    "68 rows at weight 1, L1 expression 128": {"dense_landmark68_weight": 1.0, "expression_l1": 128.0},
    "no L1 expression": {"expression_l1": 0.0},
    "L1 expression 16": {"expression_l1": 16.0},
    "mesh depth sigma 2": {"mesh_depth_sigma_px": 2.0},
    "mesh depth sigma 4": {"mesh_depth_sigma_px": 4.0},
    "mesh depth sigma 8": {"mesh_depth_sigma_px": 8.0},
    "mesh depth sigma 4, scale per image": {"mesh_depth_sigma_px": 4.0, "mesh_depth_scale": None},
    "mesh depth sigma 4, identity prior 10": {"mesh_depth_sigma_px": 4.0, "identity_prior": 10.0},
    "asymmetric identity prior x3": {"asymmetric_identity_prior_scale": 3.0},
    "asymmetric identity prior x10": {"asymmetric_identity_prior_scale": 10.0},
    "asymmetric identity prior x100": {"asymmetric_identity_prior_scale": 100.0},
    "asymmetric identity prior x10, identity prior 10": {"asymmetric_identity_prior_scale": 10.0,
                                                          "identity_prior": 10.0},
    "weighted pose": {"pose_weighted": True},
    "weighted pose, network pose prior 3 deg": {"pose_weighted": True, "pose_prior_deg": 3.0},
    "weighted pose, network pose prior 6 deg": {"pose_weighted": True, "pose_prior_deg": 6.0},
    "weighted pose, network pose prior 12 deg": {"pose_weighted": True, "pose_prior_deg": 12.0},
    "dense sigma x1.5": {"dense_sigma_scale": 1.5},
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


def dev_cases(n_subjects: int, distance_mm: float = 600.0) -> tuple[list[dict], SurreyModel]:
    sfm = SurreyModel()
    textures = load_textures(sfm)
    cases = []
    for subject in tqdm(range(n_subjects), desc="dev renders"):
        gt, views = subject_views(sfm, textures, "dev", subject, distance_mm)
        cases += [{"subject": subject, "view": view, "image": image, "detection": detection, "gt": gt,
                   "yaw": yaw, "pitch": float(view.split("pitch")[1])}
                  for view, image, detection, yaw in views if detection is not None]
    return cases, sfm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--only", default=None, help="grid names separated by ;")
    parser.add_argument("--name", default="fit_settings_dev", help="result file stem")
    parser.add_argument("--distance-mm", type=float, default=600.0, help="render camera distance")
    parser.add_argument("--method", default="fitting", choices=("fitting", "network+refine"),
                        help="network+refine: the network's estimate is the fit's prior (pose_prior_deg applies)")
    args = parser.parse_args()
    from msma.api import Reconstructor

    cases, sfm = dev_cases(args.subjects, args.distance_mm)
    grid = {k: v for k, v in GRID.items() if args.only is None or k in args.only.split(";")}
    rec = Reconstructor(method=args.method, photometric=False)
    model = rec.model
    plain = rec
    mean_mm = model.mean.cpu().numpy().astype(np.float64) * MODEL_UNITS_TO_MM
    rows = {"mean face": {"mean_mm": float(np.mean([score_ict(model, mean_mm, c["gt"], sfm)["mean_mm"]
                                                    for c in cases]))}}
    for name, change in grid.items():
        change = dict(change)
        photometric = change.pop("photometric", None)
        rec = plain if photometric is None else Reconstructor(
            method=args.method, face_model=model, photometric_settings=PhotometricSettings(**photometric))
        rec.landmark_settings = dataclasses.replace(LandmarkFitSettings(), **change)
        errors, weights, views, pitch, yaw_error = [], [], {}, {}, []
        for c in tqdm(cases, desc=name):
            face = rec.reconstruct_face(c["image"], c["detection"], texture=False)
            errors.append(score_ict(model, face.neutral_vertices * MODEL_UNITS_TO_MM, c["gt"],
                                    sfm)["mean_mm"])
            weights.append(max(face.blendshapes.values()))
            views.setdefault(c["view"], []).append(errors[-1])
            # pose: the estimated pitch per rendered pitch (ICT's and SFM's head frames differ by a constant tilt,
            # so what matters is the spread between the pitch views) and the error of |yaw|
            pitch.setdefault(c["pitch"], []).append(face.pose.pitch)
            yaw_error.append(abs(abs(face.pose.yaw) - abs(c["yaw"])))
        rows[name] = {"change": GRID[name], "mean_mm": float(np.mean(errors)),
                      "max_expression_weight_mean": float(np.mean(weights)),
                      "per_view": {v: float(np.mean(e)) for v, e in views.items()},
                      "estimated_pitch_by_rendered_pitch": {f"{k:g}": float(np.mean(v)) for k, v in pitch.items()},
                      "abs_yaw_error_deg": float(np.mean(yaw_error))}
        print(name, rows[name], flush=True)
    out = ROOT / "benchmarks" / "results"
    (out / f"{args.name}.json").write_text(json.dumps({"n_cases": len(cases), "rows": rows}, indent=1))
    lines = ["# Landmark-fit settings on the SFM dev split (seed 1) — produced by benchmarks/fit_settings.py", "",
             f"{len(cases)} renders, method {args.method}. Dev data only; the reported benchmark uses the test split.",
             "", "Estimated pitch at rendered pitch -15 / 0 / +15 deg (mean; a constant is the two head frames' tilt, "
             "the spread is what a pose error changes) and the error of |yaw|.", "",
             "| setting | NoW mean mm | vs mean face | mean of the largest expression weight (neutral faces) | "
             "pitch at -15 / 0 / +15 | spread (true 30) | abs yaw error deg |",
             "|---|---|---|---|---|---|---|"]
    base = rows["mean face"]["mean_mm"]
    for name, r in rows.items():
        p = r.get("estimated_pitch_by_rendered_pitch")
        pose = (f"{p['-15']:.1f} / {p['0']:.1f} / {p['15']:.1f} | {p['15'] - p['-15']:.1f} | "
                f"{r['abs_yaw_error_deg']:.1f}") if p else " |  | "
        lines.append(f"| {name} | {r['mean_mm']:.3f} | {r['mean_mm'] / base:.3f} | "
                     f"{r.get('max_expression_weight_mean', 0):.3f} | {pose} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

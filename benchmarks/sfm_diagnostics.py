"""Where single-photo shape error comes from, on the SFM dev split: fits from ideal inputs instead of detections.

    .venv/bin/python benchmarks/sfm_diagnostics.py --subjects 4   # -> benchmarks/results/sfm_diagnostics_dev.json/.md

Rows (each the NoW-style error of benchmarks/sfm_3d.py, dev split only):
- mean face: the untouched ICT mean;
- 2D, detected: the landmark fitter (`fit_landmarks`, default settings) on the detector's 68 points;
- 2D, exact: the same fitter on the exact projections of the ground-truth SFM landmark vertices (inner 49 points;
  the jaw from the detector is left out), i.e. a perfect detector with SFM's landmark definitions;
- 3D landmarks: ICT identity fitted (regularised least squares) to the ground-truth 3D positions of those landmarks
  after a similarity alignment — what the same points give when depth is observed;
- 3D dense: ICT identity fitted to the whole ground-truth surface (nearest points, ICP) — how close ICT can get to
  an SFM face at all.
Views: yaw 0, 20, 40 degrees. The gap between "2D, exact" and "3D landmarks" is what one photo cannot observe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sfm_3d import load_textures, score_ict, subject_shape  # noqa: E402
from sfm_faces import SurreyModel, render_face  # noqa: E402

from msma.align import align_face, transform_points  # noqa: E402
from msma.benchmark3d import kabsch  # noqa: E402
from msma.face_model import MODEL_UNITS_TO_MM  # noqa: E402
from msma.fit import fit_landmarks  # noqa: E402

VIEWS = ((0, 0), (20, 0), (40, 0))
PRIOR_3D = 10.0  # weight of ||identity||^2 against squared mm residuals in the 3D fits


def fit_identity_3d(mean: np.ndarray, basis: np.ndarray, index: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Identity (n,) minimising ||mean[index] + basis[:, index] c - target||^2 + PRIOR_3D ||c||^2 (mm)."""
    a = basis[:, index].reshape(len(basis), -1).T
    b = (target - mean[index]).reshape(-1)
    return np.linalg.solve(a.T @ a + PRIOR_3D * np.eye(len(basis)), a.T @ b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=4)
    args = parser.parse_args()
    from msma.api import Reconstructor
    from msma.landmarks import detect_faces

    sfm = SurreyModel()
    textures = load_textures(sfm)
    rec = Reconstructor(method="fitting", photometric=False)
    model = rec.model
    mean = model.mean.cpu().numpy().astype(np.float64) * MODEL_UNITS_TO_MM
    basis = model.identity_basis.cpu().numpy().reshape(model.n_identity, -1, 3).astype(np.float64) * MODEL_UNITS_TO_MM
    inner = model.landmarks68.cpu().numpy()[sfm.inner_ibug]
    face = model.face_vertices.cpu().numpy()
    valid = np.zeros(68, bool)
    valid[sfm.inner_ibug] = True
    rows: dict[str, list[float]] = {k: [] for k in ("mean face", "2D, detected", "2D, exact", "3D landmarks",
                                                    "3D dense")}
    for subject in tqdm(range(args.subjects), desc="dev subjects"):
        truth, _, gt = subject_shape(sfm, "dev", subject)
        # 3D fits do not depend on the view
        vertices = mean.copy()
        for _ in range(3):
            r, t, s = kabsch(vertices[inner], gt["landmarks"], scale=True)
            c = fit_identity_3d(mean, basis, inner, (gt["landmarks"] - t) @ r / s)
            vertices = mean + np.einsum("n,nvc->vc", c, basis)
        lm3d = score_ict(model, vertices, gt, sfm)["mean_mm"]
        vertices = mean.copy()
        for _ in range(6):
            r, t, s = kabsch(vertices[inner], gt["landmarks"], scale=True)
            points = (gt["points"] - t) @ r / s
            distance, nearest = cKDTree(points).query(vertices[face])
            keep = distance < 10.0
            c = fit_identity_3d(mean, basis, face[keep], points[nearest[keep]])
            vertices = mean + np.einsum("n,nvc->vc", c, basis)
        dense3d = score_ict(model, vertices, gt, sfm)["mean_mm"]
        for yaw, pitch in VIEWS:
            render = render_face(sfm, truth, textures[subject % len(textures)], yaw, pitch)
            found = detect_faces(render.image)
            if not found:
                continue
            aligned = align_face(render.image, found[0].five_points(), template=rec.template)
            detected = transform_points(found[0].landmarks68, aligned.matrix)
            exact = detected.copy()
            exact[sfm.inner_ibug] = transform_points(render.screen[sfm.inner_vertices], aligned.matrix)
            for name, target, mask in (("2D, detected", detected, None), ("2D, exact", exact, valid[None])):
                coeffs = fit_landmarks(model, target[None], contour=rec.contour, valid=mask)
                with torch.no_grad():
                    neutral = model(coeffs.identity, torch.zeros_like(coeffs.expression))[0].numpy()
                rows[name].append(score_ict(model, neutral * MODEL_UNITS_TO_MM, gt, sfm)["mean_mm"])
            rows["mean face"].append(score_ict(model, mean, gt, sfm)["mean_mm"])
            rows["3D landmarks"].append(lm3d)
            rows["3D dense"].append(dense3d)
    summary = {k: float(np.mean(v)) for k, v in rows.items()}
    out = ROOT / "benchmarks" / "results"
    (out / "sfm_diagnostics_dev.json").write_text(json.dumps({"subjects": args.subjects, "views": VIEWS,
                                                              "summary": summary, "rows": rows}, indent=1))
    lines = ["# Single-photo shape error from ideal inputs (SFM dev split) — benchmarks/sfm_diagnostics.py", "",
             f"{args.subjects} subjects x {len(VIEWS)} views (yaw 0/20/40). NoW-style mean error, mm.", "",
             "| input | mean mm | vs mean face |", "|---|---|---|"]
    for k, v in summary.items():
        lines.append(f"| {k} | {v:.3f} | {v / summary['mean face']:.3f} |")
    (out / "sfm_diagnostics_dev.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

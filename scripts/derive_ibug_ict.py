"""Derive which ICT vertex carries each iBUG-68 landmark as 68-point detectors place it: msma/data/ibug68_to_ict.npz.

    .venv/bin/python scripts/derive_ibug_ict.py        # 400 renders, ~4 min on 2 CPU cores

Why: ICT's own 68-point markup follows its authors' definitions, not the iBUG annotation convention that dlib,
face-alignment and human labellers follow (brows on the upper edge, jaw on the visible outline, lip contours). The
fitted face's reprojected 68 points were systematically off the detector's definitions, most on the brows and the
jaw, so the fit could never correct a detector. Here the definition is measured instead of assumed.

Data (no evaluation data is used): the synthetic ICT faces of scripts/derive_mediapipe_ict.py (msma.synth, seed 77,
skin textures from the five portrait crops of ../shared/data/old_photos, clean renders), whose exact geometry is
known. dlib's 68-point predictor (trained on iBUG 300-W human labels) runs on every render.

For each landmark k, the face-region vertex v whose projection is nearest to dlib's point over all renders (robust
mean squared distance, each term capped at (8 px)^2) is chosen. Jaw points 0-16 use only renders where they are not on
the far side of a head turned beyond 12 degrees (there they follow the silhouette, `msma.fit.ContourTracker`).
The renders' skin textures come from the fitter (`texture_bank_from_photos`), so after fitter changes a rerun draws
slightly different renders (the committed table was derived before the two-stage expression prior; a rerun now
gives a different choice for some points).
Output: ``vertices`` (68,) int64, ``rms_px`` (68,) the RMS distance of the chosen vertex (224 crop px),
``markup_rms_px`` (68,) the same for ICT's own markup vertex, ``n_renders``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from derive_mediapipe_ict import synthetic_renders  # noqa: E402

from msma.face_model import FaceModel  # noqa: E402
from msma.fit import CONTOUR_YAW_THRESHOLD  # noqa: E402
from msma.landmarks import detect_faces  # noqa: E402

CAP_PX = 8.0
PAD = 64
OUT = ROOT / "msma" / "data" / "ibug68_to_ict.npz"


def collect(model: FaceModel, n: int, batch: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(S, 68, 2) dlib points, (S, V, 2) projected face vertices and (S,) yaw (radians) of S successful renders."""
    face = model.face_vertices.cpu().numpy()
    points, projected, yaws = [], [], []
    for image, screen, yaw in synthetic_renders(model, n, batch):
        # dlib's HOG detector wants a margin around the face: pad the tight crop
        padded = cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)
        faces = [f for f in detect_faces(padded, detector="dlib") if f.detector == "dlib"]
        if not faces:
            continue
        points.append(faces[0].landmarks68 - PAD)
        projected.append(screen[face])
        yaws.append(yaw)
    return np.stack(points), np.stack(projected), np.array(yaws)


def derive(model: FaceModel, points: np.ndarray, projected: np.ndarray, yaws: np.ndarray) -> dict[str, np.ndarray]:
    face = model.face_vertices.cpu().numpy()
    markup = model.markup_landmarks68.cpu().numpy()
    vertices = np.zeros(68, np.int64)
    rms, markup_rms = np.zeros(68), np.zeros(68)
    frontal = np.abs(yaws) < CONTOUR_YAW_THRESHOLD
    position = {int(v): i for i, v in enumerate(face)}
    for k in range(68):
        use = np.ones(len(points), bool)
        if k < 8:  # jaw points 0-7 are the far side when yaw < 0 (as in ContourTracker.correspondences)
            use = frontal | (yaws > 0)
        elif 8 < k < 17:  # 9-16 when yaw > 0
            use = frontal | (yaws < 0)
        d2 = np.minimum(((points[use, k][:, None, :] - projected[use]) ** 2).sum(-1), CAP_PX**2)  # (S, V)
        cost = d2.mean(0)
        best = int(cost.argmin())
        vertices[k], rms[k] = face[best], np.sqrt(cost[best])
        if int(markup[k]) in position:
            markup_rms[k] = np.sqrt(cost[position[int(markup[k])]])
        else:
            markup_rms[k] = np.nan
    return {"vertices": vertices, "rms_px": rms.astype(np.float32), "markup_rms_px": markup_rms.astype(np.float32),
            "n_renders": np.array(len(points)), "n_frontal": np.array(int(frontal.sum()))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    model = FaceModel.ict()
    points, projected, yaws = collect(model, args.n)
    table = derive(model, points, projected, yaws)
    np.savez_compressed(args.out, **table)
    groups = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36), "eyes": slice(36, 48),
              "mouth": slice(48, 68)}
    print(f"{args.out}: {table['n_renders']} renders ({table['n_frontal']} within 12 deg of frontal)")
    for name, s in groups.items():
        print(f"  {name:6s} RMS px: derived {np.nanmean(table['rms_px'][s]):.2f}, "
              f"ICT markup {np.nanmean(table['markup_rms_px'][s]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

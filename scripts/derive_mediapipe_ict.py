"""Derive where mediapipe's 478 face-mesh points sit on the ICT face: msma/data/mediapipe_to_ict.npz.

    .venv/bin/python scripts/derive_mediapipe_ict.py --n 240        # ~10 min on 2 CPU cores

Data (no evaluation data is used): synthetic ICT faces (msma.synth, seed 77 — training uses 0, benchmarks 1000+)
with random identity, sparse expressions and poses up to 60 degrees yaw, skin textures unwrapped from the five
portrait crops of ../shared/data/old_photos (appearance only; their geometry is never used), clean renders.
Their exact geometry is known, so for every mesh point i mediapipe predicts on the render we know where every ICT
vertex projects.

1. For each point i and each candidate vertex v (face region + eyeballs), the robust mean squared distance between
   mediapipe's point and v's projection over all renders (each term capped at (8 px)^2, so failed detections do not
   dominate) picks the best vertex v_i.
2. Sub-vertex position: among v_i and its nearest vertices on the mean mesh, the three whose affine combination
   (weights sum to 1) best explains the point over all renders, by least squares.
3. sigma_i: the RMS residual of that combination (pixels in the 224 crop) — the fitter's per-point noise level.
4. The iBUG-68 inner points (17-67) of the mediapipe -> iBUG table: the mesh point whose fitted ICT position is
   nearest to ICT's own 68-point markup vertex, so mediapipe-derived 68 points mean the same as the model's.

Known limits of the committed table (derived at commit 585f7ac): some eyelid-margin points sit on eyeball vertices,
which do not move with eyeBlink (the video tracker re-seats them, `msma.track`). The renders' skin textures come from
the fitter (`texture_bank_from_photos`), so re-running this script after fitter changes gives a different table; a
re-derivation with the stricter candidate set made the identity ROC of benchmarks/identity_roc.py worse, so the
table stays as derived until that is understood.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma.face_model import FaceModel  # noqa: E402
from msma.image_io import load_image  # noqa: E402
from msma.landmarks import detect_faces  # noqa: E402
from msma.synth import SyntheticFaceGenerator, texture_bank_from_photos  # noqa: E402

TEXTURE_PHOTOS = ("Adele_crop.png", "Julia_Roberts_crop.png", "Justin_Timberlake_crop.png", "Paris_Hilton_crop.png",
                  "Blake_Lively.jpg")
CAP_PX = 8.0
OUT = ROOT / "msma" / "data" / "mediapipe_to_ict.npz"


def texture_bank(model: FaceModel) -> np.ndarray:
    folder = ROOT.parent / "shared" / "data" / "old_photos"
    photos = [load_image(folder / name) for name in TEXTURE_PHOTOS]
    return texture_bank_from_photos(model, photos).astype(np.float32)


def synthetic_renders(model: FaceModel, n: int, batch: int = 8, with_coefficients: bool = False,
                      photo_textures: bool | np.ndarray = True) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """The n clean synthetic renders (seed 77) one by one: (224x224x3 uint8 image, (N, 2) crop pixels of every
    vertex, yaw in radians — or, ``with_coefficients``, the render's true `Coefficients` (batch of 1)).
    ``photo_textures``: skin from the old_photos texture bank; False: the generator's own procedural albedo; an
    array: that texture bank (K, N, 3)."""
    if isinstance(photo_textures, np.ndarray):
        bank = photo_textures
    else:
        bank = texture_bank(model) if photo_textures else None
    gen = SyntheticFaceGenerator(model, seed=77, texture_bank=bank, bank_probability=1.0, augment=False)
    for start in tqdm(range(0, n, batch), desc="renders"):
        b = gen.render_indices(range(start, min(n, start + batch)))
        images = (b.images.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        with torch.no_grad():
            screen = model.geometry(b.coefficients, with_color=False).screen[..., :2].numpy()
        for k in range(len(images)):
            yield images[k], screen[k], (b.coefficients[k : k + 1] if with_coefficients
                                         else float(b.coefficients.angles[k, 1]))


def collect(model: FaceModel, n: int, batch: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(S, 478, 2) mediapipe points and (S, V, 2) projected candidate vertices, S successful renders."""
    candidates = candidate_vertices(model)
    mp_points, projected = [], []
    for image, screen, _ in synthetic_renders(model, n, batch):
        faces = detect_faces(image, detector="mediapipe")
        if not faces or faces[0].dense is None:
            continue
        mp_points.append(faces[0].dense[:478])
        projected.append(screen[candidates])
    return np.stack(mp_points), np.stack(projected)


def candidate_vertices(model: FaceModel) -> np.ndarray:
    face = model.face_vertices.cpu().numpy()
    tri = model.triangles.cpu().numpy()[~model.skin_triangles.cpu().numpy()]  # eyeball triangles
    return np.unique(np.concatenate([face, tri.reshape(-1)]))


def derive(model: FaceModel, mp_points: np.ndarray, projected: np.ndarray) -> dict[str, np.ndarray]:
    candidates = candidate_vertices(model)
    mean = model.mean.cpu().numpy()
    n_points = mp_points.shape[1]
    cost = np.zeros((n_points, len(candidates)))
    for s in range(len(mp_points)):
        d2 = ((mp_points[s][:, None, :] - projected[s][None]) ** 2).sum(-1)
        cost += np.minimum(d2, CAP_PX**2)
    best = cost.argmin(1)
    tree = cKDTree(mean[candidates])
    vertices = np.zeros((n_points, 3), np.int64)
    weights = np.zeros((n_points, 3))
    sigma = np.zeros(n_points)
    for i in range(n_points):
        _, near = tree.query(mean[candidates[best[i]]], k=8)
        best_fit = None
        # the best triple containing v_i: affine weights by least squares over all renders
        for a in range(1, 8):
            for c in range(a + 1, 8):
                trio = [near[0], near[a], near[c]]
                p = projected[:, trio]  # (S, 3, 2)
                target = mp_points[:, i]
                inlier = np.linalg.norm(target - p[:, 0], axis=1) < 2 * CAP_PX
                # x = p0 + w1 (p1 - p0) + w2 (p2 - p0)
                design = np.stack([p[inlier, 1] - p[inlier, 0], p[inlier, 2] - p[inlier, 0]], -1).reshape(-1, 2)
                rhs = (target[inlier] - p[inlier, 0]).reshape(-1)
                w, *_ = np.linalg.lstsq(design, rhs, rcond=None)
                w = np.clip(w, -0.5, 1.5)
                residual = np.sqrt(((design @ w - rhs) ** 2).reshape(-1, 2).sum(-1).mean())
                if best_fit is None or residual < best_fit[0]:
                    best_fit = (residual, trio, np.array([1 - w.sum(), w[0], w[1]]))
        sigma[i], trio, weights[i] = best_fit
        vertices[i] = candidates[trio]
    # iBUG inner points: the mesh point whose ICT position is nearest to the model's markup vertex
    position = np.einsum("pk,pkc->pc", weights, mean[vertices])
    markup = mean[model.landmarks68.cpu().numpy()]
    ibug_inner = np.array([int(np.argmin(np.linalg.norm(position[:468] - markup[k], axis=1))) for k in range(17, 68)])
    return {"vertices": vertices, "weights": weights.astype(np.float32), "sigma_px": sigma.astype(np.float32),
            "ibug_inner_17_67": ibug_inner, "n_renders": np.array(len(mp_points))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=240)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    model = FaceModel.ict()
    mp_points, projected = collect(model, args.n)
    table = derive(model, mp_points, projected)
    np.savez_compressed(args.out, **table)
    print(f"{args.out}: {len(mp_points)} renders; per-point RMS residual px: median "
          f"{np.median(table['sigma_px']):.2f}, 90% {np.quantile(table['sigma_px'], 0.9):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

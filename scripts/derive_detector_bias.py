"""Derive the detectors' pose-dependent point offsets: msma/data/detector_bias.npz.

    .venv/bin/python scripts/derive_detector_bias.py --n 1200     # ~15 min on 2 CPU cores (the shipped table)

A detector's point is not a fixed point of the face surface: mediapipe's face-oval points and dlib's jaw slide along
the silhouette as the head turns, eyelid and lip points are drawn towards the detector's own average face, and
pitch compresses the nose. The mesh table (scripts/derive_mediapipe_ict.py) and the jaw contour tracker fix the
pose-independent part; what remains is an offset that depends on the pose, which the fitter took for identity,
expression and pose (synthetic test faces: 3.8 deg pose error from the true 68 points + noise, 12.96 deg from the
detectors', benchmarks/results/synthetic_3d*.md before this table).

Data (no evaluation data): clean synthetic ICT renders (seed 77 as for the mesh table; training uses seed 0,
benchmarks 1000 and up, tuning 2000), n with the generator's procedural skin and n with real skin unwrapped from 16
faces_in_the_wild photos (appearance only; detectors find procedural faces less often and place points on them
differently), so that no photo of the SFM benchmark (textured from the old_photos portraits) or of the NME benchmark
(dlib_faces) shapes the offsets. For every render, the
"auto" detector's 68 points and mediapipe's 478 mesh points are compared with where the same points of the true face
project (68: the model's markup, jaw points on the silhouette as `ContourTracker` chooses them at the true pose;
mesh: the table's surface points). Per point and axis, the offset (crop pixels) is regressed on pose features
``msma.fit.pose_features`` (ridge). Renders whose index is a multiple of 5 are kept out of the regression and give
the RMS before / after printed and stored (``rms_px``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from derive_mediapipe_ict import synthetic_renders  # noqa: E402

from msma.face_model import FaceModel  # noqa: E402
from msma.fit import DETECTOR_BIAS_PATH, ContourTracker, MeshPoints, pose_features  # noqa: E402
from msma.landmarks import detect_faces  # noqa: E402

SAMPLES = ROOT / "runs" / "cache" / "detector_bias_samples.npz"
CAP_PX = 12.0  # residuals above this are failed detections, not offsets
RIDGE = 1.0  # per render; keeps rarely seen poses near zero offset


def wild_texture_bank(model: FaceModel, n_photos: int = 16) -> np.ndarray:
    """Skin of the first ``n_photos`` one-face photos of faces_in_the_wild (sorted names): real skin, no photo of
    the SFM benchmark (old_photos) or of the NME benchmark (dlib_faces)."""
    from msma.image_io import load_image
    from msma.synth import texture_bank_from_photos

    folder = ROOT.parent / "shared" / "data" / "faces_in_the_wild"
    photos = []
    for path in sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")):
        photo = load_image(path)
        if len(detect_faces(photo)) == 1:
            photos.append(photo)
        if len(photos) == n_photos:
            break
    return texture_bank_from_photos(model, photos).astype(np.float32)


def collect(model: FaceModel, n: int, photo_textures: bool | np.ndarray) -> dict[str, np.ndarray]:
    """Per render: detected 68 (NaN when missed), their detector, mesh points (NaN when none), the truths, angles."""
    contour = ContourTracker(model)
    mesh = MeshPoints.for_model(model)
    det68, truth68, dense, truth_dense, angles, detector = [], [], [], [], [], []
    for image, screen, coeffs in synthetic_renders(model, n, with_coefficients=True, photo_textures=photo_textures):
        faces = detect_faces(image)
        index = contour.correspondences(model, coeffs)
        truth68.append(screen[index])
        truth_dense.append(np.einsum("kjc,kj->kc", screen[mesh.vertices], mesh.weights))
        angles.append(coeffs.angles[0].double().numpy())
        if faces:
            det68.append(faces[0].landmarks68)
            detector.append(faces[0].detector)
            dense.append(faces[0].dense[:478] if faces[0].dense is not None else np.full((478, 2), np.nan))
        else:
            det68.append(np.full((68, 2), np.nan))
            detector.append("none")
            dense.append(np.full((478, 2), np.nan))
    return {"det68": np.array(det68), "truth68": np.array(truth68), "dense": np.array(dense),
            "truth_dense": np.array(truth_dense), "angles": np.array(angles), "detector": np.array(detector)}


def regress(offsets: np.ndarray, features: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Ridge per point and axis: offsets (S, K, 2), features (S, F) -> coefficients (K, 2, F) and held-out RMS."""
    n_points, n_features = offsets.shape[1], features.shape[1]
    # (S, K): a detection of the point, not a failure (NaN compares False, so missing points are out too)
    good = np.linalg.norm(offsets, axis=2) < CAP_PX
    coef = np.zeros((n_points, 2, n_features))
    before, after = [], []
    for k in range(n_points):
        rows = good[:, k] & fit
        if rows.sum() >= 3 * n_features:
            a = features[rows]
            coef[k] = np.linalg.solve(a.T @ a + RIDGE * np.eye(n_features), a.T @ offsets[rows, k]).T
        check = good[:, k] & ~fit
        before += (offsets[check, k] ** 2).sum(1).tolist()
        after += ((offsets[check, k] - features[check] @ coef[k].T) ** 2).sum(1).tolist()
    return coef, {"before": float(np.sqrt(np.mean(before))), "after": float(np.sqrt(np.mean(after)))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1200)
    parser.add_argument("--textures", default="procedural,wild",
                        help="skins of the renders, comma-separated, n renders each: procedural (the generator's "
                             "albedo), wild (faces_in_the_wild photos), photos (old_photos: the SFM benchmark's "
                             "textures, so not for the shipped table)")
    parser.add_argument("--reuse", action="store_true", help="regress on the samples saved by the last run")
    parser.add_argument("--out", type=Path, default=DETECTOR_BIAS_PATH)
    args = parser.parse_args()
    model = FaceModel.ict()
    parts = []
    for kind in args.textures.split(","):
        samples = SAMPLES.with_name(f"{SAMPLES.stem}_{kind}.npz")
        if args.reuse and samples.is_file():
            parts.append(dict(np.load(samples)))
            continue
        bank = {"procedural": False, "photos": True}.get(kind)
        parts.append(collect(model, args.n, wild_texture_bank(model) if kind == "wild" else bank))
        samples.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(samples, **parts[-1])
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    features = pose_features(data["angles"])
    fit = np.concatenate([np.arange(len(p["angles"])) % 5 != 0 for p in parts])
    out: dict[str, np.ndarray] = {}
    lines = []
    for name, detected, truth, which in (
        ("mediapipe_dense", data["dense"], data["truth_dense"], np.ones(len(features), bool)),
        ("dlib68", data["det68"], data["truth68"], data["detector"] == "dlib"),
        ("mediapipe68", data["det68"], data["truth68"], data["detector"] == "mediapipe"),
    ):
        offsets = np.where(which[:, None, None], detected - truth, np.nan)
        coef, rms = regress(offsets, features, fit)
        out[name] = coef.astype(np.float32)
        out[f"{name}_rms_px"] = np.array([rms["before"], rms["after"]], np.float32)
        lines.append(f"{name}: {int(which.sum())} renders; held-out RMS offset {rms['before']:.2f} px -> "
                     f"{rms['after']:.2f} px after the pose-dependent correction")
    out["n_renders"] = np.array(len(features))
    out["textures"] = np.array(args.textures)
    np.savez_compressed(args.out, **out)
    print(f"{args.out}:\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

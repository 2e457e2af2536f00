"""Reconstruction benchmarks for the closing note of the foundation issue. Rerun with

    python benchmarks/reconstruction.py [--synthetic 50] [--skip-timing] [--skip-nme]

1. per-stage CPU time for one 1024x1024 photo (detect+landmarks, align, landmark fit, photometric refinement,
   texture, overlay render, each export);
2. 68-point reprojection NME (outer-eye-corner normalised) of the fitted model against the dlib_faces labels
   and against the detector's own points;
3. 3D error on synthetic ground truth: random ICT faces rendered with known identity / expression / pose /
   lighting, reconstructed from the render; mean vertex error (mm) on the face region after rigid alignment,
   landmark-only vs with photometric refinement.
Writes benchmarks/results/reconstruction.json and .md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, without installing

from msma.api import Reconstructor  # noqa: E402
from msma.compare import identity_distance  # noqa: E402
from msma.evaluate import read_dlib_xml  # noqa: E402
from msma.face_model import MODEL_UNITS_TO_MM, Coefficients  # noqa: E402
from msma.image_io import load_image  # noqa: E402
from msma.landmarks import detect_faces  # noqa: E402
from msma.render import Renderer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def stage_timing(photo_path: Path, repeats: int = 3, method: str = "auto") -> tuple[dict[str, float], str]:
    """Median per-stage seconds of ``method`` on a 1024x1024 version of a photo, and the method that ran ("auto"
    resolved)."""
    import cv2

    image = load_image(photo_path)
    side = min(image.shape[:2])
    y0, x0 = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    photo = cv2.resize(image[y0 : y0 + side, x0 : x0 + side], (1024, 1024), interpolation=cv2.INTER_CUBIC)
    reconstructor = Reconstructor(method=method)
    reconstructor(photo, largest_only=True)  # warm-up: model loading, unwrapper tables
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        result = reconstructor(photo, largest_only=True)
        face = result[0]
        times = {k: v for k, v in result.timings.items()}
        start = time.perf_counter()
        result.overlay()
        times["overlay_render"] = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("glb", "obj", "ply", "json"):
                start = time.perf_counter()
                face.export(tmp, stem="face", formats=(fmt,))
                times[f"export_{fmt}"] = time.perf_counter() - start
        runs.append(times)
    keys = runs[0].keys()
    median = {k: float(np.median([r[k] for r in runs])) for k in keys}
    median["landmark_fit_plus_export_glb"] = median["fit_landmarks"] + median["export_glb"]
    return median, reconstructor.method


def nme_on_dlib(min_interocular: float = 20.0) -> dict[str, float]:
    folder = SHARED / "dlib_faces"
    labels = []
    for xml in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        labels += read_dlib_xml(folder / xml)
    reconstructor = Reconstructor(method="fitting", photometric=True)
    by_image: dict[str, list] = {}
    for file, box, lm in labels:
        by_image.setdefault(file, []).append((box, lm))
    fitted_nme, detector_nme, fitted_vs_detector = [], [], []
    missed = 0
    for file, faces in tqdm(by_image.items(), desc="dlib_faces NME"):
        photo = load_image(folder / file, max_side=None)
        detections = detect_faces(photo)
        for _, lm in faces:
            interocular = float(np.linalg.norm(lm[45] - lm[36]))
            if interocular < min_interocular:
                continue
            centre = lm.mean(0)
            match = min(detections, key=lambda d: np.linalg.norm(d.landmarks68.mean(0) - centre), default=None)
            if match is None or np.linalg.norm(match.landmarks68.mean(0) - centre) > interocular:
                missed += 1
                continue
            face = reconstructor.reconstruct_face(photo, match, texture=False)
            fitted_nme.append(np.linalg.norm(face.fitted_landmarks - lm, axis=1).mean() / interocular)
            detector_nme.append(np.linalg.norm(match.landmarks68 - lm, axis=1).mean() / interocular)
            fitted_vs_detector.append(
                np.linalg.norm(face.fitted_landmarks - match.landmarks68, axis=1).mean() / interocular
            )
    return {
        "faces": len(fitted_nme),
        "missed": missed,
        "min_interocular_px": min_interocular,
        "nme_fitted_vs_labels": float(np.mean(fitted_nme)),
        "nme_detector_vs_labels": float(np.mean(detector_nme)),
        "nme_fitted_vs_detector": float(np.mean(fitted_vs_detector)),
    }


def random_coefficients(model, batch: int, generator: torch.Generator) -> Coefficients:
    coeffs = Coefficients.zeros(model, batch)
    coeffs.identity = torch.randn(batch, model.n_identity, generator=generator)
    active = torch.rand(batch, model.n_expression, generator=generator) < 0.1
    coeffs.expression = torch.rand(batch, model.n_expression, generator=generator) * 0.7 * active
    limits = torch.tensor(np.deg2rad([20.0, 45.0, 15.0]), dtype=torch.float32)
    coeffs.angles = (torch.rand(batch, 3, generator=generator) * 2 - 1) * limits
    coeffs.translation = torch.randn(batch, 3, generator=generator) * torch.tensor([0.05, 0.05, 0.3])
    coeffs.texture = torch.randn(batch, model.n_texture, generator=generator) * 0.7
    coeffs.lighting = torch.randn(batch, 27, generator=generator) * 0.1
    coeffs.lighting.view(batch, 3, 9)[:, :, 1:4] += torch.randn(batch, 1, 3, generator=generator) * 0.25
    return coeffs


def synthetic_3d(n_faces: int, seed: int = 12345, landmark_noise_px: float = 1.5) -> dict[str, dict]:
    reconstructor = Reconstructor(method="fitting")
    model = reconstructor.model
    renderer = Renderer(224)
    generator = torch.Generator().manual_seed(seed)
    face_region = model.face_vertices.numpy()
    errors: dict[str, list[float]] = {"mean_face": [], "landmarks_only": [], "landmarks_plus_photometric": []}
    pose_errors: dict[str, list[float]] = {"landmarks_only": [], "landmarks_plus_photometric": []}
    times: dict[str, list[float]] = {"landmarks_only": [], "landmarks_plus_photometric": []}
    for _ in tqdm(range(n_faces), desc="synthetic faces"):
        truth = random_coefficients(model, 1, generator)
        with torch.no_grad():
            geometry = model.geometry(truth)
            background = torch.rand(3, generator=generator) * 0.6 + 0.2
            out = renderer.render_colors(geometry.screen, model.triangles, geometry.colors,
                                         background=tuple(background.tolist()))
        crop = (out.image[0].clamp(0, 1).numpy() * 255).astype(np.uint8)
        landmarks = geometry.landmarks2d.numpy() + np.random.default_rng(len(errors["mean_face"])).normal(
            0, landmark_noise_px, (1, 68, 2))
        true_vertices = geometry.vertices[0].numpy()
        errors["mean_face"].append(identity_distance(true_vertices, model.mean.numpy(), face_region).mean_mm)
        for name, photometric in (("landmarks_only", False), ("landmarks_plus_photometric", True)):
            reconstructor.photometric = photometric
            start = time.perf_counter()
            coeffs = reconstructor.estimate(crop[None], landmarks, method="fitting")
            times[name].append(time.perf_counter() - start)
            with torch.no_grad():
                vertices = model(coeffs.identity, model.clamp_expression(coeffs.expression))[0].numpy()
            errors[name].append(identity_distance(true_vertices, vertices, face_region).mean_mm)
            pose_errors[name].append(float(np.rad2deg((coeffs.angles - truth.angles).abs().mean())))
    summary = {}
    for name, values in errors.items():
        entry = {"vertex_error_mm_mean": float(np.mean(values)), "vertex_error_mm_median": float(np.median(values))}
        if name in pose_errors:
            entry["pose_error_deg_mean"] = float(np.mean(pose_errors[name]))
            entry["seconds_per_face"] = float(np.mean(times[name]))
        summary[name] = entry
    summary["settings"] = {"faces": n_faces, "seed": seed, "landmark_noise_px": landmark_noise_px,
                           "units": f"mm (1 model unit = {MODEL_UNITS_TO_MM} mm)", "alignment": "rigid (Kabsch)"}
    return summary


def to_markdown(results: dict) -> str:
    lines = ["# Reconstruction benchmark", ""]
    if "timing_1024" in results:
        lines += [f"## Per-stage CPU time, one 1024x1024 photo, method {results.get('timing_method', 'fitting')} "
                  "(median of 3, seconds)", "", "| stage | s |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in results["timing_1024"].items()]
        lines.append("")
    if "nme_dlib" in results:
        lines += ["## 68-point NME on dlib_faces (inter-ocular, outer eye corners)", ""]
        lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in results["nme_dlib"].items()]
        lines.append("")
    if "synthetic_3d" in results:
        lines += ["## Synthetic 3D error (face region, rigid alignment)", "",
                  "| method | mean mm | median mm | pose err deg | s/face |", "|---|---|---|---|---|"]
        for name, entry in results["synthetic_3d"].items():
            if name == "settings":
                continue
            lines.append(f"| {name} | {entry['vertex_error_mm_mean']:.2f} | {entry['vertex_error_mm_median']:.2f} | "
                         f"{entry.get('pose_error_deg_mean', float('nan')):.2f} | "
                         f"{entry.get('seconds_per_face', float('nan')):.2f} |")
        lines += ["", f"settings: {results['synthetic_3d']['settings']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=50, help="number of synthetic faces (0 to skip)")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-nme", action="store_true")
    parser.add_argument("--photo", default=str(SHARED / "faces_in_the_wild" / "img12.jpg"))
    parser.add_argument("--out", default=str(RESULTS / "reconstruction"))
    parser.add_argument("--method", default="auto", help="method of the per-stage timing (auto: the default)")
    args = parser.parse_args()
    results: dict = {}
    if not args.skip_timing:
        results["timing_1024"], results["timing_method"] = stage_timing(Path(args.photo), method=args.method)
    if not args.skip_nme:
        results["nme_dlib"] = nme_on_dlib()
    if args.synthetic:
        results["synthetic_3d"] = synthetic_3d(args.synthetic)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    out.with_suffix(".md").write_text(to_markdown(results))
    print(to_markdown(results))


if __name__ == "__main__":
    main()

"""Evaluation: ``python -m msma evaluate ...`` (or ``python -m msma.evaluate ...``).

    python -m msma evaluate --synthetic 64 --seed 1000                  # synthetic 3D benchmark (held-out seed)
    python -m msma evaluate --dlib-dir ../shared/data/dlib_faces         # reprojected 68-point NME
    python -m msma evaluate --scans /data/MICC --protocol micc           # scan protocol (user-supplied datasets)
    python -m msma evaluate --speed                                      # images/s, network vs fitting
    options: --weights weights/msma_light.safetensors --ablation-weights weights/plain_light.safetensors
             --out benchmarks/results --name NAME (writes NAME.json + NAME.md)

Synthetic benchmark: faces from `msma.synth.SyntheticFaceGenerator` with a held-out seed (training uses seed 0), 224
crops with the full camera effects. Metrics: mean vertex error (mm) on the face region after rigid (Kabsch) alignment
of the model-frame shape + expression, head-pose error (geodesic angle, degrees), expression-weight MAE. Methods:
network alone, network + refinement (landmark fit with the network as prior + photometric refinement, exactly
`Reconstructor.estimate`), fitting alone (same fitter from the mean face), and the ablation network. The fitters
get the ground-truth 68 landmarks with N(0, 1.5 px) noise (``--fit-landmarks noisy-gt``, default) or the real
detector run on the rendered crop (``--fit-landmarks detector``; faces it misses fall back to noisy-gt, counted).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from msma.benchmark3d import kabsch
from msma.face_model import MODEL_UNITS_TO_MM, Coefficients, FaceModel, euler_to_matrix
from msma.landmarks.metrics import IBUG68_REGIONS, nme, region_nme
from msma.pixels import from_pixel_index

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "msma_light.safetensors"
DEFAULT_ABLATION = Path(__file__).resolve().parents[1] / "weights" / "plain_light.safetensors"


# ---------------------------------------------------------------------- metrics
def aligned_vertex_error_mm(pred: np.ndarray, gt: np.ndarray, index: np.ndarray | None = None) -> np.ndarray:
    """Per-sample mean Euclidean error (mm) after rigid Kabsch alignment of pred onto gt. (B, N, 3) model units."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if index is not None:
        pred, gt = pred[:, index], gt[:, index]
    errors = []
    for p, g in zip(pred, gt):
        r, t, _ = kabsch(p, g)
        errors.append(np.linalg.norm(p @ r.T + t - g, axis=1).mean() * MODEL_UNITS_TO_MM)
    return np.array(errors)


def rotation_error_deg(pred_angles: torch.Tensor, gt_angles: torch.Tensor) -> np.ndarray:
    """Geodesic angle (degrees) between the predicted and true head rotations. (B, 3) pitch/yaw/roll radians."""
    rp, rg = euler_to_matrix(pred_angles.double()), euler_to_matrix(gt_angles.double())
    rel = rp.transpose(1, 2) @ rg
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return torch.rad2deg(torch.arccos(cos)).cpu().numpy()


STRONG_EXPRESSION = 0.3  # a true ARKit weight this large is a visible expression


def expression_mae(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    return (pred - gt).abs().mean(-1).cpu().numpy()


# ---------------------------------------------------------------------- methods
@dataclass
class MethodInput:
    """What every evaluated method is given for a batch of faces (the same for all methods of a benchmark)."""

    crops: np.ndarray  # uint8 (B, 224, 224, 3): 5-point aligned crops
    landmarks: np.ndarray  # (B, 68, 2) crop pixels: the detector's 68 points (or the truth + noise)
    # (B, 478, 3) mediapipe's mesh points in crop pixels and their relative depth (NaN rows where none)
    dense: np.ndarray | None = None
    sources: list[str | None] | None = None  # (B,) the detector that gave each face's 68 points


# an evaluated method: MethodInput -> Coefficients (batch B)
Method = Callable[[MethodInput], Coefficients]


def build_methods(weights: str | None, ablation: str | None, fitting: bool = True, refine: bool = True,
                  model: FaceModel | None = None) -> dict[str, Method]:
    """The `Reconstructor` methods to evaluate, by name: the network (and its raw outputs where calibrated trust
    changes them), network+refine, fitting and the ablation network, each where its weights exist."""
    from msma.api import Reconstructor
    from msma.net.trust import PriorTrust

    methods: dict[str, Method] = {}
    if weights and Path(weights).is_file():
        rec = Reconstructor(method="network", weights=weights, face_model=model)
        methods["network"] = estimator(rec, "network")
        if rec.prior_trust is not None and rec.prior_trust != PriorTrust():
            # the calibrated trust (msma.net.trust) changed the outputs: also report the network as it answers
            methods["network (raw outputs)"] = lambda x, r=rec: r.predict(x.crops, raw=True)
        if refine:
            methods["network+refine"] = estimator(rec, "network+refine")
    if fitting:
        methods["fitting"] = estimator(Reconstructor(method="fitting", face_model=model), "fitting")
    if ablation and Path(ablation).is_file():
        methods["ablation network (no fusion/attention)"] = estimator(
            Reconstructor(method="network", weights=ablation, face_model=model), "network")
    return methods


def estimator(rec, method: str) -> Method:
    """A benchmark method: ``rec`` (a `Reconstructor`) run as ``method`` on each batch's crops and detections."""
    return lambda x: rec.estimate(x.crops, x.landmarks, method=method, crop_dense=x.dense, landmark_sources=x.sources)


def fitting_settings_methods(grid: dict[str, dict], only: str | None = None,
                             model: FaceModel | None = None) -> dict[str, Method]:
    """One "fitting" method (no photometric step) per row of ``grid``: `LandmarkFitSettings` with that row's changes
    from the defaults; ``only``: the row names to keep, separated by ";" (None: all)."""
    import dataclasses

    from msma.api import Reconstructor
    from msma.fit import LandmarkFitSettings

    model = model or FaceModel.ict()
    methods: dict[str, Method] = {}
    for name, change in grid.items():
        if only is not None and name not in only.split(";"):
            continue
        rec = Reconstructor(method="fitting", face_model=model, photometric=False)
        rec.landmark_settings = dataclasses.replace(LandmarkFitSettings(), **change)
        methods[name] = estimator(rec, "fitting")
    return methods


def _detector_landmarks(crops: np.ndarray, fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, list]:
    """Detected 68 points (fallback where no face is found), mediapipe mesh points (NaN where none), misses, and
    the detector of each image's 68 points (None for a fallback)."""
    from msma.landmarks import detect_faces

    out, missed = fallback.copy(), 0
    dense = np.full((len(crops), 478, 3), np.nan)  # x, y and mediapipe's relative depth (crop pixels)
    sources: list[str | None] = [None] * len(crops)
    for b, crop in enumerate(crops):
        try:
            faces = detect_faces(crop)
        except Exception:
            faces = []
        if faces:
            out[b] = faces[0].landmarks68
            sources[b] = faces[0].detector
            if faces[0].dense is not None:
                dense[b, :, :2] = faces[0].dense[:478]
                if faces[0].dense_depth is not None:
                    dense[b, :, 2] = faces[0].dense_depth[:478]
        else:
            missed += 1
    return out, dense, missed, sources


# ---------------------------------------------------------------------- synthetic benchmark
def synthetic_benchmark(methods: dict[str, Method], n: int = 64, seed: int = 1000, batch: int = 8,
                        landmark_noise: float = 1.5, fit_landmarks: str = "noisy-gt", backgrounds=None,
                        model: FaceModel | None = None, progress: bool = True, reference: bool = False) -> dict:
    from msma.synth import SyntheticFaceGenerator

    model = model or FaceModel.ict()
    if reference:  # the mean shape: what any method must beat on vertex error (its pose error is meaningless)
        methods = {**methods, "mean shape (reference)": lambda x: Coefficients.zeros(model, len(x.crops))}
    gen = SyntheticFaceGenerator(model, seed=seed, image_size=model.camera.image_size, backgrounds=backgrounds)
    rng = np.random.default_rng(seed)
    region = model.face_vertices.cpu().numpy()
    per: dict[str, dict[str, list]] = {k: {"vertex_mm": [], "identity_mm": [], "pose_deg": [], "expression_mae": [],
                                           "seconds": [], "neutral_max_weight": [], "strong_abs_error": []}
                                       for k in methods}
    missed = 0
    for start in range(0, n, batch):
        b = gen.sample(min(batch, n - start))
        crops = (b.images.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
        lms = b.landmarks2d.cpu().numpy() + rng.normal(0, landmark_noise, b.landmarks2d.shape)
        dense, sources = None, None
        if fit_landmarks == "detector":
            lms, dense, m, sources = _detector_landmarks(crops, lms)
            missed += m
        gt = b.coefficients
        with torch.no_grad():  # the true neutral shapes, shared by every method's identity error
            neutral_gt = model(gt.identity.cpu(), torch.zeros_like(gt.expression.cpu())).cpu().numpy()
        for name, fn in methods.items():
            t0 = time.perf_counter()
            coeffs = fn(MethodInput(crops, lms, dense, sources))
            per[name]["seconds"].append((time.perf_counter() - t0) / len(crops))
            coeffs = coeffs.to("cpu")
            exp = model.clamp_expression(coeffs.expression)
            with torch.no_grad():
                verts = model(coeffs.identity, exp).cpu().numpy()
            per[name]["vertex_mm"] += aligned_vertex_error_mm(verts, b.vertices.cpu().numpy(), region).tolist()
            with torch.no_grad():  # the person's shape alone: neutral meshes, so expressions cannot hide in it
                neutral_pred = model(coeffs.identity, torch.zeros_like(exp)).cpu().numpy()
            per[name]["identity_mm"] += aligned_vertex_error_mm(neutral_pred, neutral_gt, region).tolist()
            per[name]["pose_deg"] += rotation_error_deg(coeffs.angles, gt.angles).tolist()
            per[name]["expression_mae"] += expression_mae(exp, gt.expression).tolist()
            strong = (gt.expression >= STRONG_EXPRESSION).cpu()  # the weights a viewer would see
            per[name]["strong_abs_error"] += (exp.cpu() - gt.expression.cpu()).abs()[strong].tolist()
            neutral = (gt.expression.abs().amax(-1) == 0).cpu()  # faces rendered with no expression at all
            per[name]["neutral_max_weight"] += exp.cpu()[neutral].amax(-1).tolist() if neutral.any() else []
        if progress:
            print(f"synthetic {start + len(crops)}/{n}: " + ", ".join(
                f"{k} {np.mean(v['vertex_mm']):.2f} mm" for k, v in per.items()), flush=True)
    results = {}
    for name, v in per.items():
        results[name] = {
            "vertex_mm": float(np.mean(v["vertex_mm"])), "vertex_mm_median": float(np.median(v["vertex_mm"])),
            "identity_mm": float(np.mean(v["identity_mm"])),
            "pose_deg": float(np.mean(v["pose_deg"])), "pose_deg_median": float(np.median(v["pose_deg"])),
            "expression_mae": float(np.mean(v["expression_mae"])),
            # error on the true weights >= STRONG_EXPRESSION only: a prior that zeroes everything scores their mean
            "strong_expression_mae": float(np.mean(v["strong_abs_error"])) if v["strong_abs_error"] else None,
            # largest weight the method gives a neutral face (mean over neutral faces) and the share <= 0.15
            "neutral_max_weight": float(np.mean(v["neutral_max_weight"])) if v["neutral_max_weight"] else None,
            "neutral_faces_all_weights_below_0.15": (float(np.mean(np.array(v["neutral_max_weight"]) <= 0.15))
                                                     if v["neutral_max_weight"] else None),
            "seconds_per_image": float(np.sum(v["seconds"]) * batch / max(n, 1)),
        }
    return {"n": n, "seed": seed, "landmark_source": fit_landmarks, "landmark_noise_px": landmark_noise,
            "detector_missed": missed, "methods": results}


# ---------------------------------------------------------------------- 2D NME
def read_dlib_xml(path: str | os.PathLike) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(file, box (4,) x0 y0 x1 y1, landmarks (68, 2)) for every labelled face of an imglab XML file."""
    root = ET.parse(path).getroot()
    out = []
    for image in root.iter("image"):
        for box in image.iter("box"):
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
            if len(parts) != 68:
                continue
            x0, y0 = float(box.get("left")), float(box.get("top"))
            b = np.array([x0, y0, x0 + float(box.get("width")), y0 + float(box.get("height"))])
            # dlib writes points as pixel indices (integer centres); MSMA points are continuous (msma.pixels)
            out.append((image.get("file"), b, from_pixel_index(np.array([parts[i] for i in range(68)]))))
    return out


def dlib_nme(dlib_dir: str | os.PathLike, methods: dict[str, Method], detector: str = "auto",
             model: FaceModel | None = None, progress: bool = True) -> dict:
    """Reprojected 68-point NME on the dlib example faces (their imglab XML labels): see `labelled_nme`."""
    dlib_dir = Path(dlib_dir)
    labels = []
    for xml in sorted(dlib_dir.glob("*.xml")):
        labels += [(str(dlib_dir / file), box, lm) for file, box, lm in read_dlib_xml(xml)]
    return labelled_nme(labels, methods, detector=detector, model=model, progress=progress)


def labelled_nme(labels: list[tuple[str, np.ndarray, np.ndarray]], methods: dict[str, Method],
                 detector: str = "auto", model: FaceModel | None = None, progress: bool = True,
                 flip_detector: bool = False) -> dict:
    """Reprojected 68-point NME of labelled faces (photo path, box x0 y0 x1 y1, (68, 2) points): detect -> align ->
    method -> project -> photo pixels, next to the detector's own points (``flip_detector``: the detector's flip
    test-time augmentation, `msma.landmarks.flip`).

    A labelled face is matched to the detection whose box centre is nearest (within half the box size). Missed
    faces are counted, not scored.
    """
    from msma.align import align_face, crop_mesh_points, transform_points
    from msma.fit import ContourTracker
    from msma.image_io import load_image
    from msma.landmarks import detect_faces

    model = model or FaceModel.ict()
    template = model.five_point_template()
    contour = ContourTracker(model)
    by_file: dict[str, list] = {}
    for file, box, lm in labels:
        by_file.setdefault(file, []).append((box, lm))
    per = {"detector": []} | {k: [] for k in methods}
    regions: dict[str, list[dict[str, float]]] = {k: [] for k in per}
    matched = 0
    for file, faces in by_file.items():
        photo = load_image(file)
        detections = detect_faces(photo, detector=detector, flip_test=flip_detector)
        for box, gt in faces:
            centre, size = (box[:2] + box[2:]) / 2, box[2] - box[0]
            best, best_d = None, np.inf
            for det in detections:
                d = np.linalg.norm(det.landmarks68.mean(0) - gt.mean(0))
                if d < best_d:
                    best, best_d = det, d
            if best is None or best_d > 0.5 * max(size, 1) or np.linalg.norm(best.box[:2] / 2 + best.box[2:] / 2
                                                                                  - centre) > size:
                continue
            matched += 1
            per["detector"].append(nme(best.landmarks68, gt))
            regions["detector"].append(region_nme(best.landmarks68, gt))
            aligned = align_face(photo, best.five_points(), template=template)
            crop_lm = transform_points(best.landmarks68, aligned.matrix)
            crop_dense = None if best.dense is None else crop_mesh_points(best, aligned.matrix)[None]
            for name, fn in methods.items():
                coeffs = fn(MethodInput(aligned.image[None], crop_lm[None], crop_dense, [best.detector])).to("cpu")
                proj = contour.project(model, coeffs)  # the jaw on the silhouette, as detectors place it
                photo_points = transform_points(proj, aligned.inverse)
                per[name].append(nme(photo_points, gt))
                regions[name].append(region_nme(photo_points, gt))
        if progress:
            print(f"nme {Path(file).name}: {matched} faces matched", flush=True)
    return {
        "n_labelled": len(labels), "n_matched": matched, "detector": detector,
        "nme": {k: {"mean": float(np.mean(v)) if v else None, "median": float(np.median(v)) if v else None}
                for k, v in per.items()},
        # mean NME of each iBUG region (jaw, brows, nose, eyes, mouth), whole-face normaliser
        "region_nme": {k: {r: float(np.nanmean([f[r] for f in v])) if v else None for r in IBUG68_REGIONS}
                       for k, v in regions.items()},
    }


# ---------------------------------------------------------------------- speed
def speed_benchmark(weights: str | None, repeats: int = 5, model: FaceModel | None = None,
                    fitting_images: int = 4) -> dict:
    from msma.api import Reconstructor
    from msma.synth import SyntheticFaceGenerator

    model = model or FaceModel.ict()
    gen = SyntheticFaceGenerator(model, seed=1000, image_size=224)
    b = gen.sample(fitting_images)
    crops = (b.images.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
    lms = b.landmarks2d.numpy()
    result: dict = {"cpu": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count()}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if weights and Path(weights).is_file():
        for device in devices:
            rec = Reconstructor(method="network", weights=weights, device=device)
            net = rec.network
            size = net.config.image_size
            for bs in (1, 16):
                x = torch.rand(bs, 3, size, size, device=device)
                with torch.no_grad():
                    for _ in range(2):
                        net(x)
                    if device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(repeats):
                        net(x)
                    if device == "cuda":
                        torch.cuda.synchronize()
                dt = (time.perf_counter() - t0) / repeats
                result[f"network_{device}_batch{bs}_images_per_s"] = bs / dt
            # end to end from a 224 crop (resize included)
            crop_batch = np.repeat(crops[:1], 16, 0)
            rec.predict(crop_batch[:1])
            t0 = time.perf_counter()
            for _ in range(repeats):
                rec.predict(crop_batch[:1])
            result[f"predict_{device}_batch1_images_per_s"] = repeats / (time.perf_counter() - t0)
            result["network_input_size"] = size
    fit = Reconstructor(method="fitting")
    t0 = time.perf_counter()
    for i in range(fitting_images):
        fit.estimate(crops[i : i + 1], lms[i : i + 1], method="fitting")
    result["fitting_seconds_per_image"] = (time.perf_counter() - t0) / fitting_images
    if "network_cpu_batch1_images_per_s" in result:
        result["network_speedup_vs_fitting_batch1"] = (
            result["fitting_seconds_per_image"] * result["network_cpu_batch1_images_per_s"]
        )
    return result


# ---------------------------------------------------------------------- report
def markdown_report(results: dict) -> str:
    lines = ["# MSMA evaluation", ""]
    if "synthetic" in results:
        s = results["synthetic"]
        lines += [f"## Synthetic 3D benchmark ({s['n']} faces, seed {s['seed']}, fitter landmarks: "
                  f"{s['landmark_source']}, noise {s['landmark_noise_px']} px)", "",
                  "| method | vertex error mm (mean / median) | pose error deg (mean / median) | expression MAE | "
                  f"MAE on true weights >= {STRONG_EXPRESSION} | neutral faces: largest weight (mean) / share all "
                  "<= 0.15 | s / image |", "|---|---|---|---|---|---|---|"]
        for name, m in s["methods"].items():
            neutral = "-"
            if m.get("neutral_max_weight") is not None:
                neutral = f"{m['neutral_max_weight']:.3f} / {m['neutral_faces_all_weights_below_0.15']:.2f}"
            strong = "-" if m.get("strong_expression_mae") is None else f"{m['strong_expression_mae']:.3f}"
            lines.append(f"| {name} | {m['vertex_mm']:.2f} / {m['vertex_mm_median']:.2f} | {m['pose_deg']:.2f} / "
                         f"{m['pose_deg_median']:.2f} | {m['expression_mae']:.4f} | {strong} | {neutral} | "
                         f"{m['seconds_per_image']:.3f} |")
        lines.append("")
    if "nme" in results:
        r = results["nme"]
        lines += [f"## 68-point NME on dlib_faces ({r['n_matched']} of {r['n_labelled']} labelled faces matched by "
                  f"the {r['detector']} detector; labels are dlib predictor pseudo-labels)", "",
                  "| method | NME mean | NME median |", "|---|---|---|"]
        for name, m in r["nme"].items():
            if m["mean"] is not None:
                lines.append(f"| {name} | {m['mean']:.4f} | {m['median']:.4f} |")
        lines.append("")
    if "speed" in results:
        lines += ["## Speed", "", "| measure | value |", "|---|---|"]
        for k, v in results["speed"].items():
            lines.append(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |")
        lines.append("")
    if "scans" in results:
        r = results["scans"]
        lines += [f"## Scan protocol {r.get('protocol')}", "", f"images: {r.get('n_images')}", ""]
        for key in ("rmse_mm", "mean_mm", "median_mm"):
            if key in r:
                lines.append(f"- {key}: {r[key]['mean']:.3f} +- {r[key]['std']:.3f}")
        lines.append("")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="MSMA network weights (safetensors)")
    parser.add_argument("--ablation-weights", default=str(DEFAULT_ABLATION), help="ablation network weights")
    parser.add_argument("--synthetic", type=int, default=0, metavar="N", help="synthetic benchmark on N faces")
    parser.add_argument("--seed", type=int, default=1000, help="held-out synthetic seed (training uses 0)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--fit-landmarks", choices=("noisy-gt", "detector"), default="noisy-gt")
    parser.add_argument("--landmark-noise", type=float, default=1.5)
    parser.add_argument("--backgrounds", default=None, help="photo folder for synthetic backgrounds")
    parser.add_argument("--no-refine", action="store_true", help="skip network + refinement")
    parser.add_argument("--no-fitting", action="store_true", help="skip fitting alone")
    parser.add_argument("--reference", action="store_true", help="add the mean shape as a reference row")
    parser.add_argument("--dlib-dir", default=None, help="folder with dlib imglab XML landmark files and photos")
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--scans", default=None, help="dataset folder for the scan protocol")
    parser.add_argument("--protocol", choices=("micc", "facewarehouse", "now"), default="micc")
    parser.add_argument("--scan-method", default="network+refine", help="Reconstructor method for --scans")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="evaluation")
    parser.add_argument("--html", action="store_true", help="also write a plotly HTML bar chart")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    model = FaceModel.ict()
    results: dict = {"weights": args.weights, "ablation_weights": args.ablation_weights}
    if args.synthetic or args.dlib_dir:
        methods = build_methods(args.weights, args.ablation_weights, fitting=not args.no_fitting,
                                refine=not args.no_refine, model=model)
    if args.synthetic:
        results["synthetic"] = synthetic_benchmark(methods, args.synthetic, args.seed, args.batch,
                                                   args.landmark_noise, args.fit_landmarks, args.backgrounds, model,
                                                   reference=args.reference)
    if args.dlib_dir:
        results["nme"] = dlib_nme(args.dlib_dir, methods, args.detector, model)
    if args.scans:
        from msma.api import Reconstructor
        from msma.benchmark3d import run_protocol

        rec = Reconstructor(method=args.scan_method, weights=args.weights if args.scan_method != "fitting" else None)
        results["scans"] = run_protocol(args.scans, rec, args.protocol, limit=args.limit)
    if args.speed:
        results["speed"] = speed_benchmark(args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    report = markdown_report(results)
    (out / f"{args.name}.md").write_text(report)
    if args.html and "synthetic" in results:
        try:
            import plotly.graph_objects as go

            names = list(results["synthetic"]["methods"])
            fig = go.Figure(go.Bar(x=names, y=[results["synthetic"]["methods"][n]["vertex_mm"] for n in names]))
            fig.update_layout(title="Synthetic benchmark: vertex error (mm)", yaxis_title="mm")
            fig.write_html(out / f"{args.name}.html")
        except ImportError:
            pass
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(add_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args()))

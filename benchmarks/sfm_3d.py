"""Out-of-model 3D benchmark: Surrey Face Model faces rendered as photos, reconstructed by every method, NoW-scored.

    .venv/bin/python benchmarks/sfm_3d.py --split test            # 12 subjects x 6 views -> benchmarks/results/
    .venv/bin/python benchmarks/sfm_3d.py --split dev --subjects 8 --methods fitting,mean  # tuning runs

Protocol (see `benchmarks/sfm_faces.py` for the faces):
- subject k of a split: SFM shape coefficients ~ N(0, 1) from ``default_rng([split seed, k])`` (dev seed 1, test
  seed 2: tuning uses dev only, tables are reported on test), textured from a real photo of ../shared/data/old_photos
  (photo k mod 5, fitted by eos), rendered at (yaw, pitch) = (0,0) (20,0) (40,0) (60,0) (0,15) (0,-15) degrees,
  512 px, plain gradient background;
- every method gets the same detected 68 landmarks (`msma.landmarks.detect_faces`, detector "auto") of the render;
- score (NoW): the identity-only (neutral) mesh in mm is aligned to the ground-truth neutral SFM mesh by a
  similarity transform on the 51 inner iBUG landmarks (49 have an SFM vertex), refined by rigid ICP; the error is
  the distance from every ground-truth point within 95 mm of the nose tip to the predicted surface (mean / median);
- rows: the untouched mean ICT face, each `Reconstructor` method, eos fitting the SFM itself on the same 68
  landmarks (an in-model peer: it fits the very model the faces come from), the SFM mean (reference), and
  "several photos": all 6 views of a subject fitted with one shared identity (`Reconstructor.reconstruct_person`).
Results: benchmarks/results/sfm_3d_<split>.json / .md (written only by this script).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sfm_faces import SFM_DIR, SurreyModel, photo_texture, render_face, sfm_available  # noqa: E402

from msma.benchmark3d import scan_error  # noqa: E402
from msma.face_model import MODEL_UNITS_TO_MM  # noqa: E402

VIEWS = ((0, 0), (20, 0), (40, 0), (60, 0), (0, 15), (0, -15))
SPLIT_SEEDS = {"dev": 1, "test": 2}
TEXTURE_PHOTOS = ("Adele_crop.png", "Julia_Roberts_crop.png", "Justin_Timberlake_crop.png", "Paris_Hilton_crop.png",
                  "Blake_Lively.jpg")
NEUTRAL_LIMIT = 0.15  # the accuracy issue's bound on every expression weight of a neutral face
DEFAULT_METHODS = ("mean", "network", "network+refine", "fitting", "eos", "sfm-mean")


def load_textures(sfm: SurreyModel) -> list[np.ndarray]:
    from msma.image_io import load_image
    from msma.landmarks import detect_faces

    folder = ROOT.parent / "shared" / "data" / "old_photos"
    textures = []
    for name in TEXTURE_PHOTOS:
        photo = load_image(folder / name)
        faces = detect_faces(photo)
        if faces:
            textures.append(photo_texture(sfm, photo, faces[0].landmarks68))
    return textures


class EosPeer:
    """eos fitting the SFM shape (+ its 6 expression blendshapes) to 68 landmarks; returns the neutral SFM shape."""

    def __init__(self, sfm: SurreyModel) -> None:
        import eos

        self.sfm = sfm
        self.mapper = eos.core.LandmarkMapper(str(SFM_DIR / "ibug_to_sfm.txt"))
        self.edges = eos.morphablemodel.load_edge_topology(str(SFM_DIR / "sfm_3448_edge_topology.json"))
        self.contour = eos.fitting.ContourLandmarks.load(str(SFM_DIR / "ibug_to_sfm.txt"))
        self.model_contour = eos.fitting.ModelContour.load(str(SFM_DIR / "sfm_model_contours.json"))

    def __call__(self, image: np.ndarray, landmarks68: np.ndarray) -> np.ndarray:
        import eos

        lms = [eos.core.Landmark(str(i + 1), [float(x), float(y)]) for i, (x, y) in enumerate(landmarks68)]
        h, w = image.shape[:2]
        _, _, shape_coeffs, _ = eos.fitting.fit_shape_and_pose(
            self.sfm.eos_model, lms, self.mapper, w, h, self.edges, self.contour, self.model_contour)
        return self.sfm.shape(np.asarray(shape_coeffs))


def subject_shape(sfm: SurreyModel, split: str, subject: int) -> tuple[np.ndarray, np.random.Generator, dict]:
    """Subject ``subject`` of a split: its SFM shape (mm), the generator its views draw from, its ground truth."""
    rng = np.random.default_rng([SPLIT_SEEDS[split], subject])
    truth = sfm.shape(rng.normal(size=sfm.n_modes))
    gt = {"points": sfm.dense(truth)[::4], "nose": truth[sfm.nose_tip], "landmarks": truth[sfm.inner_vertices]}
    return truth, rng, gt


def subject_views(sfm: SurreyModel, textures: list[np.ndarray], split: str, subject: int,
                  distance_mm: float = 600.0, flip_detector: bool = False):
    """Ground truth of a subject and, for each of `VIEWS`, (view name, render, largest detection or None, the
    render's signed yaw in degrees)."""
    from msma.landmarks import detect_faces

    truth, rng, gt = subject_shape(sfm, split, subject)
    views = []
    for yaw, pitch in VIEWS:
        sign = 1 if rng.random() < 0.5 else -1  # turn left or right
        image = render_face(sfm, truth, textures[subject % len(textures)], sign * yaw, pitch,
                            seed=SPLIT_SEEDS[split] * 1000 + subject, distance_mm=distance_mm).image
        found = detect_faces(image, flip_test=flip_detector)
        views.append((f"yaw{yaw}_pitch{pitch}", image, found[0] if found else None, float(sign * yaw)))
    return gt, views


def score_ict(model, neutral_mm: np.ndarray, gt: dict, sfm: SurreyModel) -> dict:
    lm = model.landmarks68.cpu().numpy()
    skin_faces = model.triangles.cpu().numpy()[model.skin_triangles.cpu().numpy()]
    return scan_error(neutral_mm, skin_faces, gt["points"], gt["nose"], pred_region=model.face_vertices.cpu().numpy(),
                      scan_landmarks=gt["landmarks"], pred_landmarks=neutral_mm[lm[sfm.inner_ibug]],
                      pred_nose_tip=neutral_mm[lm[30]], similarity=True).as_dict()


def score_sfm(vertices_mm: np.ndarray, gt: dict, sfm: SurreyModel) -> dict:
    return scan_error(vertices_mm, sfm.faces, gt["points"], gt["nose"], scan_landmarks=gt["landmarks"],
                      pred_landmarks=vertices_mm[sfm.inner_vertices], pred_nose_tip=vertices_mm[sfm.nose_tip],
                      similarity=True).as_dict()


def run(split: str, n_subjects: int, methods: tuple[str, ...], multiview: bool = True,
        weights: str | None = None, flip_test: bool = False, flip_detector: bool = False,
        fit_settings: dict | None = None) -> dict:
    """``weights``: network checkpoint of the network methods (None: the shipped one); ``flip_test``: the
    network's flip test-time augmentation (`Reconstructor` ``flip_test``); ``flip_detector``: the detector's
    (`msma.landmarks.flip`), for every method and eos; ``fit_settings``: changes from the default
    `LandmarkFitSettings` for every method that fits (dev experiments)."""
    from msma.api import Reconstructor
    from msma.fit import LandmarkFitSettings

    sfm = SurreyModel()
    textures = load_textures(sfm)
    reconstructors = {m: Reconstructor(method=m, weights=weights, flip_test=flip_test,
                                       landmark_settings=LandmarkFitSettings(**(fit_settings or {})))
                      for m in methods if m not in ("mean", "eos", "sfm-mean")}
    any_rec = next(iter(reconstructors.values()), None) or Reconstructor(method="fitting")
    model = any_rec.model
    mean_mm = model.mean.cpu().numpy().astype(np.float64) * MODEL_UNITS_TO_MM
    eos_peer = EosPeer(sfm) if "eos" in methods else None
    rows: list[dict] = []
    failures: list[dict] = []
    shapes: dict[str, list[tuple[int, np.ndarray]]] = {m: [] for m in reconstructors}  # (subject, neutral shape)
    seed = SPLIT_SEEDS[split]
    for subject in tqdm(range(n_subjects), desc=f"SFM {split} subjects"):
        gt, views = subject_views(sfm, textures, split, subject, flip_detector=flip_detector)
        renders, detections = [], []
        for view, image, detection, true_yaw in views:
            if detection is None:
                failures.append({"subject": subject, "view": view, "error": "no face detected"})
                continue
            renders.append((view, image))
            detections.append(detection)
            for method in methods:
                start = time.perf_counter()
                pose = {}
                if method == "mean":
                    err = score_ict(model, mean_mm, gt, sfm)
                elif method == "sfm-mean":
                    err = score_sfm(sfm.mean, gt, sfm)
                elif method == "eos":
                    err = score_sfm(eos_peer(image, detection.landmarks68), gt, sfm)
                else:
                    face = reconstructors[method].reconstruct_face(image, detection, texture=False)
                    err = score_ict(model, face.neutral_vertices * MODEL_UNITS_TO_MM, gt, sfm)
                    shapes[method].append((subject, face.neutral_vertices))
                    # the renders share the model's Euler convention; the aligned crop only removes roll
                    pose = {"yaw_error_deg": abs(face.pose.yaw - true_yaw),
                            # the SFM faces are neutral: any expression weight is an error
                            "max_expression_weight": float(
                                model.clamp_expression(face.coefficients.expression).max())}
                rows.append({"subject": subject, "view": view, "method": method, "detector": detection.detector,
                             "seconds": time.perf_counter() - start, **err, **pose})
        if multiview and len(renders) > 1:
            for method, rec in reconstructors.items():
                if method == "network":
                    continue
                start = time.perf_counter()
                faces = rec.reconstruct_person_from_detections([im for _, im in renders], detections, texture=False,
                                                               method=method)
                err = score_ict(model, faces[0].neutral_vertices * MODEL_UNITS_TO_MM, gt, sfm)
                rows.append({"subject": subject, "view": "all", "method": f"{method} (all views, one identity)",
                             "detector": "-", "seconds": time.perf_counter() - start, **err})
    return {"split": split, "seed": seed, "n_subjects": n_subjects, "views": VIEWS, "rows": rows,
            "failures": failures, "identity_separation": identity_separation(shapes, model)}


def identity_separation(shapes: dict[str, list[tuple[int, np.ndarray]]], model) -> dict[str, dict]:
    """Same-person vs different-person ROC AUC of the Compare tab's identity distance between the single-photo
    neutral shapes of every two views (same subject: positive): how much a method's shape is the person's rather
    than the view's. A dev-split proxy for benchmarks/identity_roc.py, whose real-photo pairs stay held out (these
    pairs differ in pose and lighting only, not in expression, age or camera)."""
    from identity_roc import roc_auc

    from msma.compare import identity_distance

    region = model.face_vertices.cpu().numpy()
    out = {}
    for method, found in shapes.items():
        if len({s for s, _ in found}) < 2:
            continue
        scores, labels = [], []
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                scores.append(-identity_distance(found[i][1], found[j][1], region_vertex_indices=region).mean_mm)
                labels.append(found[i][0] == found[j][0])
        labels_array, scores_array = np.array(labels), np.array(scores)
        out[method] = {"auc": roc_auc(scores_array, labels_array), "n_same": int(labels_array.sum()),
                       "n_different": int((~labels_array).sum()),
                       "same_mm": float(-scores_array[labels_array].mean()),
                       "different_mm": float(-scores_array[~labels_array].mean())}
    return out


def _by_view(rows: list[dict], key: str) -> dict[str, list[float]]:
    """``key`` of each row, grouped by view in the rows' order."""
    grouped: dict[str, list[float]] = {}
    for r in rows:
        grouped.setdefault(r["view"], []).append(r[key])
    return grouped


def summarise(result: dict) -> dict:
    rows = result["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    summary = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        summary[m] = {"n": len(mine), "mean_mm": float(np.mean([r["mean_mm"] for r in mine])),
                      "median_mm": float(np.mean([r["median_mm"] for r in mine])),
                      "seconds": float(np.mean([r["seconds"] for r in mine])),
                      "per_view": {v: float(np.mean(e)) for v, e in _by_view(mine, "mean_mm").items()}}
        if any("yaw_error_deg" in r for r in mine):
            summary[m]["yaw_error_deg"] = {v: float(np.mean(e)) for v, e in _by_view(mine, "yaw_error_deg").items()}
        if any("max_expression_weight" in r for r in mine):
            summary[m]["neutral"] = {v: {"largest_weight": float(np.mean(w)),
                                         "share_all_below_0.15": float(np.mean(np.array(w) <= NEUTRAL_LIMIT))}
                                     for v, w in _by_view(mine, "max_expression_weight").items()}
    for ref in ("mean", "eos"):
        if ref not in summary:
            continue
        # ratio on the same (subject, view) pairs; multi-view rows compare with the reference's subject mean
        ref_rows = {(r["subject"], r["view"]): r["mean_mm"] for r in rows if r["method"] == ref}
        ref_subject = {s: np.mean([v for (ss, _), v in ref_rows.items() if ss == s]) for s in {k[0] for k in ref_rows}}
        for m in methods:
            pairs = [(r["mean_mm"], ref_rows.get((r["subject"], r["view"]), ref_subject.get(r["subject"])))
                     for r in rows if r["method"] == m]
            pairs = [(a, b) for a, b in pairs if b is not None]
            summary[m][f"vs_{ref}"] = float(np.mean([a for a, _ in pairs]) / np.mean([b for _, b in pairs]))
    return summary


def markdown(result: dict, summary: dict) -> str:
    views = [f"yaw{y}_pitch{p}" for y, p in VIEWS]
    lines = [f"# SFM out-of-model benchmark ({result['split']} split, seed {result['seed']}, "
             f"{result['n_subjects']} subjects x {len(VIEWS)} views)", "",
             "NoW-style: similarity on the inner landmarks + rigid ICP, ground-truth points within 95 mm of the nose "
             "tip to the predicted neutral surface. Produced by `benchmarks/sfm_3d.py`.", "",
             "| method | mean mm | median mm | vs mean face | vs eos | " + " | ".join(views) + " | s / photo |",
             "|---" * (6 + len(views)) + "|"]
    for m, s in summary.items():
        per_view = " | ".join(f"{s['per_view'][v]:.2f}" if v in s["per_view"] else "-" for v in views)
        lines.append(f"| {m} | {s['mean_mm']:.3f} | {s['median_mm']:.3f} | {s.get('vs_mean', float('nan')):.3f} | "
                     f"{s.get('vs_eos', float('nan')):.3f} | {per_view} | {s['seconds']:.2f} |")
    posed = {m: s["yaw_error_deg"] for m, s in summary.items() if "yaw_error_deg" in s}
    if posed:
        lines += ["", "Head yaw error, |estimated - rendered| degrees (mean over subjects):", "",
                  "| method | " + " | ".join(views) + " |", "|---" * (1 + len(views)) + "|"]
        lines += [f"| {m} | " + " | ".join(f"{e[v]:.1f}" if v in e else "-" for v in views) + " |"
                  for m, e in posed.items()]
    neutral = {m: s["neutral"] for m, s in summary.items() if "neutral" in s}
    if neutral:
        lines += ["", f"Expression weights on these neutral faces: largest weight (mean over subjects) / share of "
                  f"photos with every weight <= {NEUTRAL_LIMIT}:", "",
                  "| method | " + " | ".join(views) + " |", "|---" * (1 + len(views)) + "|"]
        lines += [f"| {m} | " + " | ".join(f"{e[v]['largest_weight']:.3f} / {e[v]['share_all_below_0.15']:.2f}"
                                             if v in e else "-" for v in views) + " |" for m, e in neutral.items()]
    separation = result.get("identity_separation") or {}
    if separation:
        lines += ["", "Identity separation: the Compare tab's distance between the single-photo neutral shapes of two "
                  "views, same subject vs different subjects (ROC AUC; mean distance in mm):", "",
                  "| method | AUC | same subject mm | different subjects mm | pairs same / different |",
                  "|---|---|---|---|---|"]
        lines += [f"| {m} | {e['auc']:.3f} | {e['same_mm']:.3f} | {e['different_mm']:.3f} | "
                  f"{e['n_same']} / {e['n_different']} |" for m, e in separation.items()]
    if result["failures"]:
        lines += ["", f"Views with no detected face: {len(result['failures'])}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=tuple(SPLIT_SEEDS), default="test")
    parser.add_argument("--subjects", type=int, default=12)
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--no-multiview", action="store_true")
    parser.add_argument("--name", default=None, help="result file stem (default sfm_3d_<split>)")
    parser.add_argument("--weights", default=None, help="network checkpoint of the network methods (default: shipped)")
    parser.add_argument("--flip-test", action="store_true",
                        help="network methods: average with the mirrored answer for the flipped crop")
    parser.add_argument("--flip-detector", action="store_true",
                        help="the detector's flip test-time augmentation (every method and eos get its points)")
    parser.add_argument("--fit-settings", type=json.loads, default=None,
                        help='JSON changes from the default LandmarkFitSettings, e.g. \'{"identity_prior": 20}\' (dev)')
    args = parser.parse_args()
    if not sfm_available():
        print(f"SFM files not found in {SFM_DIR} (build machines only)")
        return 1
    result = run(args.split, args.subjects, tuple(args.methods.split(",")), multiview=not args.no_multiview,
                 weights=args.weights, flip_test=args.flip_test, flip_detector=args.flip_detector,
                 fit_settings=args.fit_settings)
    result["weights"], result["flip_test"], result["flip_detector"] = args.weights, args.flip_test, args.flip_detector
    result["fit_settings"] = args.fit_settings
    summary = summarise(result)
    result["summary"] = summary
    out = ROOT / "benchmarks" / "results"
    stem = args.name or f"sfm_3d_{args.split}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    report = markdown(result, summary)
    (out / f"{stem}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Identity from a video, out of model: Surrey Face Model faces turning their head, tracked, NoW-scored.

    .venv/bin/python benchmarks/sfm_video.py --split test --subjects 8   # -> benchmarks/results/sfm_video_test.*
    .venv/bin/python benchmarks/sfm_video.py --split dev --subjects 8    # choices (dev only)

Each subject of `benchmarks/sfm_3d.py`'s split (same shapes, textures and scoring) is rendered as a 3 s clip at
10 fps: the head turns to yaw +45 and -45 degrees and back (yaw = 45 sin, pitch = 8 sin at twice the rate). The clip
goes through `msma.track.FaceTracker` (mediapipe's face mesh in video mode, keyframes, one identity per face), and the
identity's neutral shape is scored as in sfm_3d.py. Rows, all on the same clips:
- the untouched mean ICT face;
- the first frame alone (frontal) with the photo fitter (`Reconstructor`, method "fitting"): what one photo gives;
- the tracker's identity with ``TrackSettings.identity="still"`` (the photo fitter, one identity shared by the
  keyframes: the default) and ``"tracker"`` (the earlier `fit_identity` with the tracker's weak identity prior).
Results: benchmarks/results/sfm_video_<split>.json / .md (written only by this script).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sfm_3d import SPLIT_SEEDS, load_textures, score_ict, subject_shape  # noqa: E402
from sfm_faces import SFM_DIR, SurreyModel, render_face, sfm_available  # noqa: E402

from msma.face_model import MODEL_UNITS_TO_MM  # noqa: E402

FRAMES, FPS = 30, 10.0
YAW_DEG, PITCH_DEG = 45.0, 8.0


def clip_poses() -> tuple[np.ndarray, np.ndarray]:
    """(yaw, pitch) degrees of every frame: a turn to each side and back, with a nod."""
    phase = np.linspace(0, 2 * np.pi, FRAMES)
    return YAW_DEG * np.sin(phase), PITCH_DEG * np.sin(2 * phase)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=tuple(SPLIT_SEEDS), default="test")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--keyframes", type=int, nargs="+", default=[5],
                        help="keyframe counts of the default identity to report (the first is the default's row)")
    parser.add_argument("--name", default=None, help="result file stem (default sfm_video_<split>)")
    args = parser.parse_args()
    if not sfm_available():
        print(f"SFM files not found in {SFM_DIR} (build machines only)")
        return 1
    from msma.api import Reconstructor
    from msma.landmarks import detect_faces
    from msma.track import FaceTracker, TrackSettings
    from msma.video import VideoFrame

    sfm = SurreyModel()
    textures = load_textures(sfm)
    rec = Reconstructor(method="fitting", photometric=False)
    model = rec.model
    mean_mm = model.mean.cpu().numpy().astype(np.float64) * MODEL_UNITS_TO_MM

    def neutral_mm(identity: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            ident = torch.as_tensor(np.asarray(identity), dtype=torch.float32)[None]
            return model(ident, torch.zeros(1, model.n_expression))[0].numpy() * MODEL_UNITS_TO_MM

    variants = {f"video, photo fitter over {k} keyframes" + (" (default)" if i == 0 else ""):
                TrackSettings(identity="still", keyframes=k, texture=False) for i, k in enumerate(args.keyframes)}
    variants["video, earlier tracker identity (fit_identity)"] = TrackSettings(identity="tracker", texture=False)
    yaws, pitches = clip_poses()
    rows: list[dict] = []
    for subject in tqdm(range(args.subjects), desc=f"SFM {args.split} clips"):
        truth, _, gt = subject_shape(sfm, args.split, subject)
        seed = SPLIT_SEEDS[args.split] * 1000 + subject
        frames = [VideoFrame(i, i / FPS, render_face(sfm, truth, textures[subject % len(textures)], y, p,
                                                     seed=seed).image)
                  for i, (y, p) in enumerate(zip(yaws, pitches))]
        rows.append({"subject": subject, "method": "mean", **score_ict(model, mean_mm, gt, sfm), "seconds": 0.0})
        start = time.perf_counter()
        found = detect_faces(frames[0].image)
        if found:
            face = rec.reconstruct_face(frames[0].image, found[0], texture=False)
            rows.append({"subject": subject, "method": "first frame alone, photo fitter",
                         **score_ict(model, face.neutral_vertices * MODEL_UNITS_TO_MM, gt, sfm),
                         "seconds": time.perf_counter() - start})
        for name, settings in variants.items():
            start = time.perf_counter()
            result = FaceTracker(rec, settings).track_frames(frames, progress=False)
            if not result.faces:
                continue
            track = result.faces[0]
            rows.append({"subject": subject, "method": name, **score_ict(model, neutral_mm(track.identity), gt, sfm),
                         "seconds": time.perf_counter() - start,
                         "keyframe_yaws": [float(yaws[k]) for k in track.keyframes]})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ref = {r["subject"]: r["mean_mm"] for r in rows if r["method"] == "mean"}
    summary = {}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        summary[m] = {"n": len(mine), "mean_mm": float(np.mean([r["mean_mm"] for r in mine])),
                      "median_mm": float(np.mean([r["median_mm"] for r in mine])),
                      "vs_mean": float(np.mean([r["mean_mm"] for r in mine])
                                       / np.mean([ref[r["subject"]] for r in mine])),
                      "seconds": float(np.mean([r["seconds"] for r in mine]))}
    out = ROOT / "benchmarks" / "results"
    stem = args.name or f"sfm_video_{args.split}"
    (out / f"{stem}.json").write_text(json.dumps({"split": args.split, "subjects": args.subjects, "frames": FRAMES,
                                                  "fps": FPS, "yaw_deg": YAW_DEG, "pitch_deg": PITCH_DEG,
                                                  "rows": rows, "summary": summary}, indent=1))
    lines = [f"# Identity from a video, SFM {args.split} split ({args.subjects} subjects) — benchmarks/sfm_video.py",
             "",
             f"{FRAMES} frames at {FPS:.0f} fps, yaw {YAW_DEG:.0f} sin, pitch {PITCH_DEG:.0f} sin(2x); NoW-style error "
             "of the identity's neutral shape (as benchmarks/sfm_3d.py).", "",
             "| method | mean mm | median mm | vs mean face | s / clip |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {s['mean_mm']:.3f} | {s['median_mm']:.3f} | {s['vs_mean']:.3f} | {s['seconds']:.2f} |"
              for m, s in summary.items()]
    report = "\n".join(lines) + "\n"
    (out / f"{stem}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

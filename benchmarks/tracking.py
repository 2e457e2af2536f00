"""Video tracking benchmark: speed at 640x480, and accuracy / jitter / lag on synthetic clips with known curves.

    .venv/bin/python benchmarks/tracking.py                   # -> benchmarks/results/tracking.json + tracking.md
    .venv/bin/python benchmarks/tracking.py --clips 2 --frames 90 --speed-frames 150   # quicker

Synthetic clips: ICT faces (random identity from `msma.synth.SyntheticFaceGenerator`'s prior, held-out seed 2000)
with real skin albedos unwrapped from photos (`msma.synth.build_texture_bank` on examples/*.jpg and, when present,
../shared/data/faces_in_the_wild), the generator's iris / hair decoration and lighting, rendered 2x supersampled at
640x480 over real photo crops in which no face is detected (../shared/data, else gradients), plus sensor noise.
Each clip: 1 s still and neutral, 3 s of animated expressions (2-3 of jawOpen, smile, blink, brow raise, pucker,
funnel, brow down, cheek puff as smooth pulses) with head motion (yaw +-20, pitch +-8, roll +-5 degrees), 1 s still
at a held expression. The eyes do not rotate in the renders, so the true eyeLook weights and gaze are 0.

Metrics (all on frames where the face was tracked):
* expression MAE: mean |w - w_true| over the 53 weights per frame, averaged; the neutral baseline predicts all 0
  (its MAE is mean |w_true|). Target: tracker MAE <= 0.5 x baseline.
* head-pose error: mean |angle - true| per axis, degrees.
* jitter: mean |second difference| of the 53 weights on the still segments (first 10 frames of each skipped),
  raw per-frame fit vs One-Euro smoothed. Target: >= 3x lower smoothed.
* lag: the delay (ms) maximising the cross-correlation of each animated weight's smoothed track with the truth,
  minus the same for the raw track, over the moving segment.
* speed: on a 640x480 clip, per frame: landmarks (mediapipe video mode), fit (pose + expression + gaze) and
  smoothing; "tracking fps" = frames / (landmarks + fit + smoothing). Decoding (PyAV), the one-off identity and
  texture estimate, and the MP4 preview are measured and reported separately, not in tracking fps.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from msma.face_model import FaceModel  # noqa: E402
from msma.video import VideoFrame  # noqa: E402

FPS = 30.0
SIZE = (640, 480)
FOCAL = 1100.0
EXPRESSIONS = {  # channel groups animated together (ICT names)
    "jawOpen": ["jawOpen"], "smile": ["mouthSmile_L", "mouthSmile_R"], "blink": ["eyeBlink_L", "eyeBlink_R"],
    "browUp": ["browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"], "pucker": ["mouthPucker"],
    "funnel": ["mouthFunnel"], "browDown": ["browDown_L", "browDown_R"], "cheekPuff": ["cheekPuff_L", "cheekPuff_R"],
}


# ---------------------------------------------------------------------------------------------- clip synthesis
def curves(rng: np.random.Generator, names: list[str], n: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(n, 53) weights, (n, 3) angles (radians) and the segment layout of one clip."""
    still_a, still_b = int(round(n * 0.2)), int(round(n * 0.8))
    t = np.arange(n) / FPS
    weights = np.zeros((n, len(names)))
    groups = rng.choice(list(EXPRESSIONS), size=int(rng.integers(2, 4)), replace=False)
    moving = np.arange(still_a, still_b)
    for g in groups:
        peak = rng.uniform(0.5, 0.9)
        for _ in range(int(rng.integers(1, 3))):
            length = int(rng.uniform(0.5, 1.2) * FPS)
            start = int(rng.integers(still_a, max(still_a + 1, still_b - length)))
            pulse = peak * 0.5 * (1 - np.cos(2 * np.pi * np.arange(length) / length))
            for name in EXPRESSIONS[g]:
                weights[start : start + length, names.index(name)] = np.maximum(
                    weights[start : start + length, names.index(name)], pulse)
    held = groups[0]
    for name in EXPRESSIONS[held]:
        ramp = np.clip((np.arange(n) - (still_b - 10)) / 10, 0, 1) * 0.6
        weights[:, names.index(name)] = np.maximum(weights[:, names.index(name)], ramp)
    angles = np.zeros((n, 3))
    phase = rng.uniform(0, 2 * np.pi, 3)
    rest = rng.uniform(-6, 6, 3)
    envelope = np.zeros(n)
    envelope[moving] = np.sin(np.pi * (moving - still_a) / (still_b - still_a))
    for axis, amplitude, period in ((1, 20.0, 2.5), (0, 8.0, 1.7), (2, 5.0, 3.1)):
        angles[:, axis] = np.radians(rest[axis] + amplitude * envelope * np.sin(2 * np.pi * t / period + phase[axis]))
    layout = {"still": [[10, still_a], [still_b + 10, n]], "moving": [still_a, still_b],
              "animated": sorted({name for g in groups for name in EXPRESSIONS[g]}), "held": str(held)}
    return weights, angles, layout


def backgrounds(rng: np.random.Generator, k: int) -> list[np.ndarray]:
    """k 640x480 crops of real photos in which mediapipe finds no face (gradients when no photos are here)."""
    import cv2
    from PIL import Image

    from msma.landmarks import detect_faces

    photos = sorted(p for d in ("dlib_faces", "old_photos", "faces_in_the_wild") for p in (SHARED / d).glob("*.jpg"))
    out = []
    for _ in range(200):
        if len(out) == k or not photos:
            break
        img = np.asarray(Image.open(photos[int(rng.integers(len(photos)))]).convert("RGB"))
        h, w = img.shape[:2]
        cw = int(min(w, h * 4 / 3) * rng.uniform(0.3, 0.7))
        ch = int(cw * 3 / 4)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = cv2.resize(img[y0 : y0 + ch, x0 : x0 + cw], SIZE, interpolation=cv2.INTER_AREA)
        if not detect_faces(crop, detector="mediapipe"):
            out.append(crop)
    while len(out) < k:
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        ramp = np.linspace(0, 1, SIZE[0])[None, :, None]
        out.append(np.broadcast_to(c0 + (c1 - c0) * ramp, (SIZE[1], SIZE[0], 3)).astype(np.uint8).copy())
    return out


def texture_bank(model: FaceModel) -> np.ndarray:
    from PIL import Image

    from msma.synth import texture_bank_from_photos

    paths = sorted((ROOT / "examples").glob("*.jpg")) + sorted((SHARED / "faces_in_the_wild").glob("img1*.jpg"))[:4]
    return texture_bank_from_photos(model, [np.asarray(Image.open(p).convert("RGB")) for p in paths])


def render_clip(model: FaceModel, generator, index: int, weights: np.ndarray, angles: np.ndarray,
                background: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Frames of one synthetic clip: the generator's face ``index`` posed by the curves, 640x480 uint8 RGB."""
    from msma.synth_video import FaceAppearance, FrameRenderer

    renderer = FrameRenderer(model, SIZE, FOCAL, supersample=2)
    face = FaceAppearance.from_generator(generator, index)
    return [renderer.render(face, w, a, background, rng=rng)[0] for w, a in zip(weights, angles)]


# ---------------------------------------------------------------------------------------------- metrics
def lag_ms(truth: np.ndarray, estimate: np.ndarray, max_shift: int = 12) -> float:
    """Delay (ms) of ``estimate`` behind ``truth`` maximising their correlation (1-D, same sampling)."""
    a = truth - truth.mean()
    best, best_corr = 0, -np.inf
    for shift in range(-max_shift, max_shift + 1):
        b = np.roll(estimate, -shift) - estimate.mean()
        valid = slice(max_shift, len(a) - max_shift)
        corr = float((a[valid] * b[valid]).sum())
        if corr > best_corr:
            best, best_corr = shift, corr
    return 1000.0 * best / FPS


def clip_metrics(face, weights: np.ndarray, angles: np.ndarray, layout: dict, names: list[str]) -> dict:
    valid = face.valid
    gt = weights[valid]
    mae = lambda est: float(np.abs(est[valid] - gt).mean())  # noqa: E731
    still = np.concatenate([np.arange(a, b) for a, b in layout["still"]])

    def jitter(est: np.ndarray) -> float:
        values = []
        for a, b in layout["still"]:
            seg = est[a:b][valid[a:b]]
            if len(seg) > 2:
                values.append(np.abs(np.diff(seg, 2, axis=0)).mean())
        return float(np.mean(values))

    a, b = layout["moving"]
    lags_smooth, lags_raw = [], []
    for name in layout["animated"]:
        k = names.index(name)
        if np.ptp(weights[a:b, k]) > 0.2:
            lags_smooth.append(lag_ms(weights[a:b, k], face.weights[a:b, k]))
            lags_raw.append(lag_ms(weights[a:b, k], face.weights_raw[a:b, k]))
    look = [k for k, n in enumerate(names) if n.startswith("eyeLook")]
    other = [k for k in range(len(names)) if k not in look]
    pose_bias = np.degrees(face.angles[valid] - angles[valid]).mean(0)
    pose_err = np.degrees(np.abs(face.angles[valid] - angles[valid])).mean(0)
    pose_err_raw = np.degrees(np.abs(face.angles_raw[valid] - angles[valid])).mean(0)
    gaze = np.degrees(np.abs(face.gaze[valid])).mean()
    return {
        "tracked_fraction": float(valid.mean()),
        "mae_smoothed": mae(face.weights), "mae_raw": mae(face.weights_raw),
        "mae_neutral_baseline": float(np.abs(gt).mean()),
        "mae_without_eye_look": float(np.abs(face.weights[valid][:, other] - gt[:, other]).mean()),
        "mae_neutral_baseline_without_eye_look": float(np.abs(gt[:, other]).mean()),
        "eye_look_mean_weight": float(face.weights[valid][:, look].mean()),
        "mae_animated_channels": float(np.abs(face.weights[valid][:, [names.index(n) for n in layout["animated"]]]
                                              - gt[:, [names.index(n) for n in layout["animated"]]]).mean()),
        "pose_error_deg": {"pitch": float(pose_err[0]), "yaw": float(pose_err[1]), "roll": float(pose_err[2])},
        "pose_bias_deg": {"pitch": float(pose_bias[0]), "yaw": float(pose_bias[1]), "roll": float(pose_bias[2])},
        "pose_error_raw_deg": {"pitch": float(pose_err_raw[0]), "yaw": float(pose_err_raw[1]),
                               "roll": float(pose_err_raw[2])},
        "jitter_still_raw": jitter(face.weights_raw), "jitter_still_smoothed": jitter(face.weights),
        "still_frames": int(len(still)),
        "lag_ms_smoothed_minus_raw": float(np.mean(lags_smooth) - np.mean(lags_raw)) if lags_smooth else None,
        "gaze_abs_error_deg": float(gaze),
        "animated": layout["animated"],
    }


# ---------------------------------------------------------------------------------------------- runs
def speed(tracker, frames_n: int) -> dict:
    """Per-frame cost on a 640x480 clip of the example portrait drifting over a background."""
    from PIL import Image

    from msma.track_export import export_overlay_mp4
    from msma.video import VideoWriter, open_video

    img = Image.open(ROOT / "examples" / "01_portrait.jpg").convert("RGB")
    base = np.asarray(img.resize((round(img.width * 480 / img.height), 480)))
    rng = np.random.default_rng(0)
    frames = []
    for i in range(frames_n):
        frame = np.full((480, 640, 3), (60, 90, 160), np.uint8)
        x = int((640 - base.shape[1]) / 2 + 40 * np.sin(i / 15))
        x0, x1 = max(0, x), min(640, x + base.shape[1])
        frame[:, x0:x1] = base[:, x0 - x : x1 - x]
        frames.append(np.clip(frame + rng.normal(0, 2, frame.shape), 0, 255).astype(np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "speed.mp4"
        with VideoWriter(clip, FPS, 640, 480) as writer:
            for f in frames:
                writer.write(f)
        start = time.perf_counter()
        with open_video(clip) as video:
            decoded = [f.image for f in video]
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        result = tracker.track_frames((VideoFrame(i, i / FPS, f) for i, f in enumerate(decoded)), progress=False)
        wall = time.perf_counter() - start
        start = time.perf_counter()
        export_overlay_mp4(result, clip, Path(tmp) / "preview.mp4")
        preview_s = time.perf_counter() - start
    t, n = result.timings, result.n_frames
    return {
        "frames": n, "resolution": "640x480",
        "landmarks_ms_per_frame": 1000 * t["landmarks"] / n, "fit_ms_per_frame": 1000 * t["fit"] / n,
        "smoothing_ms_per_frame": 1000 * t["smoothing"] / n, "tracking_fps": result.tracking_fps(),
        "decode_ms_per_frame": 1000 * decode_s / n, "identity_s": t["identity"], "texture_s": t["texture"],
        "end_to_end_fps_without_decode": n / wall, "preview_ms_per_frame": 1000 * preview_s / n,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=150, help="frames per synthetic clip (30 fps)")
    parser.add_argument("--speed-frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="tracking")
    parser.add_argument("--points", choices=("mesh", "ibug68"), default="mesh",
                        help="the fitted points: mediapipe's 468 mesh points on the ICT surface, or the 68 landmarks")
    args = parser.parse_args()

    from msma.api import Reconstructor
    from msma.synth import SyntheticFaceGenerator
    from msma.track import FaceTracker, TrackSettings

    torch.set_num_threads(1)
    reconstructor = Reconstructor()
    model = reconstructor.model
    settings = TrackSettings(largest=True, points=args.points)
    report: dict = {"machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                                "note": "2 CPU cores shared with other jobs"},
                    "settings": {"smoothing": vars(settings.smoothing), "rest_lag_s": settings.smoothing.rest_lag_s,
                                 "expression_prior": settings.expression_prior, "expression_l1": settings.expression_l1,
                                 "symmetry_prior": settings.symmetry_prior, "robust_scale": settings.robust_scale,
                                 "fit_iterations": settings.fit_iterations, "points": settings.points,
                                 "identity_method": reconstructor.method, "keyframes": settings.keyframes}}
    print("speed ...", flush=True)
    report["speed"] = speed(FaceTracker(reconstructor, TrackSettings(largest=True, points=args.points)),
                            args.speed_frames)
    print(json.dumps(report["speed"], indent=1), flush=True)

    print("texture bank ...", flush=True)
    bank = texture_bank(model)
    rng = np.random.default_rng(args.seed)
    generator = SyntheticFaceGenerator(model, seed=args.seed, texture_bank=bank if len(bank) else None,
                                       bank_probability=1.0, augment=False)
    names = list(model.expression_names)
    bgs = backgrounds(rng, args.clips)
    clips = []
    tracker = FaceTracker(reconstructor, TrackSettings(largest=True, texture=False, points=args.points))
    for c in range(args.clips):
        weights, angles, layout = curves(rng, names, args.frames)
        frames = render_clip(model, generator, c, weights, angles, bgs[c], rng)
        result = tracker.track_frames((VideoFrame(i, i / FPS, f) for i, f in enumerate(frames)), progress=False)
        metrics = clip_metrics(result.faces[0], weights, angles, layout, names)
        metrics["tracking_fps"] = result.tracking_fps()
        clips.append(metrics)
        print(f"clip {c}: {json.dumps(metrics)}", flush=True)
        if c == 0:
            artifacts = ROOT / "artifacts"
            artifacts.mkdir(exist_ok=True)
            from PIL import Image

            Image.fromarray(np.concatenate([frames[5], frames[len(frames) // 2]], 1)).save(artifacts /
                                                                                          "tracking_synthetic.png")

    def mean(key, sub=None):
        values = [c[key][sub] if sub else c[key] for c in clips if (c[key] if not sub else c[key][sub]) is not None]
        return float(np.mean(values)) if values else None

    summary = {
        "clips": args.clips, "frames_per_clip": args.frames, "texture_bank_faces": int(len(bank)),
        "real_backgrounds": bool(any((SHARED / d).is_dir() for d in ("dlib_faces", "old_photos"))),
        "tracked_fraction": mean("tracked_fraction"),
        "mae_smoothed": mean("mae_smoothed"), "mae_raw": mean("mae_raw"),
        "mae_neutral_baseline": mean("mae_neutral_baseline"),
        "mae_animated_channels": mean("mae_animated_channels"),
        "mae_without_eye_look": mean("mae_without_eye_look"),
        "mae_neutral_baseline_without_eye_look": mean("mae_neutral_baseline_without_eye_look"),
        "eye_look_mean_weight": mean("eye_look_mean_weight"),
        "pose_bias_deg": {k: mean("pose_bias_deg", k) for k in ("pitch", "yaw", "roll")},
        "pose_error_deg": {k: mean("pose_error_deg", k) for k in ("pitch", "yaw", "roll")},
        "jitter_still_raw": mean("jitter_still_raw"), "jitter_still_smoothed": mean("jitter_still_smoothed"),
        "lag_ms_smoothed_minus_raw": mean("lag_ms_smoothed_minus_raw"),
        "gaze_abs_error_deg": mean("gaze_abs_error_deg"),
    }
    summary["mae_ratio_to_baseline"] = summary["mae_smoothed"] / summary["mae_neutral_baseline"]
    summary["jitter_reduction"] = summary["jitter_still_raw"] / summary["jitter_still_smoothed"]
    report["synthetic"] = {"summary": summary, "clips": clips, "seed": args.seed}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{args.name}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    sp, sy = report["speed"], report["synthetic"]["summary"]
    pose = sy["pose_error_deg"]
    st = report["settings"]
    lines = [
        "# Video tracking benchmark", "",
        f"Written by `benchmarks/tracking.py` ({report['machine']['note']}; torch threads "
        f"{report['machine']['cpu_threads']}). Identity: `{st['identity_method']}` on {st['keyframes']} keyframes; "
        f"One-Euro min_cutoff {st['smoothing']['min_cutoff']} Hz, beta {st['smoothing']['beta']} "
        f"(rest time constant {1000 * st['rest_lag_s']:.0f} ms).", "",
        "## Speed (640x480)", "",
        "| stage | per frame |", "|---|---|",
        f"| landmarks (mediapipe, video mode) | {sp['landmarks_ms_per_frame']:.1f} ms |",
        f"| fit (pose + 53 weights + gaze) | {sp['fit_ms_per_frame']:.2f} ms |",
        f"| smoothing | {sp['smoothing_ms_per_frame']:.3f} ms |",
        f"| **tracking (the three above)** | **{sp['tracking_fps']:.0f} frames/s** |",
        f"| decode (PyAV, not included) | {sp['decode_ms_per_frame']:.1f} ms |",
        f"| preview MP4 (not included) | {sp['preview_ms_per_frame']:.1f} ms |", "",
        f"One-off per face: identity {sp['identity_s']:.1f} s, texture {sp['texture_s']:.1f} s. End to end without "
        f"decoding ({sp['frames']} frames, identity and texture included): "
        f"{sp['end_to_end_fps_without_decode']:.1f} frames/s.", "",
        f"## Synthetic clips ({sy['clips']} clips x {sy['frames_per_clip']} frames, seed "
        f"{report['synthetic']['seed']}; {sy['texture_bank_faces']} real skin albedos; real backgrounds: "
        f"{sy['real_backgrounds']})", "",
        "| metric | value |", "|---|---|",
        f"| frames tracked | {100 * sy['tracked_fraction']:.1f} % |",
        f"| expression MAE, smoothed (raw) | {sy['mae_smoothed']:.4f} ({sy['mae_raw']:.4f}) |",
        f"| neutral baseline MAE (all weights 0) | {sy['mae_neutral_baseline']:.4f} |",
        f"| **MAE / baseline** (target <= 0.5) | **{sy['mae_ratio_to_baseline']:.2f}** |",
        f"| MAE without the 8 gaze-driven eyeLook weights (baseline) | {sy['mae_without_eye_look']:.4f} "
        f"({sy['mae_neutral_baseline_without_eye_look']:.4f}) |",
        f"| mean eyeLook weight (truth 0) | {sy['eye_look_mean_weight']:.3f} |",
        f"| MAE on the animated channels only | {sy['mae_animated_channels']:.3f} |",
        f"| head-pose error pitch / yaw / roll | {pose['pitch']:.1f} / {pose['yaw']:.1f} / {pose['roll']:.1f} deg |",
        f"| head-pose bias (mean signed error) pitch / yaw / roll | {sy['pose_bias_deg']['pitch']:+.1f} / "
        f"{sy['pose_bias_deg']['yaw']:+.1f} / {sy['pose_bias_deg']['roll']:+.1f} deg |",
        f"| jitter on still segments raw -> smoothed | {sy['jitter_still_raw']:.4f} -> "
        f"{sy['jitter_still_smoothed']:.4f} |",
        f"| **jitter reduction** (target >= 3) | **{sy['jitter_reduction']:.1f}x** |",
        f"| lag added by smoothing (cross-correlation) | {sy['lag_ms_smoothed_minus_raw']:.0f} ms |",
        f"| gaze error (eyes fixed forward) | {sy['gaze_abs_error_deg']:.1f} deg |", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

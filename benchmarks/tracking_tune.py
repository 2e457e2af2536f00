"""Tune the tracker's fit on synthetic clips of a development seed (not the benchmark's reported seed 2000).

    .venv/bin/python benchmarks/tracking_tune.py --seed 3000 --clips 4 --frames 150 \
        --config base '{}' --config l1 '{"expression_l1": 16}'

The clips are the ones `benchmarks/tracking.py --seed S` renders (same generator, curves, backgrounds, noise),
rendered once and cached with mediapipe's per-frame points under ``--cache``; every ``--config`` (name, JSON of
`TrackSettings` fields) is then tracked on the cached points, so a setting costs only the fit. Prints one line of
the benchmark's summary metrics per config and the 12 weights with the largest mean error (error, signed bias);
writes nothing else. Diagnostics in the JSON: ``"true_identity": true`` uses each clip's true identity instead of
the keyframe estimate, ``"verbose": true`` adds each clip's mean and spread of the raw gaze (degrees).

The tracker's L1 weight (64) was chosen with this on seed 3000 (4 clips x 150 frames); seed 2000 is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

import tracking as bench  # noqa: E402

from msma.video import VideoFrame  # noqa: E402


def clips(model, seed: int, n_clips: int, n_frames: int, cache: Path) -> list[dict]:
    """The benchmark's clips for ``seed`` with mediapipe's points per frame, from ``cache`` when there."""
    from msma.synth import SyntheticFaceGenerator
    from msma.track import VideoLandmarker

    path = cache / f"clips_seed{seed}_{n_clips}x{n_frames}.npz"
    names = list(model.expression_names)
    if path.is_file():
        data = np.load(path, allow_pickle=True)
        return list(data["clips"])
    bank = bench.texture_bank(model)
    rng = np.random.default_rng(seed)
    generator = SyntheticFaceGenerator(model, seed=seed, texture_bank=bank if len(bank) else None,
                                       bank_probability=1.0, augment=False)
    bgs = bench.backgrounds(rng, n_clips)
    out = []
    for c in range(n_clips):
        weights, angles, layout = bench.curves(rng, names, n_frames)
        frames = bench.render_clip(model, generator, c, weights, angles, bgs[c], rng)
        landmarker = VideoLandmarker(1, 0.5, 0.5)
        faces = [landmarker(f) for f in frames]
        landmarker.close()
        out.append({"frames": np.stack(frames), "faces": faces, "weights": weights, "angles": angles,
                    "layout": layout})
        print(f"rendered clip {c}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(path, clips=np.array(out, dtype=object))
    return out


class _Replay:
    """Stands in for `msma.track.VideoLandmarker`: returns the cached points of the clip's frames in order."""

    queue: list = []

    def __init__(self, *args) -> None:
        self.faces = iter(_Replay.queue)

    def __call__(self, image):
        return next(self.faces)

    def close(self) -> None:
        pass


def evaluate(reconstructor, data: list[dict], overrides: dict, seed: int) -> dict:
    """The benchmark's metrics over the cached clips; ``overrides["true_identity"]`` (diagnostic) replaces the
    keyframe identity estimate by each clip's true identity."""
    import msma.track as track
    from msma.synth import SyntheticFaceGenerator

    overrides = dict(overrides)
    true_identity = overrides.pop("true_identity", False)
    verbose = overrides.pop("verbose", False)
    generator = SyntheticFaceGenerator(reconstructor.model, seed=seed, augment=False)

    names = list(reconstructor.model.expression_names)
    settings = track.TrackSettings(largest=True, texture=False, **overrides)
    tracker = track.FaceTracker(reconstructor, settings)
    original = track.VideoLandmarker
    track.VideoLandmarker = _Replay
    per_clip = []
    try:
        for c, clip in enumerate(data):
            _Replay.queue = clip["faces"]
            if true_identity:
                identity = generator.sample_parameters(c)["identity"].astype(np.float64)
                tracker._identity = lambda raw, points, timings, identity=identity: (identity, [])
            frames = (VideoFrame(i, i / bench.FPS, f) for i, f in enumerate(clip["frames"]))
            result = tracker.track_frames(frames, progress=False)
            m = bench.clip_metrics(result.faces[0], clip["weights"], clip["angles"], clip["layout"], names)
            m["fit_ms"] = 1000 * result.timings["fit"] / result.n_frames
            valid = result.faces[0].valid
            m["channel_error"] = np.abs(result.faces[0].weights[valid] - clip["weights"][valid]).mean(0)
            m["gaze_mean"] = np.degrees(result.faces[0].gaze_raw[valid].mean(0)).round(1).tolist()
            m["gaze_std"] = np.degrees(result.faces[0].gaze_raw[valid].std(0)).round(1).tolist()
            m["channel_bias"] = (result.faces[0].weights[valid] - clip["weights"][valid]).mean(0)
            per_clip.append(m)
    finally:
        track.VideoLandmarker = original
    mean = lambda k: float(np.mean([c[k] for c in per_clip]))  # noqa: E731
    return {
        "ratio": mean("mae_smoothed") / mean("mae_neutral_baseline"), "mae": mean("mae_smoothed"),
        "mae_raw": mean("mae_raw"), "base": mean("mae_neutral_baseline"),
        "mae_no_look": mean("mae_without_eye_look"), "base_no_look": mean("mae_neutral_baseline_without_eye_look"),
        "look": mean("eye_look_mean_weight"), "animated": mean("mae_animated_channels"),
        "pitch_bias": float(np.mean([c["pose_bias_deg"]["pitch"] for c in per_clip])),
        "pose_err": [float(np.mean([c["pose_error_deg"][k] for c in per_clip])) for k in ("pitch", "yaw", "roll")],
        "jitter_x": mean("jitter_still_raw") / mean("jitter_still_smoothed"), "gaze_deg": mean("gaze_abs_error_deg"),
        "fit_ms": mean("fit_ms"),
        "gaze_clips": [(c["gaze_mean"], c["gaze_std"]) for c in per_clip] if verbose else None,
        "worst": {names[k]: (round(float(e), 4), round(float(b), 4)) for k, e, b in
                  sorted(zip(range(len(names)), np.mean([c["channel_error"] for c in per_clip], 0),
                             np.mean([c["channel_bias"] for c in per_clip], 0)), key=lambda t: -t[1])[:12]},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=3000)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--cache", default="/tmp/msma_tracking_tune")
    parser.add_argument("--config", nargs=2, action="append", metavar=("NAME", "JSON"), default=None)
    args = parser.parse_args()
    if args.seed == 2000:
        parser.error("seed 2000 is the benchmark's reported seed: tune on another one")
    from msma.api import Reconstructor

    torch.set_num_threads(1)
    reconstructor = Reconstructor()
    data = clips(reconstructor.model, args.seed, args.clips, args.frames, Path(args.cache))
    for name, overrides in args.config or [["default", "{}"]]:
        r = evaluate(reconstructor, data, json.loads(overrides), args.seed)
        text = " ".join(f"{k}={v if k in ('worst', 'gaze_clips') else np.round(v, 4).tolist()}" for k, v in r.items()
                        if v is not None)
        print(f"{name:>16}: {text}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which ICT vertex each of mediapipe's 468 face-mesh points sits on, measured on synthetic renders.

    python -m msma.track_calibration --samples 300 --seed 0    # -> msma/data/mediapipe_ict_correspondence.npz

Mediapipe's mesh points are fixed places on the face surface, but not ICT's: fitting ICT's iBUG landmark vertices to
mediapipe's 68-point mapping leaves systematic offsets of 3-5 % of the face size (brows, jaw, nose, mouth) that a
fitter can only explain with spurious expressions. Here every point gets the ICT vertex it really corresponds to:

1. random faces from `msma.synth.SyntheticFaceGenerator` (identity, sparse expressions, lighting; |yaw| <= 35 and
   |pitch| <= 20 degrees) are rendered at 640x480 (`msma.synth_video.FrameRenderer`) over random gradients;
2. mediapipe's face mesh (static mode, refined) runs on each render;
3. for every mesh point j and ICT face vertex v the squared distance between the point and the vertex's exact
   projection, divided by the interocular distance, is summed over the renders; the vertex with the least sum is
   the point's correspondence and its RMS distance (interocular units) the point's noise level ``sigma``;
4. the tracker's per-frame fit (`msma.track.FrameFitter`, true identity) is run on every render, with these
   points and with the 68 iBUG landmark vertices under mediapipe's 68-point mapping (the tracker's default): the
   mean angle error of each (mediapipe's point layout reads a few degrees of pitch off the truth) is stored as
   ``pose_offset`` / ``pose_offset_ibug68`` and subtracted from tracked head poses.

Seed 0 is the training seed; the tracking benchmark uses held-out seed 2000.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data" / "mediapipe_ict_correspondence.npz"
N_POINTS = 468  # the face mesh without the 10 iris points


@dataclass
class Correspondence:
    vertices: np.ndarray  # (468,) ICT vertex index of each mediapipe mesh point
    sigma: np.ndarray  # (468,) RMS distance point <-> vertex over the calibration renders, interocular units
    samples: int
    pose_offset: np.ndarray  # (3,) mean (pitch, yaw, roll) radians the tracker's fit reads above the truth
    pose_offset_ibug68: np.ndarray  # the same for the 68-point fit (ICT landmarks under mediapipe's 68 mapping)

    @classmethod
    def load(cls, path: str | os.PathLike = DATA) -> Correspondence | None:
        path = Path(path)
        if not path.is_file():
            return None
        data = np.load(path)
        offsets = [data[k].astype(np.float64) if k in data else np.zeros(3)
                   for k in ("pose_offset", "pose_offset_ibug68")]
        return cls(data["vertices"].astype(np.int64), data["sigma"].astype(np.float64), int(data["samples"]), *offsets)


def calibrate(samples: int = 300, seed: int = 0, progress: bool = True) -> Correspondence:
    import torch
    from tqdm import tqdm

    from msma.face_model import FaceModel
    from msma.synth import SyntheticFaceGenerator
    from msma.synth_video import FaceAppearance, FrameRenderer

    os.environ.setdefault("GLOG_minloglevel", "2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mediapipe as mp

    torch.set_num_threads(1)
    model = FaceModel.ict()
    generator = SyntheticFaceGenerator(model, seed=seed, augment=False)
    renderer = FrameRenderer(model)
    face = model.face_vertices.cpu().numpy()
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                           min_detection_confidence=0.3)
    sums = np.zeros((N_POINTS, len(face)))
    used, index = 0, 0
    kept: list[tuple[np.ndarray, dict]] = []
    rng = np.random.default_rng(seed)
    bar = tqdm(total=samples, desc="calibration renders", disable=not progress)
    while used < samples and index < 20 * samples:
        params = generator.sample_parameters(index)
        index += 1
        pitch, yaw, _ = np.degrees(params["angles"])
        if abs(yaw) > 35 or abs(pitch) > 20:
            continue
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        background = (c0 + (c1 - c0) * np.linspace(0, 1, 1280)[None, :, None]).repeat(960, 0).astype(np.uint8)
        frame, projected = renderer.render(FaceAppearance.from_generator(generator, index - 1), params["expression"],
                                           params["angles"], background, rng=rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = mesh.process(frame)
        if not result.multi_face_landmarks:
            continue
        points = np.array([(p.x * 640 - 0.5, p.y * 480 - 0.5) for p in result.multi_face_landmarks[0].landmark])
        points = points[:N_POINTS]
        lm = projected[model.landmarks68.cpu().numpy()]
        interocular = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
        target = projected[face]
        d2 = (points**2).sum(1)[:, None] + (target**2).sum(1)[None] - 2 * points @ target.T
        sums += np.maximum(d2, 0) / interocular**2
        kept.append((points, params))
        used += 1
        bar.update(1)
    bar.close()
    mesh.close()
    if used == 0:
        raise RuntimeError("mediapipe found no face in any calibration render")
    best = np.argmin(sums, axis=1)
    sigma = np.sqrt(sums[np.arange(N_POINTS), best] / used)
    corr = Correspondence(face[best], sigma, used, np.zeros(3), np.zeros(3))
    corr.pose_offset = _pose_offset(model, corr, kept, dense=True)
    corr.pose_offset_ibug68 = _pose_offset(model, corr, kept, dense=False)
    return corr


def _pose_offset(model, corr: Correspondence, samples: list[tuple[np.ndarray, dict]], dense: bool) -> np.ndarray:
    from msma.align import estimate_transform, transform_points
    from msma.landmarks.base import five_points_from_68
    from msma.landmarks.mapping import MEDIAPIPE_TO_IBUG68
    from msma.track import FrameFitter, PointSet, TrackSettings

    settings = TrackSettings()
    template = model.five_point_template()
    interocular = float(np.linalg.norm(template[1] - template[0]))
    if dense:
        points = PointSet(corr.vertices, np.maximum(corr.sigma * interocular, settings.landmark_sigma_px),
                          "mediapipe468")
    else:
        points = PointSet.ibug68(model, settings)
        points.pose_offset = np.zeros(3)
    errors = []
    for mesh_points, params in samples:
        matrix = estimate_transform(five_points_from_68(mesh_points[MEDIAPIPE_TO_IBUG68]), template)
        observed = mesh_points if dense else mesh_points[MEDIAPIPE_TO_IBUG68]
        state = FrameFitter(model, params["identity"], settings, points).fit(transform_points(observed, matrix))
        errors.append(state.angles - params["angles"])
    return np.mean(errors, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(DATA))
    args = parser.parse_args(argv)
    corr = calibrate(args.samples, args.seed)
    np.savez_compressed(args.out, vertices=corr.vertices.astype(np.int32), sigma=corr.sigma.astype(np.float32),
                        samples=corr.samples, seed=args.seed, pose_offset=corr.pose_offset,
                        pose_offset_ibug68=corr.pose_offset_ibug68)
    print(f"{corr.samples} renders -> {args.out}; median sigma {np.median(corr.sigma):.4f} interocular, "
          f"{len(np.unique(corr.vertices))} distinct vertices, pose offset (pitch, yaw, roll) dense "
          f"{np.degrees(corr.pose_offset).round(2).tolist()}, 68 points "
          f"{np.degrees(corr.pose_offset_ibug68).round(2).tolist()} degrees")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

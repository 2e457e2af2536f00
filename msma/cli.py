"""Command line: ``python -m msma reconstruct|collection|track|train|evaluate|info``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

FORMATS = ("glb", "obj", "obj.zip", "ply", "json")


def _reconstruct_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("photos", nargs="+", help="image files or folders of images")
    parser.add_argument("-o", "--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument("--format", nargs="+", default=["glb", "obj", "ply", "json"], choices=FORMATS,
                        help="export formats (default: glb obj ply json)")
    parser.add_argument("--method", default="auto", choices=["auto", "network", "network+refine", "fitting"],
                        help="auto = the most accurate measured method (msma.api.DEFAULT_METHOD: fitting)")
    parser.add_argument("--weights", help="network checkpoint (.safetensors); default: weights/ or $MSMA_WEIGHTS")
    parser.add_argument("--face-model", help="face model file (ICT npz or BFM_model_front.mat); default: bundled ICT")
    parser.add_argument("--detector", default="auto", help="auto | mediapipe | dlib | face_alignment")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--largest", action="store_true", help="only the largest face of each photo")
    parser.add_argument("--no-texture", action="store_true", help="skip unwrapping the photo texture")
    parser.add_argument("--no-photometric", action="store_true", help="landmark fitting only (faster)")
    parser.add_argument("--overlay", action="store_true", help="also write an overlay PNG per photo")
    parser.add_argument("--static-glb", action="store_true",
                        help="GLB as a static posed mesh instead of the rigged face (53 ARKit morph targets)")
    parser.add_argument("--same-person", action="store_true",
                        help="all photos show one person: fit one shared identity (largest face of each)")
    parser.add_argument("--batch-size", type=int, default=8,
                        help="photos whose faces are estimated together (one network pass; default 8)")


def _expand(paths: Sequence[str]) -> list[Path]:
    from msma.image_io import PHOTO_EXTENSIONS

    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS))
        else:
            files.append(path)
    return files


def reconstruct(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from msma.api import PhotoFailure, Reconstructor
    from msma.fit import PhotometricSettings
    from msma.image_io import ImageLoadError
    from msma.landmarks import NoFaceError

    reconstructor = Reconstructor(method=args.method, weights=args.weights, face_model=args.face_model,
                                  detector=args.detector, device=args.device, photometric=not args.no_photometric,
                                  photometric_settings=PhotometricSettings())
    for key, value in reconstructor.describe().items():
        logging.info("%s: %s", key, value)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    photos = _expand(args.photos)
    if args.same_person:
        faces = reconstructor.reconstruct_person(photos, texture=not args.no_texture)
        for photo, face in zip(photos, faces):
            face.export(out_dir, stem=f"{photo.stem}_face0", formats=args.format, rigged=not args.static_glb)
        print(f"{len(faces)} photos fitted with one identity -> {out_dir}")
        return 0
    if args.batch_size < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    failures = 0
    summary = []
    results = reconstructor.reconstruct_many(photos, batch_size=args.batch_size, largest_only=args.largest,
                                             texture=not args.no_texture, errors="return")
    for photo, result in tqdm(zip(photos, results), total=len(photos), desc="reconstructing", unit="photo",
                              disable=len(photos) < 2):
        if isinstance(result, PhotoFailure):
            if not isinstance(result.error, (NoFaceError, ImageLoadError, OSError)):
                raise result.error
            failures += 1
            tqdm.write(f"error: {photo}: {result.error}", file=sys.stderr)
            continue
        for face in result:
            files = face.export(out_dir, stem=f"{photo.stem}_face{face.index}", formats=args.format,
                                rigged=not args.static_glb)
            summary.append({"photo": str(photo), "face": face.index, "method": face.method,
                            "pose_degrees": face.pose.as_dict(), "landmark_error_px": face.landmark_error_px,
                            "files": {k: str(v) for k, v in files.items()}})
        if args.overlay:
            Image.fromarray(result.overlay()).save(out_dir / f"{photo.stem}_overlay.png")
        tqdm.write(f"{photo}: {len(result)} face(s), {sum(result.timings.values()):.2f} s")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{len(summary)} face(s) from {len(photos) - failures} of {len(photos)} photo(s) -> {out_dir}")
    return 1 if failures else 0


def _collection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="a folder of images (searched recursively), a dataset saved with "
                                       "save_to_disk, or a Hugging Face hub dataset id")
    parser.add_argument("-o", "--out", required=True,
                        help="output folder: faces.parquet, shards/ (resume state) and meshes/")
    parser.add_argument("--method", default="auto", choices=["auto", "network", "network+refine", "fitting"],
                        help="auto = the most accurate measured method (fitting); network is the fastest")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="torch / OpenCV / BLAS threads per worker (default 1)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="photos per batch: one network pass and one resumable shard (default 16)")
    parser.add_argument("--detector", default="auto", help="auto | mediapipe | dlib | face_alignment")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--weights", help="network checkpoint (.safetensors); default: weights/ or $MSMA_WEIGHTS")
    parser.add_argument("--face-model", help="face model file; default: bundled ICT")
    parser.add_argument("--largest", action="store_true", help="only the largest face of each photo")
    parser.add_argument("--max-faces", type=int, help="at most this many faces per photo")
    parser.add_argument("--no-photometric", action="store_true", help="landmark fitting only (faster)")
    parser.add_argument("--mesh-format", nargs="+", default=[], choices=FORMATS,
                        help="also write each face's mesh into OUT/meshes in these formats")
    parser.add_argument("--no-texture", action="store_true", help="meshes without the unwrapped photo texture")
    parser.add_argument("--split", default="train", help="dataset split (dataset sources; default train)")
    parser.add_argument("--image-column", help="image column of a dataset (default: its first Image column)")
    parser.add_argument("--id-column", help="photo id column of a dataset (default: the row number)")
    parser.add_argument("--ray", action="store_true",
                        help="run on Ray (pip install -r requirements-ray.txt): --workers actors")
    parser.add_argument("--ray-address", help="Ray cluster to join (e.g. ray://head:10001 or auto); default: a "
                                              "local Ray instance")
    parser.add_argument("--no-progress", action="store_true")


def collection(args: argparse.Namespace) -> int:
    from msma.collection import CollectionSettings, open_source, run_collection

    settings = CollectionSettings(
        method=args.method, detector=args.detector, device=args.device, weights=args.weights,
        face_model=args.face_model, photometric=not args.no_photometric, batch_size=args.batch_size,
        workers=args.workers, threads_per_worker=args.threads_per_worker, largest_only=args.largest,
        max_faces=args.max_faces, mesh_formats=tuple(args.mesh_format), texture=not args.no_texture)
    try:
        settings.validate()
        source = open_source(args.source, split=args.split, image_column=args.image_column,
                             id_column=args.id_column)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.info("source: %s", source.description)
    if args.ray:
        from msma.collection_ray import run_collection_ray

        report = run_collection_ray(source, args.out, settings, address=args.ray_address,
                                    progress=not args.no_progress)
    else:
        report = run_collection(source, args.out, settings, progress=not args.no_progress)
    print(f"{report.processed} photo(s) processed in {report.seconds:.1f} s ({report.photos_per_second:.2f} "
          f"photos/s), {report.skipped} already done; {report.faces} face row(s), {report.failed} failed "
          f"photo(s) -> {report.table}")
    return 0


def _track_arguments(parser: argparse.ArgumentParser) -> None:
    from msma.track_export import PERFORMANCE_FORMATS

    parser.add_argument("video", help="video file (anything FFmpeg decodes: mp4, mov, mkv, webm, avi ...)")
    parser.add_argument("-o", "--out", default="outputs", help="output folder (default: outputs)")
    parser.add_argument("--format", nargs="+", default=list(PERFORMANCE_FORMATS), choices=PERFORMANCE_FORMATS,
                        help="csv = Live Link Face CSV, glb = rigged face with the animation, npz/json = per-frame "
                             "data, mp4 = overlay preview (default: all)")
    parser.add_argument("--largest", action="store_true", help="track only the largest face of every frame")
    parser.add_argument("--max-faces", type=int, default=4, help="faces tracked at once (default 4)")
    parser.add_argument("--max-side", type=int, default=1280,
                        help="frames larger than this are downscaled for tracking (default 1280)")
    parser.add_argument("--keyframes", type=int, default=5, help="frames fitted together for the identity")
    parser.add_argument("--no-smoothing", action="store_true", help="raw per-frame values (no One-Euro filter)")
    parser.add_argument("--min-cutoff", type=float, default=1.0,
                        help="One-Euro cutoff of a still signal, Hz (lower = smoother, more lag; default 1)")
    parser.add_argument("--beta", type=float, default=3.0, help="One-Euro speed coefficient (default 3)")
    parser.add_argument("--no-texture", action="store_true", help="untextured rig (skips unwrapping a frame)")
    parser.add_argument("--method", default="auto", choices=["auto", "network+refine", "fitting"],
                        help="how the identity is estimated from the keyframes")
    parser.add_argument("--no-photometric", action="store_true",
                        help="identity and texture from landmark fitting only (faster)")
    parser.add_argument("--weights", help="network checkpoint (.safetensors); default: weights/ or $MSMA_WEIGHTS")
    parser.add_argument("--no-progress", action="store_true")


def track(args: argparse.Namespace) -> int:
    from msma.api import Reconstructor
    from msma.landmarks import NoFaceError
    from msma.smoothing import OneEuroSettings
    from msma.track import FaceTracker, TrackSettings
    from msma.track_export import export_performance
    from msma.video import VideoError

    if args.max_faces < 1 or args.max_side < 64 or args.keyframes < 1:
        print("error: --max-faces and --keyframes must be >= 1 and --max-side >= 64", file=sys.stderr)
        return 2
    smoothing = None if args.no_smoothing else OneEuroSettings(min_cutoff=args.min_cutoff, beta=args.beta)
    settings = TrackSettings(max_side=args.max_side, max_faces=args.max_faces, largest=args.largest,
                             keyframes=args.keyframes, smoothing=smoothing, texture=not args.no_texture)
    tracker = FaceTracker(Reconstructor(method=args.method, weights=args.weights,
                                        photometric=not args.no_photometric), settings)
    try:
        result = tracker.track_video(args.video, progress=not args.no_progress)
    except (VideoError, NoFaceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    out_dir = Path(args.out)
    stem = Path(args.video).stem
    files = export_performance(result, out_dir, video_path=args.video, stem=stem, formats=args.format,
                               progress=not args.no_progress)
    for message in result.messages:
        print(f"note: {message}", file=sys.stderr)
    summary = {"video": str(args.video), "frames": result.n_frames, "fps": result.fps,
               "variable_frame_rate": result.variable_frame_rate, "complete": result.complete,
               "faces": [{"face": f.index, "tracked_frames": f.n_valid, "keyframes": f.keyframes}
                         for f in result.faces],
               "tracking_fps": result.tracking_fps(), "timings_s": result.timings, "messages": result.messages,
               "files": {k: str(v) for k, v in files.items()}}
    (out_dir / f"{stem}_track_summary.json").write_text(json.dumps(summary, indent=2))
    print(f"{result.n_frames} frames, {len(result.faces)} face(s), tracking {result.tracking_fps():.0f} frames/s "
          f"-> {out_dir}")
    return 0 if result.complete else 1


def info(args: argparse.Namespace) -> int:
    from msma.api import Reconstructor

    for key, value in Reconstructor(method="auto").describe().items():
        print(f"{key}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m msma", description="MSMA: one photo of a face -> 3D face")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("reconstruct", help="photos -> 3D faces (GLB, OBJ, PLY, ARKit JSON)")
    _reconstruct_arguments(rec)
    rec.set_defaults(func=reconstruct)
    col = sub.add_parser("collection", help="a photo collection (folder / dataset) -> one Parquet row per face; "
                                            "parallel workers, resumable, optionally on Ray")
    _collection_arguments(col)
    col.set_defaults(func=collection)
    tr_video = sub.add_parser("track", help="video -> ARKit blendshapes, head pose and gaze per frame (Live Link "
                                            "CSV, animated GLB, NPZ/JSON, overlay MP4)")
    _track_arguments(tr_video)
    tr_video.set_defaults(func=track)
    sub.add_parser("info", help="which face model, weights, detector and device would be used").set_defaults(
        func=info)
    from msma import evaluate, train

    tr = sub.add_parser("train", help="train the MSMA network")
    train.add_arguments(tr)
    tr.set_defaults(func=train.main)
    ev = sub.add_parser("evaluate", help="benchmarks: synthetic 3D error, 2D NME, scan protocols, speed")
    evaluate.add_arguments(ev)
    ev.set_defaults(func=evaluate.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command in ("reconstruct", "track", "collection")
    logging.basicConfig(level=logging.INFO if args.verbose or not quiet else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    result = args.func(args)
    return int(result or 0)

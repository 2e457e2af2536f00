"""Command line: ``python -m msma reconstruct|train|evaluate|info``."""

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
                        help="auto = network+refine when weights exist, else fitting")
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


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def _expand(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            files.append(path)
    return files


def reconstruct(args: argparse.Namespace) -> int:
    from PIL import Image
    from tqdm import tqdm

    from msma.api import Reconstructor
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
    failures = 0
    summary = []
    for photo in tqdm(photos, desc="reconstructing", unit="photo", disable=len(photos) < 2):
        try:
            result = reconstructor(photo, largest_only=args.largest, texture=not args.no_texture)
        except (NoFaceError, ImageLoadError, OSError) as error:
            failures += 1
            tqdm.write(f"error: {photo}: {error}", file=sys.stderr)
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
    logging.basicConfig(level=logging.INFO if args.verbose or args.command != "reconstruct" else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    result = args.func(args)
    return int(result or 0)

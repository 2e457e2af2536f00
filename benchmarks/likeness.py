"""Does the reconstruction look like the person? dlib's face-recognition distance between each real photo and renders
of its textured reconstruction turned to other views (`msma.likeness`), for every method and the mean face.

    .venv/bin/python benchmarks/likeness.py                  # -> benchmarks/results/likeness.json / .md

Photos: every face (up to `MAX_FACES` per photo) of the photos in ../shared/data/faces_in_the_wild and
../shared/data/dlib_faces. Rows: the untouched mean shape ("mean": the fitter with its identity held at the mean face,
so pose, expression and texture are fitted the same way), `fitting`, `network`, `network+refine`. Each
reconstruction keeps its expression and its texture unwrapped from the photo and is rendered at yaw -30 / 0 / +30
degrees in the aligned-crop camera; the score is the embedding distance of the photo's aligned crop to each render
(dlib calls < 0.6 the same person). Only the shape differs between the rows, and the views away from the photo's
pose are where a wrong shape shows. The difference to the mean row is paired per photo (bootstrap 95 % interval).
Nothing is tuned on this benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma.face_embedding import SAME_PERSON_DISTANCE  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("mean", "fitting", "network", "network+refine")
MEAN_FACE_IDENTITY_PRIOR = 1e8  # holds the fitted identity at the mean face
MAX_FACES = 8


def photo_paths(folders: list[Path]) -> list[Path]:
    return [p for folder in folders for p in sorted(folder.iterdir())
            if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


def reconstructors(methods: tuple[str, ...], weights: str | None):
    from msma.api import Reconstructor

    out = {}
    for method in methods:
        rec = Reconstructor(method="fitting" if method == "mean" else method, weights=weights, max_side=2048)
        if method == "mean":
            rec.landmark_settings = dataclasses.replace(rec.landmark_settings,
                                                        identity_prior=MEAN_FACE_IDENTITY_PRIOR)
        out[method] = rec
    return out


def paired_interval(diff: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = [rng.choice(diff, len(diff)).mean() for _ in range(n)]
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(per_photo: dict[str, dict[str, dict]], methods: tuple[str, ...], yaws: tuple[float, ...]) -> dict:
    names = sorted(n for n, rows in per_photo.items() if all(m in rows for m in methods))
    table = {}
    base = np.array([per_photo[n]["mean"]["mean_distance"] for n in names]) if "mean" in methods else None
    for method in methods:
        values = np.array([per_photo[n][method]["mean_distance"] for n in names])
        row = {"mean_distance": float(values.mean()), "median_distance": float(np.median(values)),
               "by_yaw": {str(y): float(np.mean([per_photo[n][method]["distances"][str(y)] for n in names]))
                          for y in yaws},
               "share_same_person": float(np.mean([
                   np.mean([d < SAME_PERSON_DISTANCE for d in per_photo[n][method]["distances"].values()])
                   for n in names]))}
        if base is not None and method != "mean":
            diff = values - base
            row["minus_mean_face"] = float(diff.mean())
            row["minus_mean_face_ci95"] = paired_interval(diff)
            row["closer_than_mean_face_share"] = float((diff < 0).mean())
        table[method] = row
    return {"n_photos": len(names), "rows": table}


def markdown(result: dict) -> str:
    s = result["summary"]
    yaws = result["yaws"]
    lines = [
        "# Likeness on real photos: dlib distance of the photo to renders of its reconstruction "
        "— benchmarks/likeness.py", "",
        f"{s['n_photos']} faces of the photos in {', '.join(result['folders'])}. Each reconstruction, with its "
        "expression and its texture unwrapped from the photo, is rendered at yaw "
        + " / ".join(f"{y:g}" for y in yaws) + " degrees; lower = looks more like the person "
        "(dlib: < 0.6 same person). \"mean\" is the fitter with its identity held at the mean face.", "",
        "| method | mean distance | median | " + " | ".join(f"yaw {y:g}" for y in yaws)
        + " | share of renders < 0.6 | vs mean face (paired, 95 % CI) | photos closer than the mean face |",
        "|---|---|---|" + "---|" * len(yaws) + "---|---|---|",
    ]
    for method, row in s["rows"].items():
        vs = ("-" if "minus_mean_face" not in row else
              f"{row['minus_mean_face']:+.4f} ({row['minus_mean_face_ci95'][0]:+.4f} .. "
              f"{row['minus_mean_face_ci95'][1]:+.4f})")
        closer = "-" if "closer_than_mean_face_share" not in row else f"{row['closer_than_mean_face_share']:.2f}"
        lines.append(f"| {method} | {row['mean_distance']:.4f} | {row['median_distance']:.4f} | "
                     + " | ".join(f"{row['by_yaw'][str(y)]:.4f}" for y in yaws)
                     + f" | {row['share_same_person']:.2f} | {vs} | {closer} |")
    if result["failures"]:
        lines += ["", f"Skipped (no face or error): {', '.join(sorted(result['failures']))}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", default=f"{DATA / 'faces_in_the_wild'},{DATA / 'dlib_faces'}")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--weights", default=None, help="network checkpoint (default: shipped)")
    parser.add_argument("--limit", type=int, default=None, help="first N photos only (quick runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="likeness")
    args = parser.parse_args(argv)
    folders = [Path(f) for f in args.folders.split(",")]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        print(f"photo folder(s) not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    from msma.likeness import DEFAULT_YAWS, LikenessScorer

    methods = tuple(args.methods.split(","))
    recs = reconstructors(methods, args.weights)
    scorer = LikenessScorer(next(iter(recs.values())).model)
    paths = photo_paths(folders)[: args.limit]
    per_photo: dict[str, dict[str, dict]] = {}
    failures: dict[str, str] = {}
    from msma.image_io import load_image_with_scale
    from msma.landmarks import detect_faces

    any_rec = next(iter(recs.values()))
    for path in tqdm(paths, desc="photos"):
        try:  # one detection per photo: every method reconstructs the same faces
            photo = load_image_with_scale(path, max_side=any_rec.max_side).image
            detections = detect_faces(photo, detector=any_rec.detector)[:MAX_FACES]
        except Exception as exc:  # noqa: BLE001 - a photo that fails is listed, the run goes on
            failures[path.name] = f"{type(exc).__name__}: {exc}"
            continue
        for method, rec in recs.items():
            try:
                scores = [scorer(rec.reconstruct_face(photo, det, index=i, texture=True))
                          for i, det in enumerate(detections)]
            except Exception as exc:  # noqa: BLE001
                failures[path.name] = f"{method}: {type(exc).__name__}: {exc}"
                break
            for index, likeness in enumerate(scores):
                per_photo.setdefault(f"{path.parent.name}/{path.name}#{index}", {})[method] = {
                    "distances": {str(y): d for y, d in likeness.distances.items()},
                    "mean_distance": likeness.mean_distance}
    result = {"folders": [str(f.relative_to(ROOT.parent)) if f.is_relative_to(ROOT.parent) else str(f)
                          for f in folders],
              "methods": methods, "yaws": list(DEFAULT_YAWS), "weights": args.weights,
              "per_photo": per_photo, "failures": failures}
    result["summary"] = summarise(per_photo, methods, DEFAULT_YAWS)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (args.out / f"{args.name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where network+refine's 3D gain comes from, on the SFM dev split: the network's identity or the rest of its prior.

    .venv/bin/python benchmarks/network_prior_dev.py --subjects 8   # -> benchmarks/results/network_prior_dev.json/.md

Every dev render of `benchmarks/sfm_3d.py` (seed 1, 6 views, the same detections) is reconstructed by fitting,
network+refine, network+refine with the network's identity left out of the fitter's prior (the calibrated
identity trust set to 0: pose, expression and the rest of the prior unchanged) and, with ``--constant``, with the
network's identity replaced by its average over every render of the split (one identity for all: how much of the
gain is a shift shared by all faces rather than the person's own shape); ``--constant`` also scores, for fitting and
network+refine, the average of their neutral shapes over the split given to every face without a fit (the shared
part of each method's answer alone). No photometric step (it does not
change the shape by default). NoW-style error vs the mean face, as sfm_3d.py. Dev data only.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from sfm_3d import load_textures, score_ict, subject_views  # noqa: E402
from sfm_faces import SFM_DIR, SurreyModel, sfm_available  # noqa: E402

from msma.face_model import MODEL_UNITS_TO_MM  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--constant", action="store_true", help="add the row with the split's average identity")
    parser.add_argument("--name", default="network_prior_dev", help="result file name (without extension)")
    args = parser.parse_args()
    if not sfm_available():
        print(f"SFM files not found in {SFM_DIR} (build machines only)")
        return 1
    from msma.api import Reconstructor

    sfm = SurreyModel()
    textures = load_textures(sfm)
    fitting = Reconstructor(method="fitting", photometric=False)
    model = fitting.model
    refine = Reconstructor(method="network+refine", photometric=False, face_model=model)
    no_identity = Reconstructor(method="network+refine", photometric=False, face_model=model)
    no_identity.prior_trust = dataclasses.replace(no_identity.prior_trust, identity=0.0)
    methods = {"fitting": fitting, "network+refine": refine,
               "network+refine, network identity left out of the prior": no_identity}
    all_views = [subject_views(sfm, textures, "dev", subject) for subject in range(args.subjects)]
    if args.constant:
        from landmark_identity import RegressedIdentityPrior

        from msma.align import align_face

        identities = [refine.predict(align_face(image, detection.five_points(), template=refine.template).image[None])
                      .identity[0].numpy()
                      for _, views in all_views for _, image, detection, _ in views if detection is not None]
        constant = RegressedIdentityPrior(method="network+refine", photometric=False, face_model=model)
        constant.identity_for_next = np.mean(identities, 0)
        methods["network+refine, the split's average network identity for every face"] = constant
    mean_mm = model.mean.cpu().numpy().astype(np.float64) * MODEL_UNITS_TO_MM
    errors: dict[str, list[float]] = {"mean": [], **{k: [] for k in methods}}
    neutral_shapes: dict[str, list[np.ndarray]] = {"fitting": [], "network+refine": []}
    truths = []
    for gt, views in tqdm(all_views, desc="SFM dev subjects"):
        for _, image, detection, _ in views:
            if detection is None:
                continue
            errors["mean"].append(score_ict(model, mean_mm, gt, sfm)["mean_mm"])
            truths.append(gt)
            for name, rec in methods.items():
                face = rec.reconstruct_face(image, detection, texture=False)
                errors[name].append(score_ict(model, face.neutral_vertices * MODEL_UNITS_TO_MM, gt, sfm)["mean_mm"])
                if name in neutral_shapes:
                    neutral_shapes[name].append(face.neutral_vertices)
    if args.constant:
        for name, shapes in neutral_shapes.items():
            average_mm = np.mean(shapes, 0) * MODEL_UNITS_TO_MM
            errors[f"{name}'s average neutral shape over the split for every face, no fit"] = [
                score_ict(model, average_mm, gt, sfm)["mean_mm"] for gt in truths]
    summary = {k: {"mean_mm": float(np.mean(v)), "vs_mean": float(np.mean(v) / np.mean(errors["mean"]))}
               for k, v in errors.items()}
    out = ROOT / "benchmarks" / "results"
    (out / f"{args.name}.json").write_text(json.dumps({"subjects": args.subjects, "summary": summary,
                                                            "errors": errors}, indent=1))
    lines = ["# network+refine's prior on the SFM dev split — benchmarks/network_prior_dev.py", "",
             f"{args.subjects} subjects x 6 views, NoW-style mean error. Dev data only.", "",
             "| method | mean mm | vs mean face |", "|---|---|---|"]
    lines += [f"| {k} | {s['mean_mm']:.3f} | {s['vs_mean']:.3f} |" for k, s in summary.items()]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

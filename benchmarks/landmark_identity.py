"""How much of a face's 3D identity mediapipe's 478 mesh points carry: a learnt regressor, in and out of model.

    .venv/bin/python benchmarks/landmark_identity.py --subjects 8   # -> benchmarks/results/landmark_identity.json/.md

The fitter explains the mesh points with ICT's model and a Gaussian prior. A regressor trained on renders whose
identity is known learns instead what the detector's points say about identity, depth channel included, as the
expression regressor (`msma/expression_regressor.py`) does for expressions. This script measures whether that
carries more identity than the fit:

1. **In model**: the renders of `scripts/derive_expression_regressor.py` (seed 78 / 79, no evaluation data; their
   mesh points are saved in runs/cache/expression_regressor, run that script first). The identity of each render is
   redrawn from the generator's seed (`SyntheticFaceGenerator.sample_parameters`: nothing else is needed). Ridge
   regression from `mesh_features` (the expression regressor's pose-normalised points and depth) to the 100 ICT
   identity coefficients, trained on renders whose index is not a multiple of 10, reported on those that are:
   similarity-aligned vertex error of the neutral face region against the mean face.
2. **Out of model**: the SFM dev split of `benchmarks/sfm_3d.py` (seed 1, 6 views, same detections). The regressor's
   identity replaces the network's identity in network+refine's prior (`RegressedIdentityPrior`: the network's
   pose, expression, albedo and light are kept, its identity is not), scaled by 1 and 0.7; beside it fitting,
   network+refine, and network+refine with no identity in its prior (the control: what the prior gives without an
   identity). NoW-style error vs the mean face. Dev data only: nothing here is chosen on the test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sfm_3d import load_textures, score_ict, subject_views  # noqa: E402
from sfm_faces import SFM_DIR, SurreyModel, sfm_available  # noqa: E402

from msma.api import Reconstructor  # noqa: E402
from msma.expression_regressor import mesh_features  # noqa: E402
from msma.face_model import MODEL_UNITS_TO_MM, FaceModel  # noqa: E402

CACHE = ROOT / "runs" / "cache" / "expression_regressor"
RENDER_SEED = 78  # scripts/derive_expression_regressor.py: seed 78, the "wild" kind 79
RIDGE = (100.0, 1000.0)


def load_renders(model: FaceModel) -> dict[str, np.ndarray]:
    """Features, true identities, kinds and indices of every saved render with a full mesh detection."""
    from msma.synth import SyntheticFaceGenerator

    files = sorted(CACHE.glob("*.npz"))
    if not files:
        raise FileNotFoundError(f"no renders in {CACHE}: run scripts/derive_expression_regressor.py first")
    generators: dict[str, SyntheticFaceGenerator] = {}
    feats, ids, kinds, indices = [], [], [], []
    for path in tqdm(files, desc="renders"):
        kind = path.stem.rsplit("_", 2)[0]
        if kind not in generators:  # identity is the first draw of a sample: no texture bank needed to redraw it
            generators[kind] = SyntheticFaceGenerator(model, seed=RENDER_SEED + (1 if kind == "wild" else 0))
        data = np.load(path)
        ok = np.isfinite(data["dense"]).all((1, 2)) & np.isfinite(data["depth"]).all(1)
        feats.append(mesh_features(data["dense"][ok], data["depth"][ok]))
        ids.append(np.array([generators[kind].sample_parameters(int(i))["identity"] for i in data["index"][ok]]))
        kinds += [kind] * int(ok.sum())
        indices.append(data["index"][ok])
    return {"features": np.concatenate(feats), "identity": np.concatenate(ids).astype(np.float64),
            "kind": np.array(kinds), "index": np.concatenate(indices)}


class RidgeIdentity:
    """Standardised mesh features -> ICT identity (ridge)."""

    def __init__(self, features: np.ndarray, identity: np.ndarray, penalty: float) -> None:
        self.mean = features.mean(0)
        self.std = features.std(0) + 1e-6
        x = (features - self.mean) / self.std
        self.weights = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ identity)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.weights


def aligned_vertex_error_mm(model: FaceModel, predicted: np.ndarray, truth: np.ndarray, step: int = 8) -> np.ndarray:
    """Per face: mean distance (mm) between the neutral face regions of two identities after a similarity fit."""
    from msma.benchmark3d import kabsch

    region = model.face_vertices.cpu().numpy()[::step]
    basis = model.identity_basis.cpu().numpy().reshape(model.n_identity, -1, 3)[:, region]
    mean = model.mean.cpu().numpy().reshape(-1, 3)[region]
    out = []
    for p, t in zip(predicted, truth):
        a = (mean + np.einsum("k,kvc->vc", p, basis)) * MODEL_UNITS_TO_MM
        b = (mean + np.einsum("k,kvc->vc", t, basis)) * MODEL_UNITS_TO_MM
        r, tr, s = kabsch(a, b, scale=True)
        out.append(np.linalg.norm((s * a) @ r.T + tr - b, axis=1).mean())
    return np.array(out)


class RegressedIdentityPrior(Reconstructor):
    """network+refine whose prior identity comes from `identity_for_next` (set before each photo) instead of the
    network: the rest of the network's answer (pose, expression, albedo, light) stays the prior."""

    identity_for_next: np.ndarray | None = None

    def predict(self, crops: np.ndarray, raw: bool = False):
        coeffs = super().predict(crops, raw=raw)
        identity = torch.as_tensor(self.identity_for_next, dtype=coeffs.identity.dtype)
        coeffs.identity = identity[None].repeat(len(coeffs.identity), 1)
        return coeffs


def in_model(model: FaceModel) -> dict:
    data = load_renders(model)
    held_out = data["index"] % 10 == 0
    truth = data["identity"][held_out]
    rows = {"mean face": aligned_vertex_error_mm(model, np.zeros_like(truth), truth)}
    for penalty in RIDGE:
        ridge = RidgeIdentity(data["features"][~held_out], data["identity"][~held_out], penalty)
        rows[f"ridge {penalty:g}"] = aligned_vertex_error_mm(model, ridge(data["features"][held_out]), truth)
    kinds = data["kind"][held_out]
    return {"training_renders": int((~held_out).sum()), "held_out_renders": int(held_out.sum()),
            "rows": {name: {"mean_mm": float(e.mean()), "vs_mean": float(e.mean() / rows["mean face"].mean()),
                            **{k: float(e[kinds == k].mean()) for k in np.unique(kinds)}}
                     for name, e in rows.items()},
            "ridge": RidgeIdentity(data["features"][~held_out], data["identity"][~held_out], RIDGE[0])}


def out_of_model(model: FaceModel, ridge: RidgeIdentity, n_subjects: int) -> dict:
    sfm = SurreyModel()
    textures = load_textures(sfm)
    fitting = Reconstructor(method="fitting", photometric=False, face_model=model)
    refine = Reconstructor(method="network+refine", photometric=False, face_model=model)
    regressed = {factor: RegressedIdentityPrior(method="network+refine", photometric=False, face_model=model)
                 for factor in (1.0, 0.7, 0.0)}
    methods = {"fitting": fitting, "network+refine": refine,
               "network+refine, regressed identity in the prior": regressed[1.0],
               "network+refine, regressed identity x0.7 in the prior": regressed[0.7],
               "network+refine, no identity in the prior (control)": regressed[0.0]}
    mean_mm = model.mean.cpu().numpy().astype(np.float64) * MODEL_UNITS_TO_MM
    errors: dict[str, list[float]] = {"mean": [], **{k: [] for k in methods}}
    views_seen: list[str] = []
    for subject in tqdm(range(n_subjects), desc="SFM dev subjects"):
        gt, views = subject_views(sfm, textures, "dev", subject)
        for view, image, detection, _ in views:
            if detection is None or detection.dense is None or detection.dense_depth is None:
                continue
            identity = ridge(mesh_features(detection.dense[None, :478], detection.dense_depth[None, :478]))[0]
            for factor, rec in regressed.items():
                rec.identity_for_next = identity * factor
            views_seen.append(view)
            errors["mean"].append(score_ict(model, mean_mm, gt, sfm)["mean_mm"])
            for name, rec in methods.items():
                face = rec.reconstruct_face(image, detection, texture=False)
                errors[name].append(score_ict(model, face.neutral_vertices * MODEL_UNITS_TO_MM, gt, sfm)["mean_mm"])
    views = np.array(views_seen)
    base = np.array(errors["mean"])
    return {"subjects": n_subjects, "renders": len(views),
            "rows": {k: {"mean_mm": float(np.mean(v)), "vs_mean": float(np.mean(v) / base.mean()),
                         **{view: float(np.array(v)[views == view].mean() / base[views == view].mean())
                            for view in dict.fromkeys(views_seen)}}
                     for k, v in errors.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args()
    if not sfm_available():
        print(f"SFM files not found in {SFM_DIR} (build machines only)")
        return 1
    torch.set_num_threads(2)
    model = FaceModel.ict()
    inside = in_model(model)
    ridge = inside.pop("ridge")
    outside = out_of_model(model, ridge, args.subjects)
    out = ROOT / "benchmarks" / "results"
    (out / "landmark_identity.json").write_text(json.dumps({"in_model": inside, "sfm_dev": outside}, indent=1))
    kinds = [k for k in next(iter(inside["rows"].values())) if k not in ("mean_mm", "vs_mean")]
    lines = ["# Identity from mediapipe's mesh points by a learnt regressor — benchmarks/landmark_identity.py", "",
             f"In model: ICT renders of scripts/derive_expression_regressor.py, ridge on {inside['training_renders']}"
             f" renders, {inside['held_out_renders']} held out; similarity-aligned neutral face-region vertex error "
             "(mm).", "",
             "| identity | mean mm | vs mean face | " + " | ".join(kinds) + " |",
             "|---|---|---|" + "---|" * len(kinds)]
    lines += [f"| {name} | {r['mean_mm']:.3f} | {r['vs_mean']:.3f} | " + " | ".join(f"{r[k]:.3f}" for k in kinds)
              + " |" for name, r in inside["rows"].items()]
    view_names = [k for k in outside["rows"]["mean"] if k not in ("mean_mm", "vs_mean")]
    lines += ["", f"Out of model: SFM dev split, {outside['subjects']} subjects, {outside['renders']} renders, "
              f"NoW-style error; the regressor is ridge {RIDGE[0]:g}. Dev data only.", "",
              "| method | mean mm | vs mean face | " + " | ".join(view_names) + " |",
              "|---|---|---|" + "---|" * len(view_names)]
    lines += [f"| {name} | {r['mean_mm']:.3f} | {r['vs_mean']:.3f} | " + " | ".join(f"{r[v]:.3f}" for v in view_names)
              + " |" for name, r in outside["rows"].items()]
    (out / "landmark_identity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Derive per-expression L1 multipliers for the fitter: msma/data/expression_l1_scale.npz.

    .venv/bin/python scripts/derive_expression_l1.py --n 400     # ~12 min on 2 CPU cores (the committed table)

Result (dev data, docs/ACCURACY.md): the table did not pay and is not used by default
(`LandmarkFitSettings.expression_l1_scale = None`). The blendshapes that noise turns on in neutral faces are the
mouth ones real expressions use (mouthSmile, mouthClose, mouthLeft / Right: multipliers x7-16), so raising their
weight flattened real smiles as much as a uniform weight does: NME on the dev photos 0.946x the detector's with
L1 32 + table against 0.916x for the defaults (nme_settings_dev_table.md), neutral share 0.79 against 0.86
(expression_settings_dev_table.md).

One L1 weight for all 53 ARKit weights cannot serve both goals of the accuracy issue: strong enough to keep neutral
faces neutral, it also flattens the smiles the detector saw (68-point NME on dev photos 0.916x the detector's at
L1 128, 0.886x at L1 32, 0.958x at 256: benchmarks/results/nme_settings_dev*.md); weak, detector noise turns on a
few blendshapes (mouthLeft / mouthRight, mouthClose, browDown, noseSneer) on neutral faces. The noise does not
reach every blendshape alike, so the penalty need not be alike either: this script raises the L1 weight of the
blendshapes that noise turns on, and only those.

Data (no evaluation data): neutral synthetic ICT faces (seed 79: training uses 0 and 4, the detector offsets and
mesh tables 77, calibration 1500, benchmarks 1000 and up, tuning 2000), half with the generator's procedural skin,
half with skin unwrapped from 16 faces_in_the_wild photos (`derive_detector_bias.wild_texture_bank`), over
faces_in_the_wild backgrounds, so no photo of the SFM or NME benchmarks is used. Each is fitted as in use (the
"auto" detector's 68 points and mediapipe's mesh, `Reconstructor.estimate`, method "fitting", L1 weight ``--base``).
Then, for ``--rounds`` rounds, every blendshape whose 95th percentile weight over the neutral faces is above
``--target`` gets its multiplier raised by (q95 / target) ** 0.7 (at most x3 a round) and those far below it are
lowered again (never under 1); the faces are refitted with the new multipliers. Faces the detector missed are left
out. The table stores the multipliers, the base weight they were derived for and the q95 before / after.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from derive_detector_bias import wild_texture_bank  # noqa: E402

from msma.fit import EXPRESSION_L1_PATH, LandmarkFitSettings  # noqa: E402

SEED = 79
INPUTS = ROOT / "runs" / "cache" / "expression_l1_inputs.npz"  # renders + detections, reused by later runs


def neutral_inputs(model, n: int, bank: np.ndarray | None, batch: int = 8) -> list[tuple]:
    """(crops, 68 points, mesh points, detector names) of n neutral renders, detector-missed faces dropped."""
    from msma.evaluate import _detector_landmarks
    from msma.synth import SyntheticFaceGenerator

    backgrounds = ROOT.parent / "shared" / "data" / "faces_in_the_wild"
    gen = SyntheticFaceGenerator(model, seed=SEED if bank is None else SEED + 1, texture_bank=bank,
                                 bank_probability=1.0, backgrounds=backgrounds if backgrounds.is_dir() else None)
    draw = gen.sample_parameters

    def neutral(index: int) -> dict[str, np.ndarray]:
        params = draw(index)
        params["expression"] = np.zeros_like(params["expression"])
        return params

    gen.sample_parameters = neutral  # the same faces, poses and light, with every expression weight at 0
    out = []
    for start in tqdm(range(0, n, batch), desc="neutral renders"):
        b = gen.render_indices(range(start, min(n, start + batch)))
        crops = (b.images.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        lms, dense, _, sources = _detector_landmarks(crops, b.landmarks2d.numpy())
        found = np.array([s is not None for s in sources])
        if found.any():
            out.append((crops[found], lms[found], None if dense is None else dense[found],
                        [s for s in sources if s is not None]))
    return out


def fitted_weights(rec, inputs: list[tuple], settings: LandmarkFitSettings) -> np.ndarray:
    rec.landmark_settings = settings
    weights = []
    for crops, lms, dense, sources in inputs:
        coeffs = rec.estimate(crops, lms, method="fitting", crop_dense=dense, landmark_sources=sources)
        weights.append(rec.model.clamp_expression(coeffs.expression).cpu().numpy())
    return np.concatenate(weights)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="renders per skin kind (procedural, wild)")
    parser.add_argument("--base", type=float, default=32.0, help="the L1 weight the multipliers scale")
    parser.add_argument("--l2", type=float, default=None,
                        help="expression L2 weight of the expressions-alone stage (default: LandmarkFitSettings')")
    parser.add_argument("--target", type=float, default=0.08, help="95th percentile weight allowed on neutral faces")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=EXPRESSION_L1_PATH)
    args = parser.parse_args()
    from msma.api import Reconstructor

    rec = Reconstructor(method="fitting", photometric=False)
    model = rec.model
    cache = INPUTS.with_name(f"{INPUTS.stem}_{args.n}.npz")
    if cache.is_file():  # the renders and detections of an earlier run with the same n
        data = np.load(cache, allow_pickle=False)
        inputs = [(data[f"crops{k}"], data[f"lms{k}"], data[f"dense{k}"] if f"dense{k}" in data else None,
                   list(data[f"sources{k}"])) for k in range(int(data["n_batches"]))]
    else:
        inputs = neutral_inputs(model, args.n, None) + neutral_inputs(model, args.n, wild_texture_bank(model))
        arrays = {"n_batches": np.int32(len(inputs))}
        for k, (crops, lms, dense, sources) in enumerate(inputs):
            arrays |= {f"crops{k}": crops, f"lms{k}": lms, f"sources{k}": np.array(sources)}
            if dense is not None:
                arrays[f"dense{k}"] = dense
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(cache, **arrays)
    n_faces = sum(len(x[0]) for x in inputs)
    scale = np.ones(model.n_expression)
    base = dataclasses.replace(LandmarkFitSettings(), expression_l1=args.base)
    if args.l2 is not None:
        base = dataclasses.replace(base, expression_prior=args.l2)
    q_before = None
    for round_index in range(args.rounds + 1):
        weights = fitted_weights(rec, inputs, dataclasses.replace(base, expression_l1_scale=tuple(scale)))
        q95 = np.quantile(weights, 0.95, axis=0)
        share = float(np.mean(weights.max(1) <= 0.15))
        print(f"round {round_index}: {n_faces} neutral faces, share with every weight <= 0.15: {share:.3f}, "
              f"largest q95 {q95.max():.3f} ({model.expression_names[int(q95.argmax())]})", flush=True)
        if q_before is None:
            q_before = q95
        if round_index == args.rounds:
            break
        step = np.clip((q95 + 1e-3) / args.target, 0.7, 3.0) ** 0.7
        step = np.where((q95 > args.target) | (q95 < args.target / 4), step, 1.0)
        scale = np.maximum(scale * step, 1.0)
    names = np.array(model.expression_names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, names=names, scale=scale.astype(np.float32), base=np.float32(args.base),
                        target=np.float32(args.target),
                        expression_prior=np.float32(base.expression_prior), q95_before=q_before.astype(np.float32),
                        q95_after=q95.astype(np.float32), n_faces=np.int32(n_faces), seed=np.int32(SEED),
                        share_after=np.float32(share))
    raised = np.argsort(-scale)
    print("multipliers above 1: " + ", ".join(f"{names[j]} x{scale[j]:.2f}" for j in raised if scale[j] > 1.0))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

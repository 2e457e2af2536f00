"""Learn ARKit expression weights from mediapipe's 478 mesh points: msma/data/expression_regressor.npz.

    .venv/bin/python scripts/derive_expression_regressor.py          # 40,000 renders ~25 min (2 cores), training ~8 min
    .venv/bin/python scripts/derive_expression_regressor.py --reuse  # train again on the renders saved in runs/cache

Why: the model-based fit explains a detector's points with ICT's blendshapes, but a detector does not move its
points the way the blendshapes move the surface (it draws lips, lids and brows towards its own average face), so a
fit to the points sees little of an expression: on synthetic dev faces with detector landmarks its expression error
is no lower than answering "neutral" (benchmarks/results/expression_settings_dev.md). A small network that maps
the detector's points to the weights, trained on renders whose weights are known, learns the detector's own
response to each expression: the same idea as mediapipe's blendshape head, whose weights do not ship offline.

Data (no evaluation data): synthetic ICT renders of seed 78 (the mesh / bias tables use 77, training 0, benchmarks
1000 and up, tuning 2000), n with the generator's procedural skin and n with real skin unwrapped from 16
faces_in_the_wild photos, with the generator's augmentation (light, pose, expression sampler). Every render is also
used mirrored (points flipped with the mesh's left/right partners, _L / _R weights swapped). Renders whose index is a
multiple of 10 are held out of training and give the printed held-out errors (stored in the file).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma.expression_regressor import (  # noqa: E402
    REGRESSOR_PATH,
    ExpressionRegressor,
    ExpressionRegressorNet,
    expression_mirror,
    ict_expression_names,
    mesh_features,
    mirror_mesh,
)

SEED = 78
CACHE = ROOT / "runs" / "cache" / "expression_regressor"
CHUNK = 100
_GENERATORS: dict = {}


def _collect_chunk(kind: str, start: int, stop: int) -> Path:
    """Render indices [start, stop) of one skin kind, detect, save mesh points, depth and the truths."""
    from msma.face_model import FaceModel
    from msma.landmarks import detect_faces
    from msma.synth import SyntheticFaceGenerator

    torch.set_num_threads(1)
    path = CACHE / f"{kind}_{start:06d}_{stop:06d}.npz"
    if path.is_file():
        return path
    if kind not in _GENERATORS:  # one per worker process and skin kind (the texture bank takes a while)
        model = FaceModel.ict()
        bank = None
        if kind == "wild":
            sys.path.insert(0, str(ROOT / "scripts"))
            from derive_detector_bias import wild_texture_bank

            bank = wild_texture_bank(model)
        # "procedural_features": the same faces as "procedural" (same seed) with eyebrows and lip colour painted on;
        # "procedural_features_shapes": those faces again with smooth bumps outside ICT's identity span (3 mm)
        _GENERATORS[kind] = SyntheticFaceGenerator(model, seed=SEED + (1 if kind == "wild" else 0),
                                                   texture_bank=bank, bank_probability=1.0 if bank is not None else 0.5,
                                                   facial_features=kind.startswith("procedural_features"),
                                                   shape_noise_mm=3.0 if kind.endswith("_shapes") else 0.0)
    gen = _GENERATORS[kind]
    dense, depth, expression, angles = [], [], [], []
    for first in range(start, stop, 8):
        b = gen.render_indices(range(first, min(stop, first + 8)))
        images = (b.images.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)
        for k, image in enumerate(images):
            faces = detect_faces(image, detector="mediapipe")
            ok = bool(faces) and faces[0].dense is not None and faces[0].dense_depth is not None
            dense.append(faces[0].dense[:478] if ok else np.full((478, 2), np.nan))
            depth.append(faces[0].dense_depth[:478] if ok else np.full(478, np.nan))
            expression.append(b.coefficients.expression[k].numpy())
            angles.append(b.coefficients.angles[k].numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, dense=np.array(dense, np.float32), depth=np.array(depth, np.float32),
                        expression=np.array(expression, np.float32), angles=np.array(angles, np.float32),
                        index=np.arange(start, stop))
    return path


def collect(kinds: list[str], n: int, workers: int, reuse: bool = False) -> dict[str, np.ndarray]:
    """Every chunk of renders [0, n) of each kind (the kinds interleaved), rendered where not saved yet; ``reuse``:
    only the chunks already saved."""
    jobs = [(kind, s, min(n, s + CHUNK)) for s in range(0, n, CHUNK) for kind in kinds]
    if reuse:
        jobs = [job for job in jobs if (CACHE / f"{job[0]}_{job[1]:06d}_{job[2]:06d}.npz").is_file()]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            paths = list(pool.map(_collect_chunk, *zip(*jobs)))
    else:
        paths = [_collect_chunk(*job) for job in jobs]
    parts = [dict(np.load(p)) for p in paths]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def train(features: np.ndarray, targets: np.ndarray, hidden: int, steps: int, dropout: float, weight_decay: float,
          seed: int = 0) -> ExpressionRegressorNet:
    """Binary cross-entropy on the weights (as the MSMA network's expression head), AdamW, one-cycle schedule."""
    torch.manual_seed(seed)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(targets, dtype=torch.float32)
    net = ExpressionRegressorNet(features.shape[1], hidden, targets.shape[1], dropout)
    net.set_normalisation(x.mean(0), x.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(x), (256,), generator=gen)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net.logits(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 1000 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    return net.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="renders per skin kind")
    parser.add_argument("--kinds", default="procedural,wild",
                        help="skins, comma-separated: procedural, procedural_features (eyebrows and lip colour "
                             "painted on, msma.synth facial_features), procedural_features_shapes (also shapes "
                             "outside ICT's span, shape_noise_mm 3), wild")
    parser.add_argument("--report", type=Path, default=None, help="also write the held-out report (JSON) here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="only train, on the chunks of renders already saved")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=REGRESSOR_PATH)
    args = parser.parse_args()
    data = collect(args.kinds.split(","), args.n, args.workers, args.reuse)
    ok = np.isfinite(data["dense"]).all((1, 2)) & np.isfinite(data["depth"]).all(1)
    held = (data["index"] % 10 == 0)
    print(f"{ok.sum()} of {len(ok)} renders detected")
    feats = mesh_features(data["dense"][ok], data["depth"][ok])
    mirrored = mesh_features(*mirror_mesh(data["dense"][ok], data["depth"][ok]))
    expr = data["expression"][ok]
    expr_m = expr[:, expression_mirror()]
    fit, test = ~held[ok], held[ok]
    net = train(np.concatenate([feats[fit], mirrored[fit]]), np.concatenate([expr[fit], expr_m[fit]]),
                args.hidden, args.steps, args.dropout, args.weight_decay)
    regressor = ExpressionRegressor(net)
    with torch.no_grad():
        pred = regressor.predict_features(feats[test])
        pred_m = regressor.predict_features(mirrored[test])[:, expression_mirror()]
    truth = expr[test]
    report = {
        "held_out_renders": int(test.sum()), "training_renders": int(fit.sum()),
        "neutral_mae": float(np.abs(truth).mean()),
        "regressor_mae": float(np.abs(pred - truth).mean()),
        "regressor_mirror_averaged_mae": float(np.abs(0.5 * (pred + pred_m) - truth).mean()),
        "hidden": args.hidden, "steps": args.steps, "dropout": args.dropout, "weight_decay": args.weight_decay,
        "seed": SEED, "renders_per_kind": args.n, "kinds": args.kinds,
    }
    names = ict_expression_names()
    moving = truth.std(0) > 0
    corr = {n: float(np.corrcoef(pred[:, j], truth[:, j])[0, 1]) for j, n in enumerate(names) if moving[j]}
    report["correlation_mean"] = float(np.mean(list(corr.values())))
    report["correlation"] = {n: round(c, 3) for n, c in corr.items()}
    for dead_zone in (0.1, 0.2, 0.3):
        report[f"regressor_mae_dead_zone_{dead_zone}"] = float(np.abs(np.where(pred >= dead_zone, pred, 0)
                                                                      - truth).mean())
    neutral = np.abs(truth).max(1) == 0
    if neutral.any():
        report["neutral_faces_largest_weight"] = float(pred[neutral].max(1).mean())
    print(json.dumps({k: v for k, v in report.items() if k != "correlation"}, indent=1))
    print("correlation of predicted and true weight:", ", ".join(
        f"{n} {c:.2f}" for n, c in sorted(corr.items(), key=lambda item: -item[1])[:12]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    regressor.save(args.out, report)
    if args.report is not None:
        args.report.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Why the synthetic expression target (MAE <= 0.5x answering "neutral") is out of reach of what a regressor sees.

    .venv/bin/python benchmarks/expression_loss.py   # -> benchmarks/results/expression_loss.json/.md (~5 min)

The synthetic faces' expressions are sparse (`msma.synth.priors.draw_parameters`: a quarter neutral, otherwise 1-4 of
53 blendshapes at 0.15-1), so the mean absolute error of answering 0 everywhere is small, and the answer that
minimises the MAE is the per-blendshape posterior *median*, which is 0 unless a blendshape is more likely on than
off. The test: the expression regressor's own data and network (`scripts/derive_expression_regressor.py`: mediapipe
mesh points of renders of seeds 78 / 79 with known weights, saved in runs/cache/expression_regressor; the procedural
and wild kinds, renders whose index is a multiple of 10 held out), trained once with binary cross-entropy (as the
shipped regressor and the MSMA network's expression head: posterior mean) and once with the MAE itself as the loss,
then scored with the dead zones of `msma/net/trust.py` (weights below it count as 0). Rows: MAE vs neutral over
all 53 weights and over the five the network card names (jawOpen, eyeBlink L/R, mouthSmile L/R).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma.expression_regressor import ExpressionRegressorNet, ict_expression_names, mesh_features  # noqa: E402

CACHE = ROOT / "runs" / "cache" / "expression_regressor"
KINDS = ("procedural", "wild")  # the shipped regressor's kinds
SEEN = ("jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "mouthSmile_R")
DEAD_ZONES = (0.0, 0.1, 0.2, 0.3, 0.4)
STEPS = 6000


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    feats, weights, indices = [], [], []
    files = [p for p in sorted(CACHE.glob("*.npz")) if p.stem.rsplit("_", 2)[0] in KINDS]
    if not files:
        raise FileNotFoundError(f"no renders in {CACHE}: run scripts/derive_expression_regressor.py first")
    for path in files:
        data = np.load(path)
        ok = np.isfinite(data["dense"]).all((1, 2)) & np.isfinite(data["depth"]).all(1)
        feats.append(mesh_features(data["dense"][ok], data["depth"][ok]))
        weights.append(data["expression"][ok])
        indices.append(data["index"][ok])
    return np.concatenate(feats), np.concatenate(weights), np.concatenate(indices)


def train(features: torch.Tensor, targets: torch.Tensor, loss: str, seed: int = 0) -> ExpressionRegressorNet:
    """The shipped regressor's network and schedule (256 hidden, dropout 0.1), with ``loss`` "bce" or "mae"."""
    torch.manual_seed(seed)
    net = ExpressionRegressorNet(features.shape[1], 256, targets.shape[1], dropout=0.1)
    net.set_normalisation(features.mean(0), features.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=STEPS)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        idx = torch.randint(0, len(features), (256,), generator=gen)
        logits = net.logits(features[idx])
        if loss == "bce":
            value = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[idx])
        else:
            value = (torch.sigmoid(logits) - targets[idx]).abs().mean()
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
    return net.eval()


def main() -> int:
    torch.set_num_threads(2)
    features, weights, index = load()
    held_out = index % 10 == 0
    x = torch.as_tensor(features[~held_out])
    y = torch.as_tensor(weights[~held_out])
    truth = weights[held_out]
    names = list(ict_expression_names())
    seen = [names.index(n) for n in SEEN]
    neutral_all, neutral_seen = np.abs(truth).mean(), np.abs(truth[:, seen]).mean()
    rows = []
    for loss in ("bce", "mae"):
        net = train(x, y, loss)
        with torch.no_grad():
            predicted = torch.sigmoid(net.logits(torch.as_tensor(features[held_out]))).numpy()
        for dead_zone in DEAD_ZONES:
            p = np.where(predicted < dead_zone, 0.0, predicted)
            err = np.abs(p - truth)
            rows.append({"loss": loss, "dead_zone": dead_zone, "mae": float(err.mean()),
                         "vs_neutral": float(err.mean() / neutral_all),
                         "seen_vs_neutral": float(err[:, seen].mean() / neutral_seen),
                         "share_all_zero": float((p == 0).all(1).mean())})
    summary = {"training_renders": int((~held_out).sum()), "held_out_renders": int(held_out.sum()),
               "neutral_mae": float(neutral_all), "neutral_mae_seen": float(neutral_seen),
               "share_neutral_truth": float((truth == 0).all(1).mean()), "rows": rows}
    out = ROOT / "benchmarks" / "results"
    (out / "expression_loss.json").write_text(json.dumps(summary, indent=1))
    lines = ["# Expression MAE against answering neutral, by training loss — benchmarks/expression_loss.py", "",
             f"mediapipe mesh points -> 53 ARKit weights; {summary['training_renders']} training renders, "
             f"{summary['held_out_renders']} held out ({summary['share_neutral_truth']:.2f} of them neutral). "
             f"Neutral MAE {neutral_all:.4f} (all 53), {neutral_seen:.4f} ({', '.join(SEEN)}).", "",
             "| loss | dead zone | MAE | vs neutral | vs neutral, the five seen | share answered all-zero |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['loss']} | {r['dead_zone']:.1f} | {r['mae']:.4f} | {r['vs_neutral']:.3f} | "
              f"{r['seen_vs_neutral']:.3f} | {r['share_all_zero']:.2f} |" for r in rows]
    (out / "expression_loss.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

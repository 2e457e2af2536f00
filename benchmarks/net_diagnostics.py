"""Why a network does not learn expression / identity: per-term gradient at the shared features, translation error
per axis against the prior, expression MAE against neutral and against a constant-mean answer, and the Pearson
correlation of predicted and true weight per blendshape (the network's raw outputs; does it learn anything at all).

    python benchmarks/net_diagnostics.py --weights weights/msma_light.safetensors --n 32 --size 128 \
        --out benchmarks/results --name net_diagnostics

Held-out synthetic faces (seed 1000) rendered at --size; the loss terms are `msma.train.supervised_losses` with the
default `LossWeights` (plus expression_bce 1.0 for comparison); gradient norms are of each weighted term with respect
to the stage 2/3/4 feature maps the heads read, on one batch in training mode.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msma import train as T  # noqa: E402
from msma.face_model import FaceModel  # noqa: E402
from msma.net import load_checkpoint  # noqa: E402
from msma.synth import SyntheticFaceGenerator  # noqa: E402


@torch.no_grad()
def expression_correlation(net, model: FaceModel, size: int, n: int, batch: int = 32) -> dict:
    """Pearson r of predicted vs true weight on ``n`` held-out faces (seed 1000), for every blendshape that varies,
    their mean, and the frequent ones by name."""
    gen = SyntheticFaceGenerator(model, seed=1000, image_size=size)
    pred, true = [], []
    for start in range(0, n, batch):
        b = gen.render_indices(range(start, min(n, start + batch)))
        pred.append(net(b.images)["expression"].float())
        true.append(b.coefficients.expression)
    p, t = torch.cat(pred), torch.cat(true)
    p, t = p - p.mean(0), t - t.mean(0)
    denom = (p.norm(dim=0) * t.norm(dim=0)).clamp_min(1e-12)
    r = (p * t).sum(0) / denom
    varies = (t.abs().sum(0) > 0) & (p.abs().sum(0) > 0)
    names = model.expression_names
    named = {k: round(float(r[names.index(k)]), 3) for k in ("jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L",
                                                             "mouthSmile_R", "browInnerUp_L", "mouthFunnel")
             if k in names}
    return {"n": n, "mean_r": round(float(r[varies].mean()), 3), "blendshapes_varying": int(varies.sum()),
            "by_name": named}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="weights/msma_light.safetensors")
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--size", type=int, default=None, help="input size (default: the network's)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--name", default="net_diagnostics")
    parser.add_argument("--n-correlation", type=int, default=256,
                        help="held-out faces for the per-blendshape correlation of predicted and true weights")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = FaceModel.ict()
    net = load_checkpoint(args.weights)
    size = args.size or net.config.image_size
    b = SyntheticFaceGenerator(model, seed=1000, image_size=size).sample(args.n)
    target = b.coefficients
    w = T.LossWeights(expression_bce=1.0)
    net.train()
    feats = net.features(b.images)
    for f in feats:
        f.retain_grad()
    out = net.heads(feats, return_logits=True)
    logits = out.pop("expression_logits")
    pred = T.predictions_to_coefficients(out)
    lm = b.landmarks2d * (model.camera.image_size / size)
    terms = T.supervised_losses(model, pred, target, lm, w, b.texture_valid, expression_logits=logits,
                                expression_activation=net.config.expression_activation)
    grads = {}
    for name, value in terms.items():
        for f in feats:
            f.grad = None
        (getattr(w, name) * value).backward(retain_graph=True)
        grads[name] = {"value": float(value.detach()), "weighted": float(getattr(w, name) * value.detach()),
                       "grad_norm_stage2_3_4": [float(f.grad.norm()) if f.grad is not None else 0.0 for f in feats]}
    net.eval()
    with torch.no_grad():
        ev = net(b.images)
    t, gt_e = target.translation, target.expression
    exp = ev["expression"]
    result = {
        "weights": args.weights, "n": args.n, "input": size, "terms": grads,
        "translation_mse_per_axis": ((ev["translation"] - t) ** 2).mean(0).tolist(),
        "translation_prior_variance_per_axis": t.var(0).tolist(),
        "identity_mse": float(((ev["identity"] - target.identity) ** 2).mean()),
        "identity_mse_mean_face": float((target.identity**2).mean()),
        "expression_mae": float((exp - gt_e).abs().mean()),
        "expression_mae_neutral": float(gt_e.abs().mean()),
        "expression_mae_constant_mean": float((gt_e.mean(0, keepdim=True) - gt_e).abs().mean()),
        "expression_mean_prediction": float(exp.mean()),
    }
    result["expression_correlation"] = expression_correlation(net, model, size, args.n_correlation)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / f"{args.name}.json").write_text(text)


if __name__ == "__main__":
    main()

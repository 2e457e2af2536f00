"""How much of the synthetic expression error a network can see at its input size, and what it gets of it.

    .venv/bin/python benchmarks/expression_visibility.py --n 512  # -> benchmarks/results/expression_visibility.*

For every ARKit blendshape of ICT-FaceKit: the largest image displacement of a face vertex that the blendshape makes
at weight 1 (mean identity, frontal pose, the 224 aligned-crop camera, scaled to 128 / 192 / 224 px inputs) and its
share of the "answer neutral" baseline's expression MAE on the synthetic benchmark's faces (seed 1000, the sampler
of `msma.synth.priors`). From those:

* ceilings: the MAE of an oracle that answers every blendshape moving at least t px exactly and the rest neutral,
  relative to the neutral baseline (t = 1, 2, 3 px at each input size): how much of the baseline is even visible;
* the shipped networks' MAE on the same faces (rendered at 224 and resized to their input, as
  `Reconstructor.predict` does; raw and with their calibrated trust), per visibility group of their input size.

Synthetic faces of the benchmark seed only: nothing here is tuned.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma.face_model import Coefficients, FaceModel  # noqa: E402

SIZES = (128, 192, 224)
THRESHOLDS_PX = (1.0, 2.0, 3.0)
GROUPS_PX = ((0.0, 2.0), (2.0, 4.0), (4.0, np.inf))  # max displacement at weight 1, at the network's input size
SEED = 1000


@torch.no_grad()
def blendshape_displacement(model: FaceModel) -> np.ndarray:
    """(n_expression,) largest image displacement (224-crop pixels) of a face vertex at weight 1, frontal mean face."""
    zero = Coefficients.zeros(model, 1)

    def project(expression: torch.Tensor) -> torch.Tensor:
        vertices = model.pose(model(zero.identity, expression), zero.angles, zero.translation)
        return model.camera.project(vertices)[0, model.face_vertices, :2]

    base = project(zero.expression)
    out = np.zeros(model.n_expression)
    for k in range(model.n_expression):
        expression = torch.zeros(1, model.n_expression)
        expression[0, k] = 1.0
        out[k] = float((project(expression) - base).norm(dim=-1).max())
    return out * 224.0 / model.camera.image_size


@torch.no_grad()
def network_predictions(weights: Path, model: FaceModel, n: int, batch: int = 16) -> tuple[np.ndarray, np.ndarray,
                                                                                             np.ndarray, int]:
    """(true, raw predicted, calibrated predicted) expression weights (n, 53) and the network's input size."""
    from msma.net import load_checkpoint
    from msma.net.trust import load_trust
    from msma.synth import SyntheticFaceGenerator

    network = load_checkpoint(weights)
    trust = load_trust(weights)
    size = network.config.image_size
    backgrounds = ROOT.parent / "shared" / "data" / "old_photos"
    gen = SyntheticFaceGenerator(model, seed=SEED, image_size=224,
                                 backgrounds=backgrounds if backgrounds.is_dir() else None)
    true, raw = [], []
    for start in range(0, n, batch):
        b = gen.render_indices(range(start, min(n, start + batch)))
        images = b.images
        if images.shape[-1] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                     align_corners=False, antialias=True)
        raw.append(network(images)["expression"].float())
        true.append(b.coefficients.expression)
    raw_t = torch.cat(raw)
    return torch.cat(true).numpy(), raw_t.numpy(), trust.scale_expression(raw_t).numpy(), size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512, help="synthetic faces (seed 1000)")
    parser.add_argument("--weights", nargs="*", type=Path,
                        default=[ROOT / "weights" / f"{name}.safetensors" for name in ("msma_light", "plain_light")])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--name", default="expression_visibility")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = FaceModel.ict()
    names = model.expression_names
    displacement224 = blendshape_displacement(model)

    networks = {}
    true = None
    for path in args.weights:
        if not path.is_file():
            print(f"skipping {path}: not found")
            continue
        true, raw, calibrated, size = network_predictions(path, model, args.n)
        networks[path.stem] = {"input": size, "raw": raw, "calibrated": calibrated}
    if true is None:  # no network: the sampler's weights alone give the ceilings
        from msma.synth.priors import draw_parameters, expression_tables

        probs, partner = expression_tables(names)
        rng = np.random.default_rng(SEED)
        true = np.stack([draw_parameters(rng, model, probs, partner)["expression"] for _ in range(args.n)])
    neutral_mae = float(np.abs(true).mean())
    share = np.abs(true).mean(0) / np.abs(true).mean(0).sum()

    ceilings = {}
    for size in SIZES:
        moved = displacement224 * size / 224.0
        ceilings[str(size)] = {f"{t:g}": round(float(np.abs(true[:, moved < t]).sum() / true.size / neutral_mae), 4)
                               for t in THRESHOLDS_PX}
    result = {
        "n": len(true), "seed": SEED, "neutral_mae": round(neutral_mae, 5),
        "blendshapes": {names[k]: {"max_displacement_px_224": round(float(displacement224[k]), 3),
                                   "share_of_neutral_mae": round(float(share[k]), 4)} for k in range(len(names))},
        "oracle_ceiling_vs_neutral": ceilings, "networks": {},
    }
    for name, entry in networks.items():
        moved = displacement224 * entry["input"] / 224.0
        groups = {}
        for lo, hi in GROUPS_PX:
            cols = (moved >= lo) & (moved < hi)
            key = f"{lo:g}-{hi:g} px"
            row = {"blendshapes": int(cols.sum()),
                   "share_of_neutral_mae": round(float(share[cols].sum()), 4),
                   "neutral_mae": round(float(np.abs(true[:, cols]).mean()), 5) if cols.any() else None}
            for kind in ("raw", "calibrated"):
                row[f"{kind}_mae"] = (round(float(np.abs(entry[kind][:, cols] - true[:, cols]).mean()), 5)
                                      if cols.any() else None)
            groups[key] = row
        result["networks"][name] = {
            "input": entry["input"],
            "raw_mae": round(float(np.abs(entry["raw"] - true).mean()), 5),
            "calibrated_mae": round(float(np.abs(entry["calibrated"] - true).mean()), 5),
            "groups": groups,
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(report(result, args.name))
    print(report(result, args.name))
    return 0


def report(result: dict, name: str) -> str:
    lines = [f"# Expression visibility at the network's input size — benchmarks/expression_visibility.py ({name})", "",
             f"{result['n']} synthetic faces (seed {result['seed']}); neutral-baseline expression MAE "
             f"{result['neutral_mae']:.4f}. Displacement: the largest image motion of a face vertex at weight 1 "
             "(mean identity, frontal).", "",
             "Oracle ceiling (exact on every blendshape moving >= t px at weight 1, neutral on the rest), MAE vs "
             "the neutral baseline:", "",
             "| input px | " + " | ".join(f"t = {t:g} px" for t in THRESHOLDS_PX) + " |",
             "|---|" + "---|" * len(THRESHOLDS_PX)]
    for size, row in result["oracle_ceiling_vs_neutral"].items():
        lines.append(f"| {size} | " + " | ".join(f"{row[f'{t:g}']:.3f}" for t in THRESHOLDS_PX) + " |")
    for net, entry in result["networks"].items():
        lines += ["", f"`{net}` ({entry['input']} px input): MAE raw {entry['raw_mae']:.4f}, calibrated "
                  f"{entry['calibrated_mae']:.4f} ({entry['calibrated_mae'] / result['neutral_mae']:.3f}x neutral)", "",
                  "| blendshapes moving (at its input) | count | share of the neutral MAE | neutral MAE | raw MAE | "
                  "calibrated MAE | calibrated vs neutral |", "|---|---|---|---|---|---|---|"]
        for key, row in entry["groups"].items():
            if not row["blendshapes"]:
                continue
            lines.append(f"| {key} | {row['blendshapes']} | {row['share_of_neutral_mae']:.3f} | "
                         f"{row['neutral_mae']:.4f} | {row['raw_mae']:.4f} | {row['calibrated_mae']:.4f} | "
                         f"{row['calibrated_mae'] / row['neutral_mae']:.3f} |")
    lines += ["", "Per blendshape (sorted by displacement):", "", "| blendshape | max displacement px at 224 | at 128 "
              "| share of the neutral MAE |", "|---|---|---|---|"]
    for bs, row in sorted(result["blendshapes"].items(), key=lambda kv: kv[1]["max_displacement_px_224"]):
        d = row["max_displacement_px_224"]
        lines.append(f"| {bs} | {d:.2f} | {d * 128 / 224:.2f} | {row['share_of_neutral_mae']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())

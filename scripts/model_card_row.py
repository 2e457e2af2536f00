"""One model-card row (markdown) from a checkpoint's training metadata and its `python -m msma evaluate` JSON.

    python scripts/model_card_row.py --weights weights/msma_paper.safetensors \
        --evaluation benchmarks/results/msma_paper.json --out benchmarks/results/msma_paper_card_row.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msma.net import read_checkpoint_metadata  # noqa: E402

HEADER = ("| weights | network | input | steps x batch x processes | wall time | device | vertex mm (mean / median) "
          "| pose deg | expression MAE (neutral) |\n|---|---|---|---|---|---|---|---|---|")


def card_row(weights: str | Path, evaluation: str | Path, method: str = "network") -> str:
    config, meta = read_checkpoint_metadata(weights)
    training = meta.get("training", {})
    results = json.loads(Path(evaluation).read_text())["synthetic"]["methods"]
    net = results[method]
    neutral = results.get("mean shape (reference)", {}).get("expression_mae")
    variant = f"{config.backbone} x{config.width:g}" + (" + fusion" if config.fusion else "") + (
        " + MLKA" if config.attention else "")
    batch = training.get("images_seen", 0) // max(training.get("step", 1) * training.get("processes", 1), 1)
    neutral_txt = f" ({neutral:.4f})" if neutral is not None else ""
    return (f"| `{Path(weights).name}` | {variant} | {config.image_size} | {training.get('step')} x {batch} x "
            f"{training.get('processes', 1)} | {training.get('wall_time_s', 0) / 60:.1f} min | "
            f"{training.get('device')} | {net['vertex_mm']:.2f} / {net['vertex_mm_median']:.2f} | "
            f"{net['pose_deg']:.2f} | {net['expression_mae']:.4f}{neutral_txt} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--evaluation", required=True, help="JSON written by python -m msma evaluate --synthetic")
    parser.add_argument("--method", default="network")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    text = HEADER + "\n" + card_row(args.weights, args.evaluation, args.method) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()

"""Average the weights of network checkpoints of one layout (a "model soup"): fine-tunes of one starting point lie
in one basin, and their average is often better than each of them.

    python scripts/average_checkpoints.py weights/msma_light.safetensors runs/exp/msma_r6/export.safetensors \
        --out runs/exp/msma_soup56/export.safetensors

Floating tensors (weights, batch-norm statistics) are averaged in float32; integer ones (batch-norm step counters)
are taken from the first file. The config and training metadata of the first file are kept, with the sources listed
under ``averaged_from``. Refuses files whose configs differ.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from msma.net.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True,
                        help="store floating tensors as float16 like the shipped files (default on)")
    args = parser.parse_args()
    if len(args.checkpoints) < 2:
        parser.error("give at least two checkpoints")

    configs = [read_checkpoint_metadata(path) for path in args.checkpoints]
    first_config, first_metadata = configs[0]
    for path, (config, _) in zip(args.checkpoints[1:], configs[1:]):
        if config.to_dict() != first_config.to_dict():
            parser.error(f"{path} has another network config than {args.checkpoints[0]}")

    models = [load_checkpoint(path) for path in args.checkpoints]
    states = [model.state_dict() for model in models]
    averaged = {}
    for key, value in states[0].items():
        if value.is_floating_point():
            averaged[key] = torch.stack([state[key].float() for state in states]).mean(0).to(value.dtype)
        else:
            averaged[key] = value
    models[0].load_state_dict(averaged, strict=True)
    metadata = dict(first_metadata)
    metadata["averaged_from"] = [str(path) for path in args.checkpoints]
    save_checkpoint(models[0], args.out, metadata=metadata, fp16=args.fp16)
    print(f"wrote {args.out} (average of {len(args.checkpoints)} checkpoints)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Measure and store how far the fitter may trust each network's identity and expression (`msma.net.trust`).

    .venv/bin/python scripts/calibrate_network_trust.py weights/msma_light.safetensors [more weights ...] [--n 256]

Renders ``--n`` synthetic faces of the calibration seed (1500; the synthetic benchmark's held-out seed is 1000) with
backgrounds from ../shared/data/old_photos when present, and writes one entry per weights file to
msma/data/network_trust.json (identity / expression trust and the error curve over the trust grid).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import torch

    from msma.face_model import FaceModel
    from msma.net import load_checkpoint
    from msma.net.trust import CALIBRATION_SEED, measure_trust, write_trust_entry

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--seed", type=int, default=CALIBRATION_SEED)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = FaceModel.ict()
    backgrounds = REPO.parent / "shared" / "data" / "old_photos"
    for path in args.weights:
        entry = measure_trust(load_checkpoint(path), model, n=args.n, seed=args.seed,
                              backgrounds=backgrounds if backgrounds.is_dir() else None)
        write_trust_entry(path, entry)
        print(f"{path}: identity trust {entry['identity']} (vertex mm at 0 / 1: {entry['identity_vertex_error_mm'][0]}"
              f" / {entry['identity_vertex_error_mm'][-1]}); expression trust {entry['expression']}, dead zone "
              f"{entry['expression_threshold']} (MAE {entry['expression_mae_best']}; untouched "
              f"{entry['expression_mae_untouched']}, neutral {entry['expression_mae_neutral']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

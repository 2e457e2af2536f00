"""Synthetic 3D benchmark (held-out seed): network vs network + refinement vs fitting vs ablation network.

    .venv/bin/python benchmarks/synthetic_3d.py                       # 64 faces, seed 1000 -> benchmarks/results/
    .venv/bin/python benchmarks/synthetic_3d.py --n 16 --fit-landmarks detector

A thin wrapper of `python -m msma evaluate --synthetic N` (see msma/evaluate.py for the protocol): mean vertex error
(mm) on the face region after rigid Kabsch alignment, head-pose error (degrees), expression-weight MAE, seconds per
image. Training uses synthetic seed 0; the default seed here (1000) never overlaps it. Backgrounds come from
../shared/data/old_photos (not used as training backgrounds) when present; no texture bank (the bank's faces are
training photos).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from msma import evaluate  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--fit-landmarks", choices=("noisy-gt", "detector"), default="noisy-gt")
    parser.add_argument("--name", default="synthetic_3d")
    known, rest = parser.parse_known_args()
    backgrounds = ROOT.parent / "shared" / "data" / "old_photos"
    argv = ["--synthetic", str(known.n), "--seed", str(known.seed), "--fit-landmarks", known.fit_landmarks,
            "--out", str(ROOT / "benchmarks" / "results"), "--name", known.name, *rest]
    if backgrounds.is_dir() and "--backgrounds" not in rest:
        argv += ["--backgrounds", str(backgrounds)]
    args = evaluate.add_arguments(argparse.ArgumentParser()).parse_args(argv)
    return evaluate.main(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Calibrate the app's same / different identity threshold from benchmarks/identity_roc.py's per-pair distances.

    .venv/bin/python benchmarks/identity_roc.py --method fitting      # distances of the current code
    .venv/bin/python benchmarks/identity_threshold.py                 # -> msma/data/identity_calibration.json

The threshold maximises TPR - FPR over all pairs; the error rates published with it are leave-one-pair-out (each
pair judged by a threshold chosen without it) with Wilson 95 % intervals. Refused (nothing written) when the ROC file
was made by another version of the reconstruction code than the one checked out (its fingerprint differs), or has
fewer than 5 pairs of either kind. The app gives a verdict only with this file (msma.identity_calibration).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from msma.identity_calibration import CALIBRATION_PATH, calibrate, fingerprint  # noqa: E402

ROC = REPO / "benchmarks" / "results" / "identity_roc.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--roc", type=Path, default=ROC)
    p.add_argument("--out", type=Path, default=CALIBRATION_PATH)
    args = p.parse_args(argv)
    data = json.loads(args.roc.read_text())
    method = data["method"]
    current = fingerprint(method, data.get("weights") if method != "fitting" else None)
    if data.get("fingerprint") != current:
        print(f"{args.roc} was not made by the code checked out now (fingerprint "
              f"{str(data.get('fingerprint'))[:12]} vs {current[:12]}): rerun benchmarks/identity_roc.py "
              f"--method {method} first; nothing written", file=sys.stderr)
        return 2
    pairs = data["pairs"]
    dist = np.array([r["mean_mm"] for r in pairs])
    same = np.array([r["same_person"] for r in pairs], dtype=bool)
    try:
        cal = calibrate(dist, same, method=method, fingerprint=current,
                        source=f"{len(pairs)} pairs of {data['pairs_file']}",
                        photo_sha256=list(data.get("photo_sha256", {}).values()))
    except ValueError as exc:
        print(f"cannot calibrate: {exc}; nothing written", file=sys.stderr)
        return 2
    print(f"wrote {cal.save(args.out)}: threshold {cal.threshold_mm:.2f} mm; leave-one-pair-out: same called "
          f"different {cal.false_non_match_rate:.0%} of {cal.n_same}, different called same "
          f"{cal.false_match_rate:.0%} of {cal.n_different}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

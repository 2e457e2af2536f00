"""When may the app say "same person" / "different people"? Only with a calibrated, current threshold.

A calibration (``msma/data/identity_calibration.json``, written by ``benchmarks/identity_threshold.py`` from the
per-pair distances of ``benchmarks/identity_roc.py``) holds a threshold on the mean identity distance, the error
rates it has on pairs *not used to choose it* (leave-one-pair-out), how many pairs that rests on, the method and a
fingerprint of the code and weights that produced the distances, and the SHA-256 of every calibration photo.

:func:`identity_verdict` gives a verdict only when such a calibration exists for the method being used, its
fingerprint matches the code running now (distances of another version of the fitter are not comparable), and the
two photos being judged are not both calibration photos (that pair's verdict would be in-sample). Otherwise it says
why there is no verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

CALIBRATION_PATH = Path(__file__).resolve().parent / "data" / "identity_calibration.json"
# The code that turns a photo into the neutral identity shape that is compared (and the comparison itself).
FINGERPRINT_MODULES = ("api.py", "align.py", "fit.py", "face_model.py", "losses.py", "compare.py", "image_io.py",
                       "landmarks", "net")
MIN_SAME_PAIRS = 5  # fewer same-person pairs than this: no threshold is fitted at all


def fingerprint(method: str, weights: str | os.PathLike | None = None) -> str:
    """SHA-256 over the identity-shape code (and the network weights for network methods)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(method.encode())
    for name in FINGERPRINT_MODULES:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            h.update(f.relative_to(root).as_posix().encode())
            h.update(f.read_bytes())
    if weights is not None and method != "fitting":
        h.update(Path(weights).read_bytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Calibration:
    method: str
    fingerprint: str
    threshold_mm: float  # same person when the mean distance is <= this
    n_same: int
    n_different: int
    false_non_match_rate: float  # same-person pairs called different, leave-one-pair-out
    false_match_rate: float  # different-people pairs called the same, leave-one-pair-out
    false_non_match_ci95: tuple[float, float]
    false_match_ci95: tuple[float, float]
    source: str  # where the pairs came from
    photo_sha256: list[str] = field(default_factory=list)

    def save(self, path: str | os.PathLike = CALIBRATION_PATH) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def load_calibration(path: str | os.PathLike = CALIBRATION_PATH) -> Calibration | None:
    try:
        data = json.loads(Path(path).read_text())
        data["false_non_match_ci95"] = tuple(data["false_non_match_ci95"])
        data["false_match_ci95"] = tuple(data["false_match_ci95"])
        return Calibration(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def youden_threshold(dist: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold maximising TPR - FPR (ties: the smallest), midway between neighbouring distances."""
    values = np.unique(dist)
    cands = np.concatenate([[values[0] - 1e-9], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]])
    best, best_j = cands[0], -np.inf
    for t in cands:
        j = (dist[same] <= t).mean() - (dist[~same] <= t).mean()
        if j > best_j + 1e-12:
            best, best_j = t, j
    return float(best)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def calibrate(dist: np.ndarray, same: np.ndarray, *, method: str, fingerprint: str, source: str,
              photo_sha256: list[str] | None = None) -> Calibration:
    """Threshold on all pairs; error rates from leave-one-pair-out (each pair judged by a threshold chosen
    without it), with Wilson 95 % intervals."""
    dist, same = np.asarray(dist, dtype=np.float64), np.asarray(same, dtype=bool)
    if same.sum() < MIN_SAME_PAIRS or (~same).sum() < MIN_SAME_PAIRS:
        raise ValueError(f"{int(same.sum())} same / {int((~same).sum())} different pairs: at least "
                         f"{MIN_SAME_PAIRS} of each are needed to calibrate a threshold")
    wrong_same = wrong_diff = 0
    for i in range(len(dist)):
        keep = np.arange(len(dist)) != i
        t = youden_threshold(dist[keep], same[keep])
        if same[i] and dist[i] > t:
            wrong_same += 1
        elif not same[i] and dist[i] <= t:
            wrong_diff += 1
    n_same, n_diff = int(same.sum()), int((~same).sum())
    return Calibration(method=method, fingerprint=fingerprint, threshold_mm=youden_threshold(dist, same),
                       n_same=n_same, n_different=n_diff, false_non_match_rate=wrong_same / n_same,
                       false_match_rate=wrong_diff / n_diff, false_non_match_ci95=wilson(wrong_same, n_same),
                       false_match_ci95=wilson(wrong_diff, n_diff), source=source,
                       photo_sha256=sorted(set(photo_sha256 or [])))


def identity_verdict(distance_mm: float, method: str, current_fingerprint: str | None,
                     photo_hashes: tuple[str | None, str | None] = (None, None),
                     calibration: Calibration | None = None) -> str:
    """Markdown: the verdict with its measured error rates, or why there is none."""
    cal = calibration if calibration is not None else load_calibration()
    if cal is None:
        return ("No same / different verdict: no threshold has been calibrated for this app "
                "(benchmarks/identity_threshold.py). The distance alone does not tell identities apart reliably.")
    if cal.method != method:
        return (f"No same / different verdict: the threshold was calibrated for the {cal.method!r} method, not "
                f"{method!r} (distances of different methods are not comparable).")
    if current_fingerprint is not None and cal.fingerprint != current_fingerprint:
        return ("No same / different verdict: the threshold was calibrated with another version of the "
                "reconstruction code or weights; rerun benchmarks/identity_roc.py, then "
                "benchmarks/identity_threshold.py.")
    if all(h is not None and h in cal.photo_sha256 for h in photo_hashes):
        return ("No same / different verdict: both photos were used to calibrate the threshold (the verdict would be "
                "in-sample).")
    same = distance_mm <= cal.threshold_mm
    guess = "likely the same person" if same else "likely different people"
    fnm, fm = cal.false_non_match_ci95, cal.false_match_ci95
    return (f"At the calibrated threshold {cal.threshold_mm:.2f} mm: **{guess}**. Measured on pairs not used to set "
            f"it ({cal.source}; leave-one-pair-out): same-person pairs called different "
            f"{100 * cal.false_non_match_rate:.0f} % (95 % CI {100 * fnm[0]:.0f}–{100 * fnm[1]:.0f} %, "
            f"{cal.n_same} pairs), different people called the same {100 * cal.false_match_rate:.0f} % "
            f"(95 % CI {100 * fm[0]:.0f}–{100 * fm[1]:.0f} %, {cal.n_different} pairs). 3D shape alone is a weak "
            "identity cue.")

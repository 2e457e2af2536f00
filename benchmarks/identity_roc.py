"""Same-person vs different-person separation of the Compare tab's identity distance (ROC AUC).

    .venv/bin/python benchmarks/identity_roc.py [--pairs ../shared/data/faces_in_the_wild/pairs.csv]
        [--method fitting] [--no-photometric] [--align rigid]

Each photo's largest face is reconstructed once (texture off; cached in runs/cache/identity_roc/, gitignored),
then every pair of pairs.csv gets the distance the app shows: ``msma.compare.identity_distance`` between the two
identity-only (neutral) shapes over the model's face region, mean over vertices in mm. Smaller distance = "same
person". Writes benchmarks/results/identity_roc.json (AUC, best threshold, per-pair distances) and
benchmarks/results/identity_roc.html (plotly ROC curve). The AUC is the rank statistic (Mann-Whitney U), numpy only.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_PAIRS = REPO.parent / "shared" / "data" / "faces_in_the_wild" / "pairs.csv"
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "runs" / "cache" / "identity_roc"


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = positive) via average ranks (ties count one half)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("need both positive and negative examples")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, thresholds) sweeping the threshold from high to low."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    thresholds = np.concatenate([[np.inf], np.unique(scores)[::-1]])
    tpr = np.array([(scores[labels] >= t).mean() for t in thresholds])
    fpr = np.array([(scores[~labels] >= t).mean() for t in thresholds])
    return fpr, tpr, thresholds


def bootstrap_auc_ci(scores: np.ndarray, labels: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the AUC, resampling positives and negatives separately."""
    rng = np.random.default_rng(seed)
    pos, neg = scores[labels], scores[~labels]
    aucs = []
    for _ in range(n):
        p = rng.choice(pos, len(pos))
        q = rng.choice(neg, len(neg))
        aucs.append(roc_auc(np.concatenate([p, q]), np.r_[np.ones(len(p), bool), np.zeros(len(q), bool)]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return float(lo), float(hi)


def read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    with open(path, newline="") as fh:
        return [(r["file_x"], r["file_y"], r["same_person"].strip().lower() in ("true", "1", "yes"))
                for r in csv.DictReader(fh)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--method", default="auto", help="auto | network | network+refine | fitting")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--no-photometric", action="store_true", help="landmark fitting only (faster)")
    parser.add_argument("--align", default="rigid", choices=("rigid", "similarity"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="identity_roc",
                        help="result file stem (identity_threshold.py calibrates from identity_roc.json)")
    args = parser.parse_args(argv)
    if not args.pairs.is_file():
        print(f"pairs file not found: {args.pairs}", file=sys.stderr)
        return 2

    from msma.api import Reconstructor
    from msma.compare import identity_distance
    from msma.identity_calibration import file_sha256, fingerprint
    from msma.landmarks import NoFaceError

    pairs = read_pairs(args.pairs)
    photos = sorted({p for a, b, _ in pairs for p in (a, b)})
    rec = Reconstructor(method=args.method, weights=args.weights, photometric=not args.no_photometric,
                        max_side=2048)
    region = rec.model.face_vertices.cpu().numpy()
    tag = f"{rec.method}{'' if rec.photometric else '-nophoto'}"
    if rec.weights_path is not None and rec.method != "fitting":
        tag += "-" + hashlib.sha1(str(rec.weights_path).encode()).hexdigest()[:8]
    code = fingerprint(rec.method, rec.weights_path if rec.network is not None else None)
    cache_dir = CACHE / f"{tag}-{code[:12]}"  # shapes of another version of the code are never reused
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"{len(pairs)} pairs, {len(photos)} photos, method {rec.method}, photometric {rec.photometric}")

    neutral: dict[str, np.ndarray] = {}
    failures: dict[str, str] = {}
    seconds = []
    for i, name in enumerate(photos, 1):
        cached = cache_dir / f"{Path(name).stem}.npy"
        if cached.is_file():
            neutral[name] = np.load(cached)
            continue
        start = time.perf_counter()
        try:
            result = rec(args.pairs.parent / name, largest_only=True, texture=False)
        except (NoFaceError, ValueError) as exc:
            failures[name] = str(exc)
            print(f"[{i}/{len(photos)}] {name}: FAILED {exc}")
            continue
        seconds.append(time.perf_counter() - start)
        neutral[name] = result.faces[0].neutral_vertices.astype(np.float32)
        np.save(cached, neutral[name])
        print(f"[{i}/{len(photos)}] {name}: {seconds[-1]:.1f} s")

    rows = []
    for a, b, same in pairs:
        if a not in neutral or b not in neutral:
            continue
        d = identity_distance(neutral[a], neutral[b], region_vertex_indices=region, align=args.align)
        rows.append({"file_x": a, "file_y": b, "same_person": same, "mean_mm": d.mean_mm, "median_mm": d.median_mm,
                     "rms_mm": d.rms_mm})
    labels = np.array([r["same_person"] for r in rows])
    dist = np.array([r["mean_mm"] for r in rows])
    auc = roc_auc(-dist, labels)
    fpr, tpr, thr = roc_curve(-dist, labels)
    best = int(np.argmax(tpr - fpr))
    threshold_mm = float(-thr[best]) if np.isfinite(thr[best]) else float(dist.min())
    summary = {
        "pairs_file": str(args.pairs.relative_to(REPO.parent) if args.pairs.is_relative_to(REPO.parent)
                          else args.pairs),
        "method": rec.method,
        "photometric": rec.photometric,
        "weights": str(rec.weights_path) if rec.network is not None else None,
        "align": args.align,
        "metric": "mean per-vertex distance (mm) of the neutral identity shapes over the face region",
        "n_pairs": len(rows),
        "n_same": int(labels.sum()),
        "n_different": int((~labels).sum()),
        "auc": auc,
        "auc_95ci_bootstrap": bootstrap_auc_ci(-dist, labels),
        "auc_median_mm": roc_auc(-np.array([r["median_mm"] for r in rows]), labels),
        "auc_rms_mm": roc_auc(-np.array([r["rms_mm"] for r in rows]), labels),
        "threshold_mm": threshold_mm,  # best Youden J on these same pairs (in-sample, optimistic)
        "tpr_at_threshold": float(tpr[best]),
        "fpr_at_threshold": float(fpr[best]),
        "same_mean_mm": float(dist[labels].mean()),
        "different_mean_mm": float(dist[~labels].mean()),
        "seconds_per_photo": float(np.median(seconds)) if seconds else None,
        "failed_photos": failures,
        "fingerprint": code,  # msma.identity_calibration.fingerprint: the code + weights these distances come from
        "photo_sha256": {name: file_sha256(args.pairs.parent / name) for name in photos},
        "pairs": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    _plot(fpr, tpr, auc, summary, args.out / f"{args.name}.html")
    lo, hi = summary["auc_95ci_bootstrap"]
    print(f"AUC {auc:.3f} (bootstrap 95% CI {lo:.2f}-{hi:.2f})")
    print(f"{len(rows)} pairs ({summary['n_same']} same, {summary['n_different']} different); "
          f"same-person mean {summary['same_mean_mm']:.2f} mm vs different {summary['different_mean_mm']:.2f} mm; "
          f"threshold {threshold_mm:.2f} mm: TPR {tpr[best]:.2f}, FPR {fpr[best]:.2f}")
    print(f"wrote {args.out / (args.name + '.json')} and {args.out / (args.name + '.html')}")
    return 0


def _plot(fpr, tpr, auc: float, summary: dict, path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines+markers", name=f"identity distance (AUC {auc:.3f})",
                             line={"shape": "hv"}))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash", "color": "grey"}))
    fig.update_layout(title=f"Same vs different person: {summary['n_same']} + {summary['n_different']} pairs, "
                            f"method {summary['method']}", xaxis_title="false positive rate",
                      yaxis_title="true positive rate", width=640, height=560)
    fig.write_html(path, include_plotlyjs="cdn")


if __name__ == "__main__":
    sys.exit(main())

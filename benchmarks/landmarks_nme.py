"""68-point landmark accuracy (NME), detection recall and CPU time per detector on dlib's labelled example photos.

    python benchmarks/landmarks_nme.py [--data /path/to/dlib_faces] [--detectors auto,dlib,mediapipe]

NME = mean point-to-point error / inter-ocular distance (outer eye corners 36-45 of the label). Detected faces are
matched to labelled faces by IoU of the 68-point extents (>= 0.3, greedy, best first).
"""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from msma.image_io import load_image  # noqa: E402
from msma.landmarks import available_detectors, detect_faces, mesh_to_68  # noqa: E402
from msma.landmarks.base import box_from_points, iou  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dlib_faces"
MIN_IOD = 20.0


@dataclass
class LabelledImage:
    file: Path
    faces: list[np.ndarray]  # (68, 2) each


@dataclass
class Stats:
    n_labelled: int = 0
    n_large: int = 0
    nme: dict[tuple[str, int], float] = field(default_factory=dict)  # (file, face index) -> NME
    iod: dict[tuple[str, int], float] = field(default_factory=dict)
    extra: int = 0  # detections that match no label (may be real unlabelled faces)
    times: list[float] = field(default_factory=list)


def parse_dlib_xml(xml_path: Path) -> list[LabelledImage]:
    out = []
    for im in ET.parse(xml_path).getroot().iter("image"):
        faces = []
        for box in im.iter("box"):
            pts = np.full((68, 2), np.nan)
            for part in box.iter("part"):
                pts[int(part.get("name"))] = float(part.get("x")), float(part.get("y"))
            if not np.isnan(pts).any():
                faces.append(pts)
        out.append(LabelledImage(xml_path.parent / im.get("file"), faces))
    return out


def match(det_boxes: list[np.ndarray], gt_boxes: list[np.ndarray], thr: float = 0.3) -> dict[int, int]:
    """gt index -> detection index, greedy by IoU."""
    pairs = sorted(((iou(g, d), gi, di) for gi, g in enumerate(gt_boxes) for di, d in enumerate(det_boxes)),
                   reverse=True)
    used_g: set[int] = set()
    used_d: set[int] = set()
    out = {}
    for v, gi, di in pairs:
        if v < thr:
            break
        if gi in used_g or di in used_d:
            continue
        used_g.add(gi)
        used_d.add(di)
        out[gi] = di
    return out


def run(data: Path, detectors: list[str]) -> dict[str, Stats]:
    images = [li for x in sorted(data.glob("*.xml")) for li in parse_dlib_xml(x)]
    if not images:
        raise SystemExit(f"no dlib XML labels found in {data}")
    loaded = {li.file: load_image(li.file) for li in images}
    names = list(detectors)
    if "mediapipe" in detectors:
        names.append("mediapipe-fixed-jaw")
    stats = {n: Stats() for n in names}
    for det in detectors:
        t0 = time.perf_counter()
        detect_faces(loaded[images[0].file], detector=det)  # model loading, excluded from per-image timing
        print(f"{det}: first call (loads models) {time.perf_counter() - t0:.2f} s", flush=True)
        for li in images:
            img = loaded[li.file]
            t0 = time.perf_counter()
            faces = detect_faces(img, detector=det)
            stats[det].times.append(time.perf_counter() - t0)
            variants = {det: [f.landmarks68 for f in faces]}
            if det == "mediapipe":
                variants["mediapipe-fixed-jaw"] = [mesh_to_68(f.dense, contour=False) for f in faces]
            gt_boxes = [box_from_points(g) for g in li.faces]
            for name, lms in variants.items():
                st = stats[name]
                m = match([box_from_points(lm) for lm in lms], gt_boxes)
                st.n_labelled += len(li.faces)
                st.extra += len(lms) - len(m)
                for gi, g in enumerate(li.faces):
                    iod = float(np.linalg.norm(g[45] - g[36]))
                    st.n_large += iod >= MIN_IOD
                    if gi in m:
                        err = np.linalg.norm(lms[m[gi]] - g, axis=1).mean() / iod
                        st.nme[(li.file.name, gi)] = float(err)
                        st.iod[(li.file.name, gi)] = iod
    return stats


def report(stats: dict[str, Stats]) -> None:
    common = set.intersection(*(set(s.nme) for s in stats.values())) if stats else set()
    print()
    print("NOTE: these labels were produced by dlib's own 68-point predictor (pseudo-labels), so 'dlib' is favoured;")
    print("      its NME mostly measures agreement with itself on slightly different boxes.")
    print()
    hdr = (f"{'detector':22s} {'recall':>12s} {'recall iod>=20':>15s} {'extra':>6s} {'NME all':>8s} "
           f"{'NME iod>=20':>12s} {'NME common':>11s} {'ms/img':>8s} {'max ms':>7s}")
    print(hdr)
    print("-" * len(hdr))
    for name, s in stats.items():
        keys = list(s.nme)
        large = [k for k in keys if s.iod[k] >= MIN_IOD]
        nme_all = np.mean([s.nme[k] for k in keys]) if keys else float("nan")
        nme_large = np.mean([s.nme[k] for k in large]) if large else float("nan")
        nme_common = np.mean([s.nme[k] for k in common]) if common else float("nan")
        t = f"{1000 * np.mean(s.times):8.0f} {1000 * np.max(s.times):7.0f}" if s.times else f"{'(same)':>8s} {'':>7s}"
        print(
            f"{name:22s} {len(keys):>5d}/{s.n_labelled:<3d}{len(keys) / max(1, s.n_labelled):4.0%}"
            f" {len(large):>6d}/{s.n_large:<3d}{len(large) / max(1, s.n_large):5.0%} {s.extra:>6d} {nme_all:8.4f}"
            f" {nme_large:12.4f} {nme_common:11.4f} {t}"
        )
    print(f"\nNME common: over the {len(common)} faces found by every detector. 'extra': detections matching no label")
    print("(the labels do not cover every face in these photos, so extras are not necessarily false positives).")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--detectors", default=None, help="comma-separated; default: auto + every available detector")
    args = ap.parse_args(argv)
    dets = args.detectors.split(",") if args.detectors else ["auto", *available_detectors()]
    print(f"data: {args.data}; detectors: {dets}; available: {available_detectors()}")
    report(run(args.data, dets))


if __name__ == "__main__":
    main()
